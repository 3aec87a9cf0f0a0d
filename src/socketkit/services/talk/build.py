"""``build(options) -> Service``: the talk server its options describe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from socketkit.service import Service, engine_caps, listeners_for, tls_context_for
from socketkit.services.talk.options import TalkOptions

__all__ = ["build"]


def build(
    options: TalkOptions,
    show: Callable[[str], None] | None = None,
    console: Callable[[Any], None] | None = None,
) -> Service:
    """The talk server; ``show`` prints a console line, ``console(talk)`` starts the
    operator's input once the server runs (the command line reads the terminal)."""
    from socketkit.services.talk.server import TalkServer  # noqa: PLC0415 (lazy: fast CLI)

    talk = TalkServer(show or (lambda line: print(line, flush=True)), idle_timeout=options.idle_timeout)

    def make() -> Any:
        return talk.make_server(
            **engine_caps(options),
        )

    def started(server: Any) -> None:
        if console is not None:
            console(talk)

    return Service(
        "talk", make, listeners_for(options, tls_context_for(options)), options, on_started=started
    )
