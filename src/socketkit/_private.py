"""State directories and files private to their user (0700 and 0600), for every entry point.

Every service keeps its state (the token, chat history, audit logs with every argv) in
a state directory made with ``private_dir``: mode 0700, and only that directory
(parents are the user's own business; ``os.makedirs(mode=...)`` would have left the
state directory itself at the umask's 0755 when it was an intermediate one). Files in
it are created 0600 before anything is written (``private_file``). A state directory
that others can write, or that belongs to another user, is refused; one that others can
read (left so by an older version) is made private, with a warning.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from socketkit._log import get_logger
from socketkit.errors import PermissionDenied

__all__ = ["private_dir", "private_file"]

logger = get_logger(__name__)


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Make ``path`` (missing parents too, with their default mode) a directory only its
    owner can use, and return it.

    Raises:
        PermissionDenied: it exists but is not a directory, belongs to another user, or
            others can write to it (code ``state-mode``).
        OSError: it cannot be created.
    """
    directory = Path(path)
    parent = os.stat(directory.absolute().parent) if directory.absolute().parent.exists() else None
    if parent is not None and parent.st_mode & stat.S_IWOTH and not parent.st_mode & stat.S_ISVTX:
        raise PermissionDenied(
            f"{directory} lies in {directory.absolute().parent}, which every user can write without the "
            "sticky bit (another user could rename it away and put theirs in its place): use another place",
            code="state-mode",
        )
    if not directory.exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionDenied(f"{directory} is not a directory", code="state-mode")
    if st.st_uid != os.geteuid():
        raise PermissionDenied(
            f"{directory} belongs to another user (uid {st.st_uid}): use a state directory of your own",
            code="state-mode",
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionDenied(
            f"{directory} can be written by other users (mode {stat.filemode(st.st_mode)}): "
            f"chmod 700 {directory}",
            code="state-mode",
        )
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or st.st_mode & 0o700 != 0o700:
        os.chmod(directory, 0o700)
        logger.warning(
            "%s was readable by other users (mode %s): made private (0700)",
            directory,
            stat.filemode(st.st_mode),
        )
    return directory


def private_file(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` empty with mode 0600 if it is missing, else make it 0600; never
    through a symbolic link. Returns it."""
    target = Path(path)
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return target
