"""Reading the small files options name (a token, a password, an operator list, a MOTD).

One reader for every such file, so none can be made to hang the server or fill its
memory: it opens without blocking (a FIFO with no writer would block ``open`` for
ever), accepts a regular file or a pipe (``--token-file <(pass show sk)``) and nothing
else (``/dev/zero`` is a device), and reads one byte past its limit to refuse a file
that is larger, instead of reading it to its end.
"""

from __future__ import annotations

import os
import stat

from socketkit.errors import ConfigError

__all__ = ["MAX_OPTION_FILE_SIZE", "read_option_file", "read_option_text"]

MAX_OPTION_FILE_SIZE = 1 << 20
"""The default limit: a MOTD or an operator list of a megabyte is far past any real one."""


def read_option_file(
    path: str | os.PathLike[str], what: str, *, limit: int = MAX_OPTION_FILE_SIZE, secret: bool = False
) -> bytes:
    """The bytes of the file ``path`` (``what`` names it in errors: "the token file").
    ``secret``: a regular file must be private to its owner (as ssh insists for keys);
    a pipe is private by nature.

    Raises:
        ConfigError: missing, unreadable, not a regular file or a pipe, larger than
            ``limit`` bytes, or a secret others can read (one line saying which).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{what} {os.fspath(path)}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise ConfigError(f"{what} {os.fspath(path)} is not a regular file or a pipe")
        if secret and stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{what} {os.fspath(path)} can be read by other users (mode {stat.filemode(mode)}): "
                f"chmod 600 {os.fspath(path)}"
            )
        os.set_blocking(fd, True)  # a pipe's writer may still be writing: wait for it
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"{what} {os.fspath(path)}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise ConfigError(f"{what} {os.fspath(path)} is larger than {limit} bytes")
    return b"".join(chunks)


def read_option_text(
    path: str | None, what: str, limit: int = MAX_OPTION_FILE_SIZE, *, secret: bool = False
) -> str | None:
    """The UTF-8 text of a file an option names (None: no file), through the one reader.

    Raises:
        ConfigError: as ``read_option_file``, or the file is not UTF-8.
    """
    if path is None:
        return None
    data = read_option_file(path, what, limit=limit, secret=secret)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
