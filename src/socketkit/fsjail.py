"""Opening paths beneath a directory fd: the file service's jail, enforced by the kernel.

A path that is checked (``realpath``, a prefix test) and then opened by name can be
changed in between: rename a directory and put a symlink to ``/`` in its place, and the
open goes outside. So nothing here opens a path string from the root. ``Jail`` holds
the root's directory fd for its whole life, and every operation resolves the client's
components (already checked and ``..``-free: ``socketkit.paths.jail_parts``) relative
to it:

- with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` where
  the kernel has it (Linux 5.6+, called through ``syscall``: the C library may lack a
  wrapper), one call for the whole path;
- else with ``openat(O_NOFOLLOW | O_DIRECTORY)`` one component at a time, each relative
  to the fd of the one before.

Symlink policy: **no symlink is ever followed, wherever it points**. Both backends then
mean the same thing (following links that stay beneath the root would need a resolver
of our own for the fallback), a link cannot alias one part of the tree into another
(quota, hash cache and audit log key on the client's path), and nothing in the
protocol creates links: one in the root was put there by someone on the machine.
Listings show links as ``link``, ``rm`` removes the link itself, every other operation
through one fails with ``ELOOP`` (reported as ``path-outside-root``).

Every operation on an entry happens relative to a directory fd that was itself
resolved beneath the root: ``*at`` calls with ``dir_fd`` (``unlinkat``, ``mkdirat``,
``linkat``, ``renameat``, ``fstatat`` without following). Tree walks (listings, ``rm
-r``, the quota's scan) resolve each directory afresh from the root instead of keeping
a stack of fds: a directory moved out of the root while it is walked is then no longer
reachable, and a walk holds two fds at most, however deep the tree. Files are opened
with ``O_NONBLOCK | O_NOCTTY``, so a FIFO or a device never blocks the thread that
opens it; callers check the type on the open fd.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from socketkit.paths import MAX_PATH_LENGTH

__all__ = ["FILE_FLAGS", "Jail", "openat2_available"]

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

_SYS_OPENAT2 = 437
"""openat2's number: the same on every Linux architecture (it came after the tables were
unified in 5.1)."""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

FILE_FLAGS = _CLOEXEC | _NOFOLLOW | _NOCTTY | _NONBLOCK
"""Added to every open: no symlink, no controlling terminal, and no blocking on a FIFO or
a device (a FIFO opened for reading without O_NONBLOCK waits for a writer forever)."""

_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | FILE_FLAGS


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


def _load_openat2() -> Callable[[int, bytes, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)

    def openat2(dir_fd: int, path: bytes, flags: int, mode: int) -> int:
        # RESOLVE_NO_SYMLINKS covers the last component too, with ELOOP; O_NOFOLLOW
        # would make O_DIRECTORY on a symlink say ENOTDIR instead.
        flags &= ~_NOFOLLOW
        how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, _RESOLVE)
        while True:  # ctypes releases the GIL for the call; EINTR is ours to retry
            fd = int(syscall(_SYS_OPENAT2, dir_fd, path, ctypes.byref(how), ctypes.sizeof(how)))
            if fd >= 0:
                return fd
            code = ctypes.get_errno()
            if code != errno.EINTR:
                raise OSError(code, os.strerror(code))

    return openat2


_OPENAT2 = _load_openat2() if os.name == "posix" and hasattr(os, "O_DIRECTORY") else None


def openat2_available(dir_fd: int) -> bool:
    """Whether openat2 works here (kernel 5.6+, not blocked by a seccomp filter)."""
    if _OPENAT2 is None:
        return False
    try:
        os.close(_OPENAT2(dir_fd, b".", _DIR_FLAGS, 0))
    except OSError:  # ENOSYS (old kernel), EPERM (seccomp), EINVAL (unknown bits)
        return False
    return True


class Jail:
    """A served directory: every path resolved beneath its fd, no symlink followed.

    Args:
        root: the directory (resolved once, now: a symlink as the root itself is the
            operator's choice).
        use_openat2: ``False`` forces the one-component-at-a-time backend (tests run
            both); ``None`` uses openat2 when the kernel has it.

    Raises:
        OSError: the root cannot be opened as a directory.
    """

    def __init__(self, root: str, *, use_openat2: bool | None = None) -> None:
        self.fd = os.open(root, _DIR_FLAGS & ~_NOFOLLOW)
        # Like a file object's: a jail dropped without close() still gives its fd back.
        self._release = weakref.finalize(self, os.close, self.fd)
        available = openat2_available(self.fd)
        self.backend = "openat2" if available and use_openat2 is not False else "openat"

    def close(self) -> None:
        """Release the root's fd (also done when the jail is garbage-collected)."""
        self._release()
        self.fd = -1

    # --- resolving ---------------------------------------------------------------------

    def open(self, parts: Sequence[str], flags: int, mode: int = 0o600) -> int:
        """Open ``parts`` (``[]`` is the root) with ``flags`` plus ``FILE_FLAGS``.

        Raises:
            OSError: ELOOP for a symlink anywhere on the way, ENOTDIR, ENOENT... (the
                file service maps them to its error codes).
        """
        flags |= FILE_FLAGS
        if not parts:
            return os.open(".", flags, mode, dir_fd=self.fd)
        path = os.fsencode("/".join(parts))
        if len(path) > MAX_PATH_LENGTH:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        if self.backend == "openat2":
            assert _OPENAT2 is not None
            return _OPENAT2(self.fd, path, flags, mode)
        with self.parent(parts) as (dir_fd, name):
            return _open_at(dir_fd, name, flags, mode)

    def open_dir(self, parts: Sequence[str]) -> int:
        """An fd of the directory ``parts`` (for ``*at`` calls and ``os.scandir``).

        Raises:
            OSError: see ``open``; ENOTDIR when it is not a directory.
        """
        return self.open(parts, _DIR_FLAGS)

    @contextmanager
    def parent(self, parts: Sequence[str]) -> Iterator[tuple[int, str]]:
        """``(fd of the directory holding the last component, its name)``, for
        operations on the entry itself (stat without following, unlink, rename...).

        Raises:
            OSError: the directory cannot be resolved (see ``open``).
            ValueError: ``parts`` is empty (the root has no parent here).
        """
        if not parts:
            raise ValueError("the root has no parent in the jail")
        if self.backend == "openat2" or len(parts) == 1:
            fd = self.open_dir(parts[:-1]) if len(parts) > 1 else os.dup(self.fd)
        else:
            fd = os.dup(self.fd)
            try:
                for name in parts[:-1]:
                    child = _open_at(fd, name, _DIR_FLAGS, 0)
                    os.close(fd)
                    fd = child
            except BaseException:
                os.close(fd)
                raise
        try:
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def lstat(self, parts: Sequence[str]) -> os.stat_result:
        """The entry's own status (a symlink is described, not followed).

        Raises:
            OSError: see ``open``.
        """
        if not parts:
            return os.fstat(self.fd)
        with self.parent(parts) as (dir_fd, name):
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)

    # --- changing ------------------------------------------------------------------------

    def mkdir(
        self,
        parts: Sequence[str],
        *,
        parents: bool,
        mode: int = 0o755,
        owner: tuple[int, int] | None = None,
        admit: Callable[[], Callable[[], None]] = lambda: lambda: None,
    ) -> bool:
        """Create the directory ``parts`` (``parents``: and the missing ones above it,
        each made and entered relative to the one before). Returns whether it was
        created (``False``: it already was a directory, with ``parents``). Each
        directory made is given to ``owner`` (uid, gid) when one is named.

        ``admit()`` is called before each directory is made (it may raise to refuse it:
        the quota), and the function it returns if that one was not made after all.

        Raises:
            OSError: EEXIST (it exists and is not a directory, or without ``parents``),
                ENOENT (a missing parent without ``parents``), ELOOP, ENOTDIR.
            ValueError: ``parts`` is empty.
            Exception: what ``admit`` raised.
        """
        if not parts:
            raise ValueError("the root exists")
        if not parents:
            with self.parent(parts) as (dir_fd, name):
                _make_dir(dir_fd, name, mode, owner, admit)
            return True
        fd = os.dup(self.fd)
        created = False
        try:
            for index, name in enumerate(parts):
                try:
                    os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:  # only then is it charged and made
                    try:
                        _make_dir(fd, name, mode, owner, admit)
                        created = True
                    except FileExistsError:
                        created = False
                else:
                    created = False
                try:
                    child = _open_at(fd, name, _DIR_FLAGS, 0)
                except NotADirectoryError:
                    if index == len(parts) - 1:
                        raise FileExistsError(errno.EEXIST, "exists and is not a directory") from None
                    raise
                os.close(fd)
                fd = child
        finally:
            os.close(fd)
        return created

    def remove_tree(
        self,
        parts: Sequence[str],
        *,
        keep: Callable[[list[str]], bool] = lambda parts: False,
        on_remove: Callable[[os.stat_result], None] = lambda st: None,
    ) -> None:
        """Remove the directory ``parts`` and everything in it, calling ``on_remove``
        with the status (lstat) of each entry removed, directories included (as it
        goes: an error midway leaves the count right). Entries for which
        ``keep(parts)`` is true are left (the directories holding them then stay too,
        and ENOTEMPTY is raised at the end).

        Each directory is resolved from the root when its turn comes; an entry that
        was a directory when listed and is a symlink (or a file) when entered is
        unlinked as what it now is, never followed.

        Raises:
            OSError: a directory could not be resolved, listed or removed.
        """
        # Depth first without recursion: (directory, listed yet?).
        stack: list[tuple[list[str], bool]] = [(list(parts), False)]
        while stack:
            directory, listed = stack.pop()
            if listed:
                with self.parent(directory) as (dir_fd, name):
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    os.rmdir(name, dir_fd=dir_fd)
                on_remove(st)
                continue
            stack.append((directory, True))
            try:
                dir_fd = self.open_dir(directory)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                stack.pop()  # no longer a directory: remove the entry itself
                with self.parent(directory) as (parent_fd, name):
                    _unlink(parent_fd, name, on_remove)
                continue
            try:
                with os.scandir(dir_fd) as entries:
                    names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
                for name, is_dir in names:
                    child = [*directory, name]
                    if keep(child):
                        continue
                    if is_dir:
                        stack.append((child, False))
                    else:
                        _unlink(dir_fd, name, on_remove)
            finally:
                os.close(dir_fd)

    def walk(
        self, parts: Sequence[str], *, skip: Callable[[str], bool] = lambda name: False
    ) -> Iterator[tuple[list[str], int, list[tuple[str, os.stat_result]]]]:
        """Every directory at or under ``parts``, depth first in name order, as
        ``(parts, fd, entries)``: ``entries`` are ``(name, lstat)`` pairs (symlinks
        described, not followed; names for which ``skip(name)`` is true left out), and
        the fd stays open until the caller asks for the next directory (to open
        entries relative to it). A subdirectory that cannot be entered when its turn
        comes (gone, no longer a directory, unreadable, too deep for PATH_MAX) is
        skipped, as ``find`` goes on past one.

        Raises:
            OSError: ``parts`` itself cannot be opened as a directory.
        """
        stack = [list(parts)]
        first = True
        while stack:
            directory = stack.pop()
            try:
                fd = self.open_dir(directory)
            except OSError:
                if first:
                    raise
                continue
            first = False
            try:
                entries: list[tuple[str, os.stat_result]] = []
                with os.scandir(fd) as found:
                    for entry in found:
                        if skip(entry.name):
                            continue
                        try:
                            entries.append((entry.name, entry.stat(follow_symlinks=False)))
                        except FileNotFoundError:
                            continue  # removed while we listed
                entries.sort(key=lambda item: item[0])
                yield directory, fd, entries
            finally:
                os.close(fd)
            stack.extend([*directory, name] for name, st in reversed(entries) if stat.S_ISDIR(st.st_mode))


def _open_at(dir_fd: int, name: str, flags: int, mode: int) -> int:
    """One component, relative to ``dir_fd``, never through a symlink (ELOOP if it is one:
    O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR, openat2 says ELOOP)."""
    try:
        return os.open(name, flags | FILE_FLAGS, mode, dir_fd=dir_fd)
    except NotADirectoryError:
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
        raise


def _unlink(dir_fd: int, name: str, on_remove: Callable[[os.stat_result], None]) -> None:
    """Unlink one non-directory entry and report what it was."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return  # someone else removed it first
    on_remove(st)


def _make_dir(
    dir_fd: int,
    name: str,
    mode: int,
    owner: tuple[int, int] | None,
    admit: Callable[[], Callable[[], None]],
) -> None:
    """mkdirat, charged by ``admit`` first (and refunded if it is not made)."""
    refund = admit()
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except BaseException:
        refund()
        raise
    if owner is not None:
        os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
