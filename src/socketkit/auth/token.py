"""The server token: created once in the state directory (mode 0600), read by clients.

The token is 256 random bits as 64 hex characters. Servers load
``STATE_DIR/token``, creating it atomically on first start; clients take
``--token-file FILE``, else ``SOCKETKIT_TOKEN``, else ``STATE_DIR/token`` when it is
readable (the same machine). Nothing here ever logs the token itself.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from socketkit._private import private_dir
from socketkit._readfile import read_option_file
from socketkit.errors import ConfigError, PermissionDenied

__all__ = ["TOKEN_ENV", "ServerToken", "load_client_token", "load_or_create_token"]

TOKEN_ENV = "SOCKETKIT_TOKEN"
TOKEN_FILE = "token"


@dataclass(frozen=True, slots=True)
class ServerToken:
    """The server's token and where it lives."""

    value: str
    path: Path
    created: bool


MAX_TOKEN_FILE_SIZE = 4096
"""Bytes read from a token file at most: a token is 64 characters; a file or pipe that
holds more is refused instead of being read to its end (``socketkit._readfile``)."""


def _read_token(path: Path) -> str:
    try:
        data = read_option_file(path, "the token file", limit=MAX_TOKEN_FILE_SIZE, secret=True)
    except ConfigError as exc:
        raise PermissionDenied(str(exc), code="no-token") from None
    return _checked(data.decode("utf-8", errors="surrogateescape").strip(), str(path))


def _checked(value: str, source: str) -> str:
    """A token is at least 32 printable ASCII characters without spaces (hex, when we
    make it): anything else, from a file or the environment, is refused in one line."""
    if len(value) < 32 or not all(c.isascii() and c.isprintable() and not c.isspace() for c in value):
        raise PermissionDenied(
            f"{source} holds no usable token (32 printable ASCII characters at least)", code="no-token"
        )
    return value


def load_or_create_token(state_dir: str | os.PathLike[str]) -> ServerToken:
    """Return the server token, creating ``STATE_DIR/token`` (0600) if it does not exist.

    Raises:
        OSError: the state directory cannot be created or the file cannot be read.
        PermissionDenied: the file exists but is readable by others, or is empty; the
            state directory is not private (``socketkit.state.private_dir``).
    """
    directory = private_dir(state_dir)
    path = directory / TOKEN_FILE
    created = False
    if not path.exists():
        token = secrets.token_hex(32)
        tmp = directory / f".{TOKEN_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (token + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and never replaces a token another process made
            created = True
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionDenied(
            f"{path} is not a file of this user's (uid {os.geteuid()}): remove it to make a new token",
            code="token-mode",
        )
    mode = st.st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionDenied(
            f"{path} is readable by other users (mode {stat.filemode(mode)}): chmod 600 it",
            code="token-mode",
        )
    return ServerToken(_read_token(path), path, created)


def load_client_token(
    token_file: str | os.PathLike[str] | None, state_dir: str | os.PathLike[str] | None = None
) -> str | None:
    """The token a client should use, or ``None`` when none is configured.

    Order: ``token_file``, then the ``SOCKETKIT_TOKEN`` variable, then
    ``STATE_DIR/token`` if it exists (a client on the server's own machine).

    Raises:
        OSError: ``token_file`` cannot be read.
        PermissionDenied: it holds no usable token.
    """
    if token_file is not None:
        return _read_token(Path(token_file))
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return _checked(env, TOKEN_ENV)
    if state_dir is not None:
        path = Path(state_dir) / TOKEN_FILE
        if path.is_file():
            return _read_token(path)
    return None
