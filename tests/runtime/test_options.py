"""Each service's options are declared once: the command line's flags, their defaults and
help are derived from the declaration, and every kind reads back what it shows."""

from __future__ import annotations

import argparse

import pytest

from socketkit.cli.main import build_parser, main
from socketkit.options import FLAG, declared
from socketkit.runtime.flags import help_text
from socketkit.runtime.services import SERVICES, option_classes

SERVICE_NAMES = sorted(SERVICES)


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    services = next(a for a in serve._actions if isinstance(a, argparse._SubParsersAction))
    chosen: argparse.ArgumentParser = services.choices[name]
    return chosen


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_flag_is_its_declaration(name: str) -> None:
    actions = {a.dest: a for a in _subparser(name)._actions}
    items = list(declared(SERVICES[name].options))
    assert items, name
    for item in items:
        action = actions.pop(item.name)
        assert action.option_strings == [item.flag]
        assert action.help == help_text(item)
        assert action.default is argparse.SUPPRESS  # the value comes from the layers below
        if item.default_text is not None:
            assert action.help.endswith(f"(default: {item.default_text})")
    # Nothing else: no flag that the declaration does not know (and so no default twice).
    assert sorted(actions) == ["config", "help"]


@pytest.mark.parametrize("cls", list(option_classes().values()), ids=list(option_classes()))
def test_every_shown_default_reads_back_as_the_default(cls: type) -> None:
    for item in declared(cls):
        kind = item.info.kind
        if item.default is None or kind is FLAG or item.info.shown is not None or item.default == ():
            continue
        assert kind.parse(kind.show(item.default)) == item.default, item.name
        assert kind.accept(item.default) == item.default, item.name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "echo", "--idle-timeout", "-1"], "argument --idle-timeout: expected a number of seconds"),
        (["serve", "echo", "--port", "70000"], "argument --port"),
        (["serve", "chat", "--sendq", "lots"], "argument --sendq: expected a size"),
        (
            ["serve", "exec", "--sandbox", "chroot"],
            "argument --sandbox: expected one of auto, bwrap, landlock",
        ),
        (["serve", "files", "--max-transfers", "0"], "argument --max-transfers: expected a whole number"),
    ],
)
def test_a_bad_flag_value_is_a_usage_error_with_the_declared_check(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_offers_only_what_the_service_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    # chat has no Unix listener and no workers; talk no workers; only echo has UDP.
    for name, absent in {"chat": ["--unix", "--workers", "--udp"], "talk": ["--workers", "--udp"]}.items():
        assert main(["serve", name, "--help"]) == 0
        out = capsys.readouterr().out
        for flag in absent:
            assert flag not in out, (name, flag)
    assert main(["serve", "echo", "--help"]) == 0
    assert "--udp" in capsys.readouterr().out


def test_files_and_exec_default_to_the_same_root(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("files", "exec"):
        root = next(i for i in declared(SERVICES[name].options) if i.name == "root")
        assert root.default is None
        assert root.default_text == "STATE_DIR/files"
