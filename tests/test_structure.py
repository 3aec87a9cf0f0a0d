"""The shape targets of DESIGN.md, checked on the whole package: no import loop (imports
inside functions and under ``TYPE_CHECKING`` count: they are dependencies too), and no
module over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "socketkit"
MAX_MODULE_LINES = 500


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name (a package by its own)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, wherever the import statement is."""
    modules = module_names(root)
    top = root.name

    def resolve(name: str) -> str | None:
        while name and name not in modules:  # `import a.b.c` where c is an attribute
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    origin = ".".join([*base, node.module] if node.module else base)
                else:
                    origin = node.module or ""
                # `from pkg import mod` imports the module pkg.mod when there is one,
                # and a name defined in pkg/__init__.py otherwise.
                targets = [
                    f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == top and (resolved := resolve(target)) and resolved != name:
                    found.add(resolved)
        graph[name] = found
    return graph


def import_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop per strongly connected group of modules, as a path ``[a, b, ..., a]``."""
    return [_loop_through(group, graph) for group in import_groups(graph)]


def import_groups(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (Tarjan's strongly
    connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:
        # Tarjan's algorithm, iteratively (no recursion limit on a deep import chain).
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return groups


def _loop_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest loop from the group's first module back to it, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no loop in {group}")  # a strongly connected group has one


def test_the_package_has_no_import_loop() -> None:
    graph = import_graph(SRC)
    assert len(graph) > 50  # the whole package was read
    assert "socketkit.aio.connection" in graph["socketkit.aio.server"]
    groups = import_groups(graph)
    lines = [f"{' -> '.join(_loop_through(g, graph))} (all of: {', '.join(g)})" for g in groups]
    assert not groups, "import loops:\n" + "\n".join(lines)


def test_the_checker_sees_lazy_type_only_and_relative_imports(tmp_path: Path) -> None:
    """The loop check itself: a loop made only of an import inside a function, one under
    TYPE_CHECKING and a relative one is found and named; a package re-exporting its
    modules is no loop."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("A = 1\ndef f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
    )
    (pkg / "sub" / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("import pkg\n")
    graph = import_graph(pkg)
    assert graph["pkg"] == {"pkg.a"}
    assert graph["pkg.d"] == {"pkg"}
    assert import_loops(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]


def test_no_module_passes_500_lines() -> None:
    sizes = {path.relative_to(SRC.parent): len(path.read_text().splitlines()) for path in SRC.rglob("*.py")}
    assert len(sizes) > 50  # the whole package was measured
    over = {str(path): lines for path, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"
