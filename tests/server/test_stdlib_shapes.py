"""Every attribute of the stdlib's socketserver classes, and of their instances, exists on
socketkit's equivalent with a compatible shape.

Code written for the stdlib reads more than the documented names: ``len(server._threads)``
(the stdlib's own tests), ``server._BaseServer__shutdown_request = True`` (stopping the
loop from a handler), ``active_children``... The standard library of the running Python
is introspected, so a name it gains in a later version shows up here as a failure.

Shape: callable or not; a container (sized or iterable) or not; for a function, a
signature that accepts every call the stdlib's accepts; for a value of one of the
stdlib's helper classes (``_Threads``, ``_SocketWriter``), every attribute of that class;
for a plain value, the same kind (bool, number, string, enum).
"""

from __future__ import annotations

import enum
import inspect
import os
import socket
import socketserver
import types
from collections.abc import Iterable, Sized
from pathlib import Path
from typing import Any

import pytest

import socketkit.server
from tests.helpers import TIMEOUT, connect

# (class or handler name, attribute) -> why socketkit's differs in shape; each is also
# described in docs/server.md ("Attributes"). Empty: socketkit differs in values only.
ALLOWED_DIFFERENCES: dict[tuple[str, str], str] = {}

# What a class body holds besides attributes.
_CLASS_MACHINERY = {
    "__module__",
    "__doc__",
    "__dict__",
    "__weakref__",
    "__qualname__",
    "__firstlineno__",
    "__static_attributes__",
    "__annotations__",
}

STDLIB_CLASSES = sorted(
    name
    for name in socketserver.__all__
    if isinstance(getattr(socketserver, name), type) and not name.endswith("Handler")
)
SERVERS = [
    name for name in STDLIB_CLASSES if issubclass(getattr(socketserver, name), socketserver.BaseServer)
]
HANDLERS = ["BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler"]


def is_container(value: object) -> bool:
    return isinstance(value, (Sized, Iterable)) and not isinstance(value, (str, bytes))


def scalar_kind(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, enum.Enum):
        return type(value).__name__
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (str, bytes)):
        return type(value).__name__
    return "object"


def check_signature(where: str, theirs: Any, ours: Any) -> list[str]:
    """Every call the stdlib's function accepts, ours accepts (extra parameters optional)."""
    try:
        std_sig = inspect.signature(theirs)
        our_sig = inspect.signature(ours)
    except (TypeError, ValueError):  # builtins without a signature: nothing to compare
        return []
    problems = []
    ours_params = our_sig.parameters
    for name, param in std_sig.parameters.items():
        mine = ours_params.get(name)
        if mine is None:
            if param.kind is param.VAR_POSITIONAL and any(
                p.kind is p.VAR_POSITIONAL for p in ours_params.values()
            ):
                continue
            problems.append(f"{where}: parameter {name!r} missing from {our_sig}")
        elif mine.kind is not param.kind:
            problems.append(f"{where}: parameter {name!r} is {mine.kind.name}, stdlib {param.kind.name}")
        elif param.default is not param.empty and mine.default is mine.empty:
            problems.append(f"{where}: parameter {name!r} has no default (stdlib: {param.default!r})")
    for name, mine in ours_params.items():
        optional = mine.default is not mine.empty or mine.kind in (mine.VAR_POSITIONAL, mine.VAR_KEYWORD)
        if name not in std_sig.parameters and not optional:
            problems.append(f"{where}: extra required parameter {name!r}")
    return problems


def shape_problems(where: str, theirs: object, ours: object) -> list[str]:
    """Why ``ours`` cannot stand in for ``theirs`` (empty: it can)."""
    if callable(theirs) != callable(ours):
        return [f"{where}: stdlib {theirs!r} callable={callable(theirs)}, socketkit {ours!r}"]
    if is_container(theirs) != is_container(ours):
        return [f"{where}: stdlib {theirs!r} container={is_container(theirs)}, socketkit {ours!r}"]
    if isinstance(theirs, type):  # a class (RequestHandlerClass): callable is the shape
        return []
    if callable(theirs):
        return check_signature(where, theirs, ours)
    if type(theirs).__module__ == "socketserver":  # a helper object: its whole interface
        problems = []
        for name in dir(type(theirs)):
            if name.startswith("__") and name not in ("__len__", "__iter__", "__getitem__"):
                continue
            if not hasattr(ours, name):
                problems.append(f"{where}: {type(theirs).__name__}.{name} missing on {ours!r}")
            else:
                problems += shape_problems(f"{where}.{name}", getattr(theirs, name), getattr(ours, name))
        return problems
    if is_container(theirs):
        return []
    kind, our_kind = scalar_kind(theirs), scalar_kind(ours)
    if kind != our_kind and not (kind == "none" and our_kind in ("number", "object")):
        return [f"{where}: stdlib {theirs!r} ({kind}), socketkit {ours!r} ({our_kind})"]
    return []


def class_attributes(cls: type) -> set[str]:
    """Names the stdlib's own classes define for ``cls`` (its MRO up to object)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__ == "socketserver":
            names.update(vars(klass))
    return names - _CLASS_MACHINERY


def compare(label: str, names: Iterable[str], theirs: object, ours: object) -> list[str]:
    problems = []
    for name in sorted(names):
        where = f"{label}.{name}"
        if (label, name) in ALLOWED_DIFFERENCES:
            continue
        if not hasattr(ours, name):
            problems.append(f"{where}: missing")
            continue
        problems += shape_problems(where, getattr(theirs, name), getattr(ours, name))
    return problems


@pytest.mark.parametrize("name", [*STDLIB_CLASSES, *HANDLERS])
def test_class_attributes_have_the_stdlib_shape(name: str) -> None:
    theirs = getattr(socketserver, name)
    ours = getattr(socketkit.server, name)
    assert not compare(name, class_attributes(theirs), theirs, ours)


def _address(name: str, directory: Path) -> Any:
    return str(directory / f"{name}.sock") if "Unix" in name else ("127.0.0.1", 0)


def _send_one(server: Any) -> None:
    """Make one request arrive, so that handle_request() has something to serve."""
    address = server.server_address
    if server.socket_type == socket.SOCK_STREAM:
        connect(address, server.address_family).close()
        return
    with socket.socket(server.address_family, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", address)


def served_server(module: types.ModuleType, name: str, directory: Path) -> Any:
    """An instance of ``module.name`` that has served one request, then closed: the
    attributes set lazily (``_threads``, ``active_children``) exist by then."""
    directory.mkdir()
    server = getattr(module, name)(_address(name, directory), module.BaseRequestHandler)
    if name == "BaseServer":  # no socket of its own: nothing to serve
        return server
    try:
        server.timeout = TIMEOUT
        _send_one(server)
        server.handle_request()
    finally:
        server.server_close()
    if getattr(server, "active_children", None):  # stdlib, block_on_close=False: reap
        for pid in server.active_children:
            os.waitpid(pid, 0)
    return server


@pytest.mark.parametrize("name", SERVERS)
def test_instance_attributes_have_the_stdlib_shape(name: str, tmp_path: Path) -> None:
    if "Unix" in name and not hasattr(socket, "AF_UNIX"):
        pytest.skip("no Unix sockets")
    theirs = served_server(socketserver, name, tmp_path / "stdlib")
    ours = served_server(socketkit.server, name, tmp_path / "socketkit")
    assert not compare(name, vars(theirs), theirs, ours)


def handler_seen(module: types.ModuleType, name: str) -> Any:
    """An instance of ``module.name`` as its ``handle()`` saw it, on a real request."""
    seen: list[Any] = []

    class Probe(getattr(module, name)):  # type: ignore[misc]
        def handle(self) -> None:
            seen.append(self)

    datagram = name.startswith("Datagram")
    server_class = module.UDPServer if datagram else module.TCPServer
    with server_class(("127.0.0.1", 0), Probe) as server:
        server.timeout = TIMEOUT
        if datagram:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(TIMEOUT)
                client.sendto(b"x", server.server_address)
                server.handle_request()
                client.recv(10)  # the (empty) reply finish() sends
        else:
            client = connect(server.server_address)
            with client:
                server.handle_request()
    (handler,) = seen
    return handler


@pytest.mark.parametrize("name", HANDLERS)
def test_handler_instance_attributes_have_the_stdlib_shape(name: str) -> None:
    theirs = handler_seen(socketserver, name)
    ours = handler_seen(socketkit.server, name)
    assert vars(theirs)  # the probe saw a real request
    assert not compare(name, vars(theirs), theirs, ours)


def test_the_comparison_sees_a_missing_or_reshaped_attribute() -> None:
    """The checker itself: a method turned into a value, a list into a method, a lost
    parameter, a lost helper method are all reported."""

    class Std:
        timeout = None
        items = (1,)

        def run(self, poll_interval: float = 0.5) -> None: ...

    class Renamed:
        timeout = 5
        items = staticmethod(lambda: [1])

        def run(self) -> None: ...

    problems = compare("Std", ["timeout", "items", "run", "gone"], Std, Renamed)
    assert [p.split(":")[0] for p in problems] == ["Std.gone", "Std.items", "Std.run"]
    helper_problems = shape_problems("x", socketserver._Threads(), [])  # type: ignore[attr-defined]
    for method in ("join", "pop_all", "reap"):
        assert f"x: _Threads.{method} missing on []" in helper_problems
