"""The echo loopback tests run on both event loops, as the engine's own tests do."""

from __future__ import annotations

from tests.aio.conftest import run

__all__ = ["run"]
