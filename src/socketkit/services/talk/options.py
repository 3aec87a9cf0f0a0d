"""``serve talk``'s options, declared once (flags, configuration file, environment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from socketkit.options import IdleOption, ListenOptions, UnixOption, port_option

__all__ = ["TALK_PORT", "TalkOptions"]

TALK_PORT: Final = 7070
"""The operator console's port (unprivileged, next to the admin endpoint's 7080)."""


@dataclass(frozen=True)
class TalkOptions(ListenOptions, UnixOption, IdleOption):
    """The operator console: one process, one terminal (so no ``--workers``)."""

    port: int = port_option(TALK_PORT)
