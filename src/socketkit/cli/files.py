"""``socketkit serve files``: the options, and the file server they describe.

The client commands (``put``, ``get``, ``ls``, ``rm``, ``mkdir``) are in
``socketkit.cli.files_client``; ``add_parsers`` here adds them.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from socketkit.cli._serving import Service, add_server_options, listeners_from_args, positive_int, run_service
from socketkit.cli.files_client import add_parsers
from socketkit.cli.rexec import check_exposure, load_server_token
from socketkit.limits import DEFAULT_MAX_ENTRIES

__all__ = ["FILES_PORT", "add_parsers", "add_serve_parser", "files_service"]

FILES_PORT = 7021


def _size_arg(text: str) -> int:
    """Sizes as ``1048576``, ``512K``, ``10M``, ``2G``, ``1T`` (powers of 1024)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number, unit = text.rstrip("KMGTkmgtiBb"), text[len(text.rstrip("KMGTkmgtiBb")) :].upper()
    unit = unit.replace("IB", "").replace("B", "")
    if not number.isdigit() or unit not in units:
        raise argparse.ArgumentTypeError(f"expected a size such as 500M or 2G, not {text!r}")
    return int(number) * units[unit]


def add_serve_parser(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve files``."""
    parser = services.add_parser(
        "files",
        help="file transfer: upload and download with resume and verification",
        description="Serve a directory: uploads and downloads with SHA-256 verification, resume, atomic "
        "writes, a path jail, quotas and an audit log.",
    )
    add_server_options(parser, default_port=FILES_PORT, unix=True)
    parser.add_argument("--root", required=True, help="the directory to serve")
    parser.add_argument("--state-dir", default=".socketkit", help="token, hash cache, audit log")
    parser.add_argument(
        "--max-file-size", type=_size_arg, default=None, metavar="SIZE", help="largest upload (default: 1T)"
    )
    parser.add_argument(
        "--quota",
        type=_size_arg,
        default=None,
        metavar="SIZE",
        help="disk space the root may use, counted in 4 KiB blocks as du counts: every file, "
        "directory and kept partial upload (each one block at least), and the declared size "
        "of uploads in progress (default: none)",
    )
    parser.add_argument(
        "--max-entries",
        type=positive_int,
        default=DEFAULT_MAX_ENTRIES,
        metavar="N",
        help=f"files, directories and links the root may hold (default: {DEFAULT_MAX_ENTRIES:,})",
    )
    parser.add_argument("--read-only", action="store_true", help="refuse uploads, deletes and mkdir")
    parser.add_argument(
        "--owner",
        metavar="USER",
        help="give uploaded files and new directories to USER (a server running as root; "
        "serve all gives them to exec's --run-as user, so commands can use them)",
    )
    parser.add_argument(
        "--max-transfers",
        type=positive_int,
        default=64,
        help="transfers at once; more get 'busy' (default: 64)",
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="no token (refused unless listening on loopback only)"
    )
    parser.set_defaults(func=serve_files)


def serve_files(args: argparse.Namespace) -> int:
    """``serve files``."""
    return run_service(files_service(args), args)


def _owner(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of ``--owner USER``.

    Raises:
        ConfigError: no such user, or the server is not root (it could not give files away).
    """
    if user is None:
        return None
    import pwd  # noqa: PLC0415

    from socketkit.errors import ConfigError  # noqa: PLC0415

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"files: --owner {user}: no such user") from None
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        raise ConfigError(f"files: --owner {user} needs a server running as root")
    return entry.pw_uid, entry.pw_gid


def _check_root(root: str) -> None:
    """Refuse a ``--root`` that cannot be served, before any state is created.

    Raises:
        ConfigError: not a directory, or not one this process can list.
    """
    from socketkit.errors import ConfigError  # noqa: PLC0415

    if not os.path.isdir(root):
        what = "does not exist" if not os.path.lexists(root) else "is not a directory"
        raise ConfigError(f"files: --root {root} {what}")
    try:
        os.close(os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))
        os.listdir(root)
    except OSError as exc:
        raise ConfigError(f"files: --root {root} cannot be read: {exc.strerror}") from None


def files_service(args: argparse.Namespace) -> Service:
    """The file server the options describe (refused if exposed without a token).

    Everything that can be refused (the exposure, ``--owner``, ``--root``) is checked
    before anything is created: a failed start leaves no state directory and no token.
    """
    from socketkit.services.filexfer.server import FileServer, FileSettings  # noqa: PLC0415 (lazy)
    from socketkit.services.filexfer.store import FileStore, StoreLimits  # noqa: PLC0415
    from socketkit.state import StateDB  # noqa: PLC0415

    check_exposure("files", args, needs_tls=False)
    owner = _owner(args.owner)
    _check_root(args.root)
    limits = StoreLimits(
        read_only=args.read_only,
        owner=owner,
        quota=args.quota,
        max_entries=args.max_entries,
        **({"max_file_size": args.max_file_size} if args.max_file_size else {}),
    )
    token = load_server_token("files", args)
    db = StateDB(args.state_dir)
    try:
        store = FileStore(args.root, db, limits)
    except BaseException:
        db.close()
        raise
    settings = FileSettings(store=store, token=token, max_transfers=args.max_transfers, workers=args.workers)
    service = FileServer(settings)

    def make() -> Any:
        return service.make_server(
            idle_timeout=args.idle_timeout,
            max_connections=args.max_connections,
            max_connections_per_address=args.max_per_address,
            shutdown_grace=args.shutdown_grace,
        )

    return Service(
        "files",
        make,
        listeners_from_args(args),
        on_started=service.on_started,
        cleanups=[db.close, store.close],
        gauges=lambda: {"transfers": service.transfers},
    )
