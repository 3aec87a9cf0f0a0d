"""``socketkit put`` and ``get``: files, trees and standard streams, one transfer at a
time over the session's connection; each file's final line and a tree's summary go to
``_files_report``, failures to ``_Session.fail`` (one line each, the others go on)."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import TYPE_CHECKING

from socketkit._stdio import hint_terminal_input
from socketkit.cli._files_report import report_unlisted

if TYPE_CHECKING:
    from socketkit.cli._files_session import _Session

__all__ = ["get", "put", "split_targets"]


def split_targets(paths: list[str]) -> tuple[list[str], str | None]:
    """The sources of ``put``/``get`` and where they go (``None``: one source, no target)."""
    if len(paths) == 1:
        return paths, None
    return paths[:-1], paths[-1]


def _remote_join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if directory.strip("/") else name


async def put(session: _Session) -> None:
    """``socketkit put``: each source, then the summary."""
    await _put_all(session)
    session.report.summary(session.failures, always=session.args.recursive)


async def _put_all(session: _Session) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    args, client = session.args, session.client
    sources, target = split_targets(args.paths)
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
    since = session.report.start()
    try:
        with (
            session.interruptible(local),
            session.bar(f"put {os.path.basename(local)}", os.path.getsize(local)) as advance,
        ):
            result = await session.client.put_file(
                local, remote, force=args.force, resume=args.resume, progress=advance
            )
    except (ServiceError, OSError) as exc:
        session.fail(local, exc)
        return
    session.done(result.path, result, since)


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
        hint_terminal_input(f"the file for {remote}")
        source = sys.stdin.buffer
        while True:
            chunk = source.read(1 << 20)
            spool.write(chunk)
            if len(chunk) < 1 << 20:  # short only at the end: a terminal's Ctrl-D is not
                break  # sticky, reading on would wait for a second one
        spool.flush()
        since = session.report.start()
        try:
            result = await session.client.put_file(
                spool.name, remote, force=session.args.force, keep_mode=False
            )
        except (ServiceError, OSError) as exc:
            session.fail("-", exc)
            return
        session.done(result.path, result, since)


async def get(session: _Session) -> None:
    """``socketkit get``: each source, then the summary."""
    await _get_all(session)
    session.report.summary(session.failures, always=session.args.recursive)


async def _get_all(session: _Session) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415

    args, client = session.args, session.client
    sources, target = split_targets(args.paths)
    if target == "-":
        for source in sources:
            since = session.report.start()
            try:
                result = await client.get_stream(source, sys.stdout.buffer)
            except ServiceError as exc:
                session.fail(source, exc)
                continue
            session.done(source, result, since)
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


async def _get_one(session: _Session, remote: str, local: str, size: int, shown: str | None = None) -> None:
    """Download one file; ``shown``: its name in the final line (default ``local``)."""
    from socketkit.errors import ServiceError  # noqa: PLC0415
    from socketkit.services.filexfer.local import partial_path  # noqa: PLC0415

    args = session.args
    since = session.report.start()
    try:
        with (
            session.interruptible(shown or local, partial_path(local)),
            session.bar(f"get {os.path.basename(local)}", size) as advance,
        ):
            result = await session.client.get_file(
                remote, local, force=args.force, resume=args.resume, progress=advance
            )
    except (ServiceError, OSError) as exc:
        session.fail(remote, exc)
        return
    session.done((shown or local).removeprefix("./"), result, since)


async def _get_tree(session: _Session, remote_dir: str, local_dir: str) -> None:
    from socketkit.errors import ServiceError  # noqa: PLC0415
    from socketkit.services.filexfer.client import local_destination  # noqa: PLC0415

    os.makedirs(local_dir, exist_ok=True)
    try:
        entries = await session.client.list(remote_dir, recursive=True)
    except ServiceError as exc:
        session.fail(remote_dir, exc)
        return
    report_unlisted(remote_dir, entries.unlisted)
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
            # Shown as the user named it (the jailed path is absolute).
            shown = os.path.normpath(os.path.join(local_dir, relative))
            await _get_one(session, entry.path, local, entry.size, shown)
