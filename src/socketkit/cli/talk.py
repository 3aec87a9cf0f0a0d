"""``socketkit serve talk`` (the operator console) and ``socketkit talk ADDR`` (a client).

Both read the terminal in a thread (standard input can be a terminal, a pipe or a file,
which asyncio cannot all watch) and hand each line to the event loop.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from socketkit.cli._args import address_arg, positive_float

if TYPE_CHECKING:
    import asyncio


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
    """Read standard input in a daemon thread; call ``on_line`` on the loop for each line,
    then with ``None`` at end of input. (Daemon: a blocked read cannot be interrupted.)"""

    def run() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(on_line, line.rstrip("\n"))
        except (OSError, ValueError):  # stdin closed under us at exit
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(on_line, None)

    thread = threading.Thread(target=run, name="socketkit-stdin", daemon=True)
    thread.start()
    return thread


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

    return run(_talk(args))


async def _talk(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from socketkit.aio.client import open_connection  # noqa: PLC0415
    from socketkit.aio.wire import exchange_hello  # noqa: PLC0415
    from socketkit.codec.wire import ErrorFrame, WireDecoder  # noqa: PLC0415
    from socketkit.errors import ProtocolError, ResourceError  # noqa: PLC0415
    from socketkit.limits import DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S  # noqa: PLC0415
    from socketkit.services.talk.protocol import (  # noqa: PLC0415
        EXIT,
        MAX_MESSAGE_SIZE,
        Notice,
        TalkMessage,
        Welcome,
        console_line,
        encode_message,
        parse_event,
    )

    conn: Any = await open_connection(
        args.address, WireDecoder(max_frame_size=MAX_MESSAGE_SIZE), timeout=args.timeout
    )
    try:
        # A talk server says hello and welcome at once; anything else within the
        # handshake timeout (a chat server's silence, an echo port's copy of our hello)
        # is not a talk server.
        try:
            async with asyncio.timeout(DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S):
                await exchange_hello(conn)
                first = parse_event(await conn.receive())
        except (TimeoutError, ProtocolError, EOFError) as exc:
            why = "no answer" if isinstance(exc, TimeoutError) else str(exc) or "it closed"
            print(
                f"HandshakeError: {args.address} does not speak the socketkit talk protocol ({why})",
                file=sys.stderr,
                flush=True,
            )
            return 1
        if isinstance(first, ErrorFrame):
            print(console_line(f"ServiceError: {first.code}:", first.message), file=sys.stderr, flush=True)
            return 1
        if not isinstance(first, Welcome):
            print(
                f"HandshakeError: {args.address} does not speak the socketkit talk protocol (no welcome)",
                file=sys.stderr,
                flush=True,
            )
            return 1
        print(f"* connected to {args.address} as #{first.id}; type `exit` to leave", flush=True)
        loop = asyncio.get_running_loop()

        def on_line(line: str | None) -> None:
            if conn.is_closing:
                return
            try:
                conn.send(encode_message(EXIT if line is None else line))
            except ResourceError:
                return
            except ValueError as exc:  # LocalProtocolError: too long
                print(f"! {exc}", file=sys.stderr, flush=True)
                return
            if line is None or line == EXIT:
                conn.send_eof()

        read_lines(loop, on_line)
        async for event in conn:
            talk = parse_event(event)
            if isinstance(talk, Welcome):
                print(f"* connected to {args.address} as #{talk.id}; type `exit` to leave", flush=True)
            elif isinstance(talk, TalkMessage):
                print(console_line("server>", talk.text), flush=True)
            elif isinstance(talk, Notice):
                print(console_line("*", talk.text), flush=True)
            elif isinstance(talk, ErrorFrame):
                error = console_line(f"ServiceError: {talk.code}:", talk.message)
                print(error, file=sys.stderr, flush=True)
                return 1
        print("* connection closed", flush=True)
        return 0
    finally:
        conn.abort()
