"""``build(options) -> Service``: the file server its options describe."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from socketkit.errors import ConfigError
from socketkit.service import Service, engine_caps, listeners_for, tls_context_for
from socketkit.services.filexfer.options import FilesOptions

__all__ = ["build", "default_root", "owner_ids"]


def default_root(state_dir: str, root: str | None) -> str:
    """``root``, or ``STATE_DIR/files`` (made private, 0700, inside the private state
    directory, when missing): served content, not state."""
    if root is not None:
        return root
    from socketkit._private import private_dir  # noqa: PLC0415

    private_dir(state_dir)
    path = os.path.join(state_dir, "files")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    return path


def owner_ids(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of the ``owner`` option.

    Raises:
        ConfigError: no such user, or the server is not root (it could not give files away).
    """
    if user is None:
        return None
    import pwd  # noqa: PLC0415

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"files: --owner {user}: no such user") from None
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        raise ConfigError(f"files: --owner {user} needs a server running as root")
    return entry.pw_uid, entry.pw_gid


def _check_root(root: str) -> None:
    """Refuse a root that cannot be served, before any state is created.

    Raises:
        ConfigError: not a directory, or not one this process can list.
    """
    if not os.path.isdir(root):
        what = "does not exist" if not os.path.lexists(root) else "is not a directory"
        raise ConfigError(f"files: --root {root} {what}")
    try:
        os.close(os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))
        os.listdir(root)
    except OSError as exc:
        raise ConfigError(f"files: --root {root} cannot be read: {exc.strerror}") from None


def build(options: FilesOptions) -> Service:
    """The file server (refused if exposed without a token).

    Everything that can be refused (the exposure, ``owner``, ``root``) is checked before
    anything is created: a failed start leaves no state directory and no token.
    """
    from socketkit.auth.server_token import check_listeners, server_token  # noqa: PLC0415 (lazy: fast CLI)
    from socketkit.services.filexfer.server import FileServer, FileSettings  # noqa: PLC0415
    from socketkit.services.filexfer.store import FileStore, StoreLimits  # noqa: PLC0415
    from socketkit.state import StateDB  # noqa: PLC0415

    listeners = listeners_for(options, tls_context_for(options))
    check_listeners("files", listeners, has_token=not options.no_auth, needs_tls=False)
    owner = owner_ids(options.owner)
    if options.root is not None:
        _check_root(options.root)
    root = default_root(options.state_dir, options.root)
    limits = StoreLimits(
        read_only=options.read_only,
        owner=owner,
        quota=options.quota,
        max_entries=options.max_entries,
        max_file_size=options.max_file_size,
    )
    token = server_token("files", options.state_dir, no_auth=options.no_auth)
    db = StateDB(options.state_dir)
    try:
        store = FileStore(root, db, limits)
    except BaseException:
        db.close()
        raise
    settings = FileSettings(
        store=store, token=token, max_transfers=options.max_transfers, workers=options.workers
    )
    service = FileServer(settings)

    def make() -> Any:
        return service.make_server(
            idle_timeout=options.idle_timeout,
            **engine_caps(options),
        )

    def reconfigure(new: FilesOptions) -> Callable[[], None]:
        def commit() -> None:
            store.limits = replace(
                store.limits, read_only=new.read_only, max_file_size=new.max_file_size, quota=new.quota,
                max_entries=new.max_entries,
            )  # fmt: skip
            with store.usage.lock:
                store.usage.quota, store.usage.max_entries = new.quota, new.max_entries
            settings.max_transfers = new.max_transfers

        return commit

    return Service(
        "files",
        make,
        listeners,
        options,
        on_started=service.on_started,
        cleanups=[db.close, store.close],
        gauges=lambda: {"transfers": service.transfers},
        reconfigure=reconfigure,
        app=service,
    )
