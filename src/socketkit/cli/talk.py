"""``socketkit serve talk`` (the operator console) and ``socketkit talk ADDR`` (a client).

Both read the terminal in a thread (``socketkit.services.talk.console``: standard input
can be a terminal, a pipe or a file, which asyncio cannot all watch) and hand each line
to the event loop. The client itself is ``socketkit.services.talk.client``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from socketkit.cli._args import address_arg, positive_float

if TYPE_CHECKING:
    import asyncio
    import threading


__all__ = ["add_parsers", "start_console", "talk_client"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``talk ADDR``."""
    talk = commands.add_parser(
        "talk",
        help="talk with a `serve talk` operator",
        description="Connect to `socketkit serve talk`; type lines to send them, `exit` to leave.",
    )
    talk.add_argument("address", type=address_arg, metavar="ADDR", help="HOST:PORT, [v6]:PORT or unix:PATH")
    talk.add_argument("--timeout", type=positive_float, default=10.0, help="seconds to connect (default: 10)")
    talk.set_defaults(func=talk_client)


def read_lines(loop: asyncio.AbstractEventLoop, on_line: Callable[[str | None], None]) -> threading.Thread:
    """The console's lines (``socketkit.services.talk.console.read_lines``, loaded lazily)."""
    from socketkit.services.talk.console import read_lines as read  # noqa: PLC0415 (lazy: fast CLI)

    return read(loop, on_line)


def _printer() -> Callable[[str], None]:
    def show(line: str) -> None:
        print(line, flush=True)

    return show


def start_console(talk: Any) -> None:
    """``serve talk``'s console: the operator's lines go to the talk server (started
    once the server runs, on its loop)."""
    import asyncio  # noqa: PLC0415 (lazy: `socketkit --help` should not load asyncio)

    loop = asyncio.get_running_loop()

    def on_line(line: str | None) -> None:
        if line is not None:
            talk.command(line)

    read_lines(loop, on_line)
    talk.show("type '@ID text' to answer a client, text to tell everyone, /help for more")


def talk_client(args: argparse.Namespace) -> int:
    """``talk ADDR``: 0 after `exit` or when the server closes; 1 on errors."""
    from socketkit.aio.loop import run  # noqa: PLC0415 (lazy: fast CLI)
    from socketkit.services.talk.client import talk  # noqa: PLC0415

    return run(talk(args.address, timeout=args.timeout))
