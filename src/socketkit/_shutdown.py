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

__all__ = ["SHUTTING_DOWN", "grace_ran_out"]

SHUTTING_DOWN: Final = "the server is shutting down"
"""Why a connection with nothing in progress is closed when the server stops."""


def grace_ran_out(grace: float) -> str:
    """Why a connection still busy after the shutdown grace is cut."""
    return f"the server is shutting down and its {grace:g} s grace ran out"
