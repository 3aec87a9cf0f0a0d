"""``serve files``'s options, declared once (flags, configuration file, environment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from socketkit.limits import DEFAULT_MAX_ENTRIES
from socketkit.options import (
    COUNT,
    FLAG,
    SIZE,
    TEXT,
    IdleOption,
    ListenOptions,
    RootOption,
    StateOption,
    UnixOption,
    WorkersOption,
    option,
    port_option,
)

__all__ = ["DEFAULT_MAX_FILE_SIZE", "DEFAULT_MAX_TRANSFERS", "FILES_PORT", "FilesOptions"]

FILES_PORT: Final = 7021
"""The file service's port (next to FTP's 21, unprivileged)."""

DEFAULT_MAX_TRANSFERS: Final = 64
"""Uploads and downloads running at once (per worker); more get a "busy" error."""

DEFAULT_MAX_FILE_SIZE: Final = 1 << 40
"""The largest upload: 1 TiB."""

_STORE = "what may be stored"


@dataclass(frozen=True)
class FilesOptions(ListenOptions, UnixOption, WorkersOption, IdleOption, StateOption, RootOption):
    """Serve a directory: uploads and downloads with verification and resume."""

    port: int = port_option(FILES_PORT)
    max_file_size: int = option(DEFAULT_MAX_FILE_SIZE, "largest upload", SIZE, live=True, group=_STORE)
    quota: int | None = option(
        None,
        "disk space the root may use, counted in 4 KiB blocks as du counts: every file, "
        "directory and kept partial upload (each one block at least), and the declared size "
        "of uploads in progress",
        SIZE,
        live=True,
        shown="none",
        group=_STORE,
    )
    max_entries: int = option(
        DEFAULT_MAX_ENTRIES, "files, directories and links the root may hold", COUNT, live=True, group=_STORE
    )
    read_only: bool = option(False, "refuse uploads, deletes and mkdir", FLAG, live=True, group=_STORE)
    owner: str | None = option(
        None,
        "give uploaded files and new directories to USER (a server running as root; "
        "serve all gives them to exec's --run-as user, so commands can use them)",
        TEXT,
        metavar="USER",
        group=_STORE,
    )
    max_transfers: int = option(
        DEFAULT_MAX_TRANSFERS,
        "transfers at once per worker; more get 'busy'",
        COUNT,
        live=True,
        group="limits",
    )
    no_auth: bool = option(False, "no token (refused unless listening on loopback only)", FLAG)
