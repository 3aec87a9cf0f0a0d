"""The file-transfer protocol on socketkit wire v1 (pure: requests, replies, validation).

After the hello and the auth exchange, a connection carries any number of operations,
one at a time; a refused operation gets an ERROR frame and the connection stays usable
(a protocol violation closes it)::

    put     {"op": "put", "path": P, "size": N, "sha256": H | null, "force": false, "resume": false,
             "mode": M}   (optional: the source's permission bits; absent from old clients)
            <- {"event": "ready", "offset": K, "prefix_sha256": HK | null}
            [-> {"op": "restart"}  <- {"event": "ready", "offset": 0}]   prefix differs
            -> BODY of N-K raw bytes
            [-> {"op": "commit", "sha256": H}]    when the put declared no hash up front
            <- {"event": "done", "path": P, "size": N, "sha256": H}

A client that knows the hash may declare it in the put; otherwise it hashes while
sending and declares it in "commit", so the hashing overlaps the transfer. Either way
the server verifies before the file appears.
    get     {"op": "get", "path": P, "offset": K, "prefix_sha256": HK | null}
            <- {"event": "file", "path": P, "size": N, "sha256": H, "mtime": T, "offset": K, "mode": M}
            <- BODY of N-K raw bytes (the client checks the whole file against H)
    list    {"op": "list", "path": P, "hash": false, "recursive": false}
            <- {"event": "entries", "entries": [...], "more": true|false} (one or more)
    stat    {"op": "stat", "path": P, "hash": false}   <- {"event": "stat", "entry": {...}}
    delete  {"op": "delete", "path": P, "recursive": false}   <- {"event": "deleted", "path": P}
    mkdir   {"op": "mkdir", "path": P, "parents": true}     <- {"event": "created", "path": P}

An entry is ``{"path", "type": "file"|"dir"|"link"|"other", "size", "mtime"}`` plus
``"sha256"`` when asked for ("other" is a FIFO, device or socket: listed, never opened).

A put without ``resume`` (nor ``force``) to a name whose earlier upload was interrupted
(its partial holds bytes) is refused with ``resumable``: the bytes already sent are
never thrown away unasked. ``mode`` (both ways) carries permission bits, which the
receiving side masks with ``masked_mode``: never setuid, setgid or sticky, never more
than its umask allows (as rsync does without ``--perms``).

Paths are virtual, relative to the served root (``request_parts``). Names that start
with a dot and end in ``.part`` are reserved for uploads in progress: a client never
sees one and cannot name one, as a file or as a directory on the way (a resumed upload
names its target, and the server finds the partial).

A CONTROL frame whose JSON is refused (``bad-json``: lone surrogates, nesting past the
limit...) is a bad request like any other: ``RequestDecoder`` hands it on as a
``BadHeader`` (the frame was read whole, the framing is intact), the server answers
with an ERROR frame and reads the next request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from socketkit.codec.base import EndOfStream, NeedData
from socketkit.codec.fields import Fields
from socketkit.codec.wire import Control, WireDecoder, WireEvent
from socketkit.errors import PermissionDenied, RemoteProtocolError
from socketkit.paths import MAX_PATH_LENGTH, display_name, jail_parts, split_virtual

__all__ = [
    "DEFAULT_FILE_MODE",
    "ENTRIES_PER_FRAME",
    "OPERATIONS",
    "PART_SUFFIX",
    "PERMISSION_BITS",
    "BadHeader",
    "Entry",
    "GetRequest",
    "ListRequest",
    "PathRequest",
    "PutRequest",
    "RequestDecoder",
    "is_partial",
    "masked_mode",
    "parse_commit",
    "parse_entry",
    "parse_mode",
    "parse_request",
    "partial_name",
    "request_parts",
    "safe_display",
]

OPERATIONS: Final = frozenset({"put", "get", "list", "stat", "delete", "mkdir"})

ENTRIES_PER_FRAME: Final = 500
"""Listing entries per control frame: a name is at most 4 KiB, so 500 short ones stay far
below the 64 KiB control limit; long names are split further by size (see server)."""

PART_SUFFIX: Final = ".part"
"""Uploads are written to ``.NAME.part`` next to their target, then moved into place."""

DEFAULT_FILE_MODE: Final = 0o666
"""The permission bits a received file starts from when the sender declared none (an old
client, standard input, an old server), before the umask: what ``open`` gives a new
file, so 0644 under the usual umask, as curl and wget leave a download."""

PERMISSION_BITS: Final = 0o777
"""The bits a sender's mode may carry over: read, write and execute for user, group and
others. setuid, setgid and sticky never cross: a file received from the network must not
run with its owner's rights, nor change how a shared directory treats it."""

_MAX_MODE: Final = 0o7777

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_SIZE: Final = 1 << 62


def partial_name(name: str) -> str:
    """The hidden partial file of an upload to ``name`` (one per target: a retry finds it
    and resumes; a second upload to the same name meanwhile is refused as busy)."""
    return f".{name}{PART_SUFFIX}"


def is_partial(name: str) -> bool:
    """Whether a name is reserved for partial files (``.NAME.part``)."""
    return name.startswith(".") and name.endswith(PART_SUFFIX)


def masked_mode(mode: int | None, umask: int) -> int:
    """The permission bits a received file gets: the sender's ``mode`` (or
    ``DEFAULT_FILE_MODE`` when it declared none) limited to ``PERMISSION_BITS`` and
    masked with the receiver's ``umask`` (rsync without ``--perms``: 0755 stays 0755,
    0600 stays 0600, 0666 becomes 0644 under umask 022, setuid is dropped)."""
    source = DEFAULT_FILE_MODE if mode is None else mode
    return source & PERMISSION_BITS & ~umask


def request_parts(path: str) -> list[str]:
    """The components of a client's path, checked (``socketkit.paths.jail_parts``: no
    escape, no unsafe name, ``..`` applied) and with no reserved partial name anywhere,
    even in a component that ``..`` cancels.

    Raises:
        PathOutsideRoot: the path leaves the root.
        PermissionDenied: an unsafe or reserved name (code ``bad-path``), a name too
            long (``name-too-long``), or a path too long.
    """
    if any(is_partial(part) for part in split_virtual(path)):
        raise PermissionDenied(
            f"names that start with a dot and end in {PART_SUFFIX} are reserved for uploads in progress",
            code="bad-path",
        )
    return jail_parts(path)


@dataclass(frozen=True, slots=True)
class BadHeader(Control):
    """A whole CONTROL frame whose JSON was refused (``error``); its header is empty, so
    code that expects a particular message refuses it as a bad request."""

    error: RemoteProtocolError | None = None


class RequestDecoder(WireDecoder):
    """``WireDecoder`` that turns a refused CONTROL payload into a ``BadHeader`` event
    instead of an exception that would end the connection: the frame has been read
    whole, so what follows it decodes as usual (a too-large or truncated frame still
    raises: the stream cannot be trusted after it)."""

    def next_event(self) -> WireEvent | NeedData | EndOfStream:
        """See ``WireDecoder.next_event``; ``bad-json`` becomes a ``BadHeader``.

        Raises:
            HandshakeError, FrameTooLarge, IncompleteFrame, RemoteProtocolError: as
                ``WireDecoder`` does, for everything but refused JSON.
        """
        try:
            return super().next_event()
        except RemoteProtocolError as exc:
            if exc.error_code != "bad-json":
                raise
            return BadHeader({}, error=exc)


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, error_code="bad-request")


def _path(fields: Fields) -> str:
    # The code paths.py gives a bad path too: the client reports both the same way.
    return Fields(fields.header, code="bad-path").text("path", default="", max_bytes=MAX_PATH_LENGTH)


def _size(fields: Fields, name: str, *, default: int | None = None) -> int:
    if default is None:
        return fields.integer(name, minimum=0, maximum=_MAX_SIZE)
    return fields.integer(name, minimum=0, maximum=_MAX_SIZE, default=default)


def _digest(fields: Fields, name: str, *, required: bool) -> str | None:
    value = fields.optional_text(name, max_bytes=64)
    if value is None and not required:
        return None
    if value is None or not _SHA256.match(value):
        raise _bad(f"{name} must be 64 lower-case hex digits")
    return value


@dataclass(frozen=True, slots=True)
class PutRequest:
    """Upload ``size`` bytes whose SHA-256 is ``sha256`` to ``path``."""

    path: str
    size: int
    sha256: str | None  # None: declared after the body, in a "commit" message
    force: bool = False
    resume: bool = False
    mode: int | None = None  # the source's permission bits; None: not declared (old clients)

    def to_header(self) -> dict[str, Any]:
        """The CONTROL header (``mode`` only when declared: old servers ignore it)."""
        header: dict[str, Any] = {
            "op": "put",
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "force": self.force,
            "resume": self.resume,
        }
        if self.mode is not None:
            header["mode"] = self.mode
        return header


@dataclass(frozen=True, slots=True)
class GetRequest:
    """Download ``path`` from ``offset`` (whose first ``offset`` bytes hash to ``prefix_sha256``)."""

    path: str
    offset: int = 0
    prefix_sha256: str | None = None

    def to_header(self) -> dict[str, Any]:
        """The CONTROL header."""
        return {"op": "get", "path": self.path, "offset": self.offset, "prefix_sha256": self.prefix_sha256}


@dataclass(frozen=True, slots=True)
class ListRequest:
    """List a directory (or describe a file)."""

    path: str = ""
    hash: bool = False
    recursive: bool = False

    def to_header(self) -> dict[str, Any]:
        """The CONTROL header."""
        return {"op": "list", "path": self.path, "hash": self.hash, "recursive": self.recursive}


@dataclass(frozen=True, slots=True)
class PathRequest:
    """stat, delete or mkdir of one path."""

    op: str
    path: str
    flag: bool = False  # stat: hash; delete: recursive; mkdir: parents

    def to_header(self) -> dict[str, Any]:
        """The CONTROL header."""
        flag_name = {"stat": "hash", "delete": "recursive", "mkdir": "parents"}[self.op]
        return {"op": self.op, "path": self.path, flag_name: self.flag}


Request = PutRequest | GetRequest | ListRequest | PathRequest


def parse_request(header: Mapping[str, Any]) -> Request:
    """Validate one operation header.

    Raises:
        RemoteProtocolError: unknown operation or malformed fields (code ``bad-request``).
    """
    fields = Fields(header)
    op = fields.text("op", max_bytes=40, allow_control=False)
    if op == "put":
        return PutRequest(
            _path(fields),
            _size(fields, "size"),
            _digest(fields, "sha256", required=False),
            fields.flag("force"),
            fields.flag("resume"),
            parse_mode(header),
        )
    if op == "get":
        offset = _size(fields, "offset", default=0)
        prefix = _digest(fields, "prefix_sha256", required=offset > 0)
        return GetRequest(_path(fields), offset, prefix)
    if op == "list":
        return ListRequest(_path(fields), fields.flag("hash"), fields.flag("recursive"))
    if op == "stat":
        return PathRequest("stat", _path(fields), fields.flag("hash"))
    if op == "delete":
        return PathRequest("delete", _path(fields), fields.flag("recursive"))
    if op == "mkdir":
        return PathRequest("mkdir", _path(fields), fields.flag("parents", default=True))
    raise _bad(f"unknown operation {op!r} (expected one of {', '.join(sorted(OPERATIONS))})")


@dataclass(frozen=True, slots=True)
class Entry:
    """One file or directory, as listings and stat report it."""

    path: str
    type: str
    size: int
    mtime: float
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object sent on the wire."""
        out: dict[str, Any] = {"path": self.path, "type": self.type, "size": self.size, "mtime": self.mtime}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        return out


def parse_mode(header: Mapping[str, Any]) -> int | None:
    """The optional ``mode`` of a put request or a file reply: ``None`` when absent or
    ``null``, else a whole number from 0 to 0o7777 (the special bits are accepted here
    and dropped by ``masked_mode``).

    Raises:
        RemoteProtocolError: a mode that is not such a number (code ``bad-request``).
    """
    if header.get("mode") is None:
        return None
    return Fields(header).integer("mode", minimum=0, maximum=_MAX_MODE)


def parse_commit(header: Mapping[str, Any]) -> str:
    """The SHA-256 of a ``{"op": "commit"}`` message.

    Raises:
        RemoteProtocolError: not a commit, or a malformed hash.
    """
    fields = Fields(header)
    if header.get("op") != "commit":
        raise _bad("expected the upload's commit with its sha256")
    return str(_digest(fields, "sha256", required=True))


def parse_entry(obj: Any) -> Entry:
    """Validate an entry from the server.

    Raises:
        RemoteProtocolError: malformed.
    """
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("path"), str)
        or obj.get("type") not in ("file", "dir", "link", "other")
    ):
        raise RemoteProtocolError("malformed listing entry")
    size, mtime = obj.get("size", 0), obj.get("mtime", 0)
    if not isinstance(size, int) or not isinstance(mtime, (int, float)):
        raise RemoteProtocolError("malformed listing entry")
    sha = obj.get("sha256")
    return Entry(obj["path"], obj["type"], size, float(mtime), sha if isinstance(sha, str) else None)


def safe_display(name: str) -> str:
    """A name from the network (or the disk) made safe to print or log: every character
    the name rule refuses (controls, bidi and zero-width characters, line separators...:
    ``socketkit.paths.unsafe_character``) shown escaped, as ``\\xNN`` or ``\\uNNNN``."""
    return display_name(name)
