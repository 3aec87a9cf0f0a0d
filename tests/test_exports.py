"""Public names: each package's __all__ is exactly what it exposes (httpx-style)."""

from __future__ import annotations

import importlib
import socketserver
import types

import pytest

PACKAGES = [
    "socketkit",
    "socketkit.codec",
    "socketkit.server",
    "socketkit.testing",
    "socketkit.errors",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)

    def foreign(value: object) -> bool:
        if isinstance(value, types.ModuleType):
            return True
        defined_in = getattr(value, "__module__", None)
        is_def = isinstance(value, (type, types.FunctionType))
        return is_def and not str(defined_in).startswith("socketkit")

    public = {attr for attr, value in vars(module).items() if not attr.startswith("_") and not foreign(value)}
    public -= {"annotations", "TYPE_CHECKING"}
    assert set(module.__all__) == public | ({"__version__"} & set(module.__all__))
    assert len(module.__all__) == len(set(module.__all__))


def test_server_has_every_socketserver_name() -> None:
    import socketkit.server

    missing = set(socketserver.__all__) - set(socketkit.server.__all__)
    assert not missing
