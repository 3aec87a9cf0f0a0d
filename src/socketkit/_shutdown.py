"""What both engines tell a peer they stop serving at shutdown: the reasons, written once.

A graceful stop has two moments a peer can be told about: a connection with nothing in
progress is closed when the stop begins (``SHUTTING_DOWN``), and one still busy when the
grace runs out is cut (``grace_ran_out``). Each engine hands the reason to the service's
farewell (``AsyncServer(farewell=...)``, ``FramedRequestHandler.farewell``), which says
it in the service's protocol where the protocol can (a wire-v1 ERROR frame, an IRC
ERROR line) and not at all where it cannot (echo's raw bytes).
"""

from __future__ import annotations

from typing import Final

from socketkit.codec.wire import encode_error

__all__ = ["SHUTTING_DOWN", "WIRE_CODE", "grace_ran_out", "wire_farewell"]

SHUTTING_DOWN: Final = "the server is shutting down"
"""Why a connection with nothing in progress is closed when the server stops."""


def grace_ran_out(grace: float) -> str:
    """Why a connection still busy after the shutdown grace is cut."""
    return f"the server is shutting down and its {grace:g} s grace ran out"


WIRE_CODE: Final = "shutting-down"
"""The ERROR code of a wire-v1 service's farewell (``docs/protocol.md``)."""


def wire_farewell(reason: str) -> bytes:
    """The farewell of a wire-v1 service on either engine: an ERROR frame
    ``shutting-down`` with the reason, the last frame its peer gets."""
    return encode_error(WIRE_CODE, reason)
