"""The file clients: ``socketkit put``, ``get``, ``ls``, ``rm`` and ``mkdir``.

Exit statuses: 0 when everything worked, 1 when an operation failed (each failure is
one line on stderr; the others still run), 2 for usage errors (a remote name on the
command line that is not UTF-8 is one, refused before connecting), 255 when the server
cannot be reached or refuses the token (as ssh and scp use 255), 130 and 143 after
SIGINT and SIGTERM (the transfer under way keeps its partial for ``--resume``).

``put`` and ``get`` print one final line per file and a summary for a tree
(``_files_report``), on a terminal and off one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from socketkit.cli import _files_transfer as transfer
from socketkit.cli._args import address_arg
from socketkit.cli._files_report import report_unlisted
from socketkit.cli._files_session import _Session
from socketkit.cli.rexec import add_client_auth_options, client_tls

if TYPE_CHECKING:
    pass

__all__ = ["EXIT_CONNECTION", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "add_parsers"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECTION = 0, 1, 2, 255


def _not_text(name: str) -> bool:
    """Whether a name from the command line is not valid UTF-8 (os.fsdecode turned its
    bytes into lone surrogates): it cannot name a remote file."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _remote_message(name: str) -> str:
    from socketkit.paths import display_name  # noqa: PLC0415

    return f"the remote name '{display_name(name)}' is not valid UTF-8 (remote names are Unicode text)"


def _remote_arg(text: str) -> str:
    """argparse type: a remote path (valid UTF-8)."""
    if _not_text(text):
        raise argparse.ArgumentTypeError(_remote_message(text))
    return text


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``put``, ``get``, ``ls``, ``rm`` and ``mkdir``."""
    put = commands.add_parser(
        "put",
        help="upload files",
        description="Upload LOCAL files (- for stdin).",
        usage="socketkit put [options] ADDR LOCAL... [REMOTE]",
    )
    put.add_argument("address", type=address_arg, metavar="ADDR")
    put.add_argument(
        "paths",
        nargs="+",
        metavar="LOCAL... [REMOTE]",
        help="files to send, then where (a remote file for one LOCAL, else a directory)",
    )
    get = commands.add_parser(
        "get",
        help="download files",
        description="Download REMOTE files (LOCAL - for stdout).",
        usage="socketkit get [options] ADDR REMOTE... [LOCAL]",
    )
    get.add_argument("address", type=address_arg, metavar="ADDR")
    get.add_argument(
        "paths",
        nargs="+",
        metavar="REMOTE... [LOCAL]",
        help="files to fetch, then where (a local file for one REMOTE, else a directory)",
    )
    for parser in (put, get):
        parser.add_argument("-r", "--recursive", action="store_true", help="directories and their contents")
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue an interrupted transfer (its partial file is kept; without --resume or "
            "--force it is refused)",
        )
        parser.add_argument(
            "-f", "--force", action="store_true", help="replace existing files (and interrupted transfers)"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")
        add_client_auth_options(parser)
    put.set_defaults(func=lambda args: _client(args, transfer.put, transfer.split_targets(args.paths)[1:]))
    get.set_defaults(func=lambda args: _client(args, transfer.get, transfer.split_targets(args.paths)[0]))

    ls = commands.add_parser("ls", help="list remote files", description="List a remote directory.")
    ls.add_argument("address", type=address_arg, metavar="ADDR")
    ls.add_argument("path", nargs="?", default="", type=_remote_arg, metavar="PATH")
    ls.add_argument("-r", "--recursive", action="store_true", help="list subdirectories too")
    ls.add_argument("--sha256", action="store_true", help="show each file's SHA-256")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_client_auth_options(ls)
    ls.set_defaults(func=lambda args: _client(args, _ls))

    rm = commands.add_parser(
        "rm", help="delete remote files", description="Delete remote files or directories."
    )
    rm.add_argument("address", type=address_arg, metavar="ADDR")
    rm.add_argument("paths", nargs="+", type=_remote_arg, metavar="PATH")
    rm.add_argument("-r", "--recursive", action="store_true", help="directories and their contents")
    add_client_auth_options(rm)
    rm.set_defaults(func=lambda args: _client(args, _rm))

    mkdir = commands.add_parser(
        "mkdir", help="make remote directories", description="Create remote directories."
    )
    mkdir.add_argument("address", type=address_arg, metavar="ADDR")
    mkdir.add_argument("paths", nargs="+", type=_remote_arg, metavar="PATH")
    add_client_auth_options(mkdir)
    mkdir.set_defaults(func=lambda args: _client(args, _mkdir))


# --- running a client session ------------------------------------------------------


def _shown(exc: BaseException) -> str:
    """An error's message as printed: what the server wrote in it is escaped."""
    from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

    return safe_display(str(exc))


def _connect_error(exc: Exception, address: object) -> str:
    """The line a failed connection prints, naming what it tried to reach (the errors of
    TCP connects and name lookups name neither the host nor the port)."""
    from socketkit.cli._errors import error_line  # noqa: PLC0415
    from socketkit.errors import ConnectError  # noqa: PLC0415

    if isinstance(exc, OSError) and exc.filename is None and not isinstance(exc, ConnectError):
        name = "LookupError" if type(exc).__name__ == "gaierror" else type(exc).__name__
        return f"{name}: cannot connect to {address}: {exc.strerror or exc}"
    return _shown_line(error_line(exc))


def _shown_line(line: str) -> str:
    from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

    return safe_display(line)


def _client(
    args: argparse.Namespace, body: Callable[[_Session], Awaitable[None]], remote: Sequence[str | None] = ()
) -> int:
    """Run ``body`` with a connected session; ``remote``: the names of the command line
    that are remote paths, refused as a usage error (exit 2) before connecting when
    they are not UTF-8."""
    import signal  # noqa: PLC0415 (lazy imports keep the CLI quick)

    from socketkit.aio.loop import run  # noqa: PLC0415

    for name in remote:
        if name is not None and _not_text(name):
            print(f"socketkit: error: {_remote_message(name)}", file=sys.stderr)
            return EXIT_USAGE

    try:
        return run(_run_client(args, body))
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


async def _run_client(args: argparse.Namespace, body: Callable[[_Session], Awaitable[None]]) -> int:
    """``_session`` with SIGTERM handled as SIGINT is (asyncio cancels the task on
    SIGINT): the transfer under way is cancelled, keeps what it has, and the exit status
    is 143."""
    import asyncio  # noqa: PLC0415
    import signal  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated = asyncio.Event()

    def terminate() -> None:
        terminated.set()
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        return await _session(args, body)
    try:
        return await _session(args, body)
    except asyncio.CancelledError:
        if not terminated.is_set() or task is None:
            raise
        task.uncancel()
        return 128 + signal.SIGTERM
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _session(args: argparse.Namespace, body: Callable[[_Session], Awaitable[None]]) -> int:
    from socketkit.auth.connect import ServiceTarget  # noqa: PLC0415
    from socketkit.auth.token import load_client_token  # noqa: PLC0415
    from socketkit.services.filexfer.client import FileClient  # noqa: PLC0415

    try:
        token = load_client_token(args.token_file, args.state_dir)
        target = ServiceTarget(
            args.address, token, client_tls(args), args.tls_fingerprint, connect_timeout=args.connect_timeout
        )
        client = await FileClient.connect(target)
    except Exception as exc:
        if args.debug:
            raise
        print(_connect_error(exc, args.address), file=sys.stderr)
        return EXIT_CONNECTION
    session = _Session(client, args)
    show = not getattr(args, "no_progress", True) and sys.stderr.isatty()
    try:
        if show:
            from rich.console import Console  # noqa: PLC0415 (terminal output only)
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),  # KiB, MiB: as the final lines count
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as progress:
                session.progress = progress
                await body(session)
        else:
            await body(session)
    except Exception as exc:
        if args.debug:
            raise
        from socketkit.errors import ResourceError  # noqa: PLC0415

        print(f"{type(exc).__name__}: {_shown(exc)}", file=sys.stderr)
        return EXIT_CONNECTION if isinstance(exc, (ResourceError, OSError)) else EXIT_FAILED
    finally:
        client.conn.abort()
    return EXIT_FAILED if session.failures else EXIT_OK


# --- the other commands ----------------------------------------------------------------


async def _ls(session: _Session) -> None:
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    from socketkit.errors import ServiceError  # noqa: PLC0415
    from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

    args = session.args
    try:
        entries = await session.client.list(args.path, with_hash=args.sha256, recursive=args.recursive)
    except ServiceError as exc:
        session.fail(args.path or ".", exc)
        return
    report_unlisted(args.path, entries.unlisted)
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=1))
        return
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
        kind = {"dir": "d", "file": "-", "link": "l"}.get(entry.type, "?")
        sha = f" {entry.sha256}" if entry.sha256 else ""
        name = safe_display(entry.path) + ("/" if entry.type == "dir" else "")
        print(f"{kind} {entry.size:>14,} {when}{sha} {name}")


async def _rm(session: _Session) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    for path in session.args.paths:
        try:
            await session.client.delete(path, recursive=session.args.recursive)
        except ServiceError as exc:
            session.fail(path, exc)


async def _mkdir(session: _Session) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    for path in session.args.paths:
        try:
            await session.client.mkdir(path, parents=True)
        except ServiceError as exc:
            session.fail(path, exc)
