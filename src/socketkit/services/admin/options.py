"""The admin endpoint's options in ``serve all`` (``[admin]`` in the configuration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from socketkit.options import TEXT, option, port_option

__all__ = ["ADMIN_PORT", "AdminOptions"]

ADMIN_PORT: Final = 7080
"""The admin endpoint's port (HTTP: status, metrics)."""


@dataclass(frozen=True)
class AdminOptions:
    """Where the admin endpoint listens (it has no authentication: loopback by default)."""

    host: str = option("127.0.0.1", "address of the admin endpoint", TEXT, group="where to listen")
    port: int = port_option(ADMIN_PORT)
