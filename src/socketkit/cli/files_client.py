"""The file clients: ``socketkit put``, ``get``, ``ls``, ``rm`` and ``mkdir``.

Exit statuses: 0 when everything worked, 1 when an operation failed (each failure is
one line on stderr; the others still run), 2 for usage errors (a remote name on the
command line that is not UTF-8 is one, refused before connecting), 255 when the server
cannot be reached or refuses the token (as ssh and scp use 255).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from socketkit.cli._args import address_arg
from socketkit.cli.rexec import add_client_auth_options, client_tls

if TYPE_CHECKING:
    from socketkit.services.filexfer.client import FileClient

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
        parser.add_argument("--resume", action="store_true", help="continue an interrupted transfer")
        parser.add_argument("-f", "--force", action="store_true", help="replace existing files")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")
        add_client_auth_options(parser)
    put.set_defaults(func=lambda args: _client(args, _put, _split_targets(args.paths)[1:]))
    get.set_defaults(func=lambda args: _client(args, _get, _split_targets(args.paths)[0]))

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


class _Session:
    """One client command: the connection, the progress display, and the failures."""

    def __init__(self, client: FileClient, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.failures = 0
        self.progress: Any = None

    def fail(self, what: str, exc: BaseException) -> None:
        from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

        self.failures += 1
        # The message may come from the server: shown escaped, as names are.
        print(
            f"{safe_display(what)}: {type(exc).__name__}: {safe_display(str(exc))}",
            file=sys.stderr,
            flush=True,
        )

    @contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        if self.progress is None:
            yield lambda n: None
            return
        task = self.progress.add_task(label, total=total)
        try:
            yield lambda n: self.progress.advance(task, n)
        finally:
            self.progress.remove_task(task)


def _shown(exc: BaseException) -> str:
    """An error's message as printed: what the server wrote in it is escaped."""
    from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

    return safe_display(str(exc))


def _connect_error(exc: Exception, address: object) -> str:
    """The line a failed connection prints, naming what it tried to reach (the errors of
    TCP connects and name lookups name neither the host nor the port)."""
    from socketkit.cli._errors import error_line  # noqa: PLC0415

    if isinstance(exc, OSError) and exc.filename is None:
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
    from socketkit.aio.loop import run  # noqa: PLC0415 (lazy imports keep the CLI quick)

    for name in remote:
        if name is not None and _not_text(name):
            print(f"socketkit: error: {_remote_message(name)}", file=sys.stderr)
            return EXIT_USAGE

    try:
        return run(_run_client(args, body))
    except KeyboardInterrupt:
        return 130


async def _run_client(args: argparse.Namespace, body: Callable[[_Session], Awaitable[None]]) -> int:
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
            from rich.progress import (  # noqa: PLC0415 (terminal output only)
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
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
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


# --- the commands -----------------------------------------------------------------------


def _split_targets(paths: list[str]) -> tuple[list[str], str | None]:
    if len(paths) == 1:
        return paths, None
    return paths[:-1], paths[-1]


def _remote_join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if directory.strip("/") else name


async def _put(session: _Session) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    args, client = session.args, session.client
    sources, target = _split_targets(args.paths)
    into_dir = target is None or len(sources) > 1 or target.endswith("/") or args.recursive
    if target is not None and not into_dir:
        try:
            into_dir = (await client.stat(target)).type == "dir"
        except ServiceError:
            into_dir = False
    for source in sources:
        if source == "-":
            if target is None or into_dir:
                session.fail("-", ValueError("standard input needs a remote file name: put ADDR - REMOTE"))
                continue
            await _put_stdin(session, target)
            continue
        name = os.path.basename(os.path.normpath(source))
        remote = _remote_join(target or "", name) if into_dir else str(target)
        if os.path.isdir(source):
            if not args.recursive:
                session.fail(source, IsADirectoryError("is a directory (use -r)"))
                continue
            await _put_tree(session, source, remote)
            continue
        await _put_one(session, source, remote)


async def _put_one(session: _Session, local: str, remote: str) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    args = session.args
    try:
        with session.bar(f"put {os.path.basename(local)}", os.path.getsize(local)) as advance:
            result = await session.client.put_file(
                local, remote, force=args.force, resume=args.resume, progress=advance
            )
    except (ServiceError, OSError) as exc:
        session.fail(local, exc)
        return
    if session.progress is None and sys.stderr.isatty():
        print(
            f"{local} -> {result.path} ({result.size} bytes, sha256 {result.sha256[:16]}...)", file=sys.stderr
        )


async def _put_tree(session: _Session, local_dir: str, remote_dir: str) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    for directory, subdirs, files in os.walk(local_dir):
        subdirs.sort()
        rel = os.path.relpath(directory, local_dir)
        remote = remote_dir if rel == "." else _remote_join(remote_dir, rel.replace(os.sep, "/"))
        try:
            await session.client.mkdir(remote, parents=True)
        except ServiceError as exc:
            session.fail(remote, exc)
            subdirs.clear()
            continue
        for name in sorted(files):
            await _put_one(session, os.path.join(directory, name), _remote_join(remote, name))


async def _put_stdin(session: _Session, remote: str) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    # The declared size and hash come first, so standard input is spooled to a
    # temporary file (on disk: memory stays flat) and sent from there.
    with tempfile.NamedTemporaryFile(prefix="socketkit-stdin-") as spool:
        source = sys.stdin.buffer
        while chunk := source.read(1 << 20):
            spool.write(chunk)
        spool.flush()
        try:
            await session.client.put_file(spool.name, remote, force=session.args.force)
        except (ServiceError, OSError) as exc:
            session.fail("-", exc)


async def _get(session: _Session) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    args, client = session.args, session.client
    sources, target = _split_targets(args.paths)
    if target == "-":
        for source in sources:
            try:
                await client.get_stream(source, sys.stdout.buffer)
            except ServiceError as exc:
                session.fail(source, exc)
        return
    into_dir = target is None or len(sources) > 1 or os.path.isdir(target) or args.recursive
    destination = target or "."
    if target is not None and len(sources) > 1 and not args.recursive and not os.path.isdir(target):
        # As cp: several files go into a directory that exists (-r makes it).
        session.fail(target, NotADirectoryError("no such local directory (several files go into one)"))
        return
    for source in sources:
        try:
            entry = await client.stat(source)
        except ServiceError as exc:
            session.fail(source, exc)
            continue
        name = os.path.basename(entry.path.rstrip("/")) or "root"
        if entry.type == "dir":
            if not args.recursive:
                session.fail(source, IsADirectoryError("is a directory (use -r)"))
                continue
            local_root = os.path.join(destination, name) if into_dir else destination
            await _get_tree(session, entry.path, local_root)
            continue
        local = os.path.join(destination, name) if into_dir else destination
        await _get_one(session, entry.path, local, entry.size)


async def _get_one(session: _Session, remote: str, local: str, size: int) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    args = session.args
    try:
        with session.bar(f"get {os.path.basename(local)}", size) as advance:
            await session.client.get_file(
                remote, local, force=args.force, resume=args.resume, progress=advance
            )
    except (ServiceError, OSError) as exc:
        session.fail(remote, exc)


async def _get_tree(session: _Session, remote_dir: str, local_dir: str) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415
    from socketkit.services.filexfer.client import local_destination  # noqa: PLC0415

    os.makedirs(local_dir, exist_ok=True)
    try:
        entries = await session.client.list(remote_dir, recursive=True)
    except ServiceError as exc:
        session.fail(remote_dir, exc)
        return
    _report_unlisted(remote_dir, entries.unlisted)
    prefix = remote_dir.strip("/") + "/" if remote_dir.strip("/") else ""
    for entry in entries:
        relative = entry.path[len(prefix) :] if entry.path.startswith(prefix) else entry.path
        try:
            # Names come from the server: jailed under the local directory like the
            # server jails ours (no "..", absolute paths or control characters).
            local = local_destination(local_dir, relative)
        except (ServiceError, ValueError) as exc:
            session.fail(entry.path, exc)
            continue
        if entry.type == "dir":
            os.makedirs(local, exist_ok=True)
        elif entry.type == "file":
            os.makedirs(os.path.dirname(local), exist_ok=True)
            await _get_one(session, entry.path, local, entry.size)


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
    _report_unlisted(args.path, entries.unlisted)
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=1))
        return
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
        kind = {"dir": "d", "file": "-", "link": "l"}.get(entry.type, "?")
        sha = f" {entry.sha256}" if entry.sha256 else ""
        name = safe_display(entry.path) + ("/" if entry.type == "dir" else "")
        print(f"{kind} {entry.size:>14,} {when}{sha} {name}")


def _report_unlisted(path: str, count: int) -> None:
    """One line on stderr when the server left names out of a listing."""
    if count:
        from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

        print(
            f"{safe_display(path or '.')}: {count} name(s) on the server cannot be shown (not UTF-8, or "
            "control, format or invisible characters) and were left out; they count in the quota, and "
            "rm -r of the directory holding them removes them",
            file=sys.stderr,
        )


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
