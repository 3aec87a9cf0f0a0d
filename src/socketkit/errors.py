"""The one exception tree of socketkit.

Every error socketkit raises on purpose is one of these (timeouts are the builtin
``TimeoutError``, bad arguments from the caller are ``ValueError``/``TypeError``)::

    SocketkitError
    ├─ ProtocolError                  abstract: bytes that break a protocol
    │   ├─ LocalProtocolError         we were asked to send something illegal
    │   └─ RemoteProtocolError        the peer sent something illegal
    │       ├─ FrameTooLarge          a line/frame exceeds its limit (.limit, .size)
    │       ├─ IncompleteFrame        end of stream in the middle of a frame (.partial)
    │       └─ HandshakeError         not a socketkit peer, or no common version
    ├─ ResourceError
    │   ├─ ClosedResourceError        *we* closed the connection or server
    │   └─ BrokenResourceError        the peer or network broke it; __cause__ is the OSError
    ├─ ServiceError                   a service refused a request (.code, .message)
    │   ├─ PermissionDenied
    │   └─ PathOutsideRoot
    └─ ConfigError                    a server cannot start as configured (one line to print)
        └─ SandboxUnavailable         exec: no sandbox backend works on this machine

Raw ``OSError``s are translated into ``ResourceError``s at one boundary per engine
(``raise ... from exc``), so callers never need to know errno values.
"""

from __future__ import annotations

__all__ = [
    "BrokenResourceError",
    "ClosedResourceError",
    "ConfigError",
    "FrameTooLarge",
    "HandshakeError",
    "IncompleteFrame",
    "LocalProtocolError",
    "PathOutsideRoot",
    "PermissionDenied",
    "ProtocolError",
    "RemoteProtocolError",
    "ResourceError",
    "SandboxUnavailable",
    "ServiceError",
    "SocketkitError",
]


class SocketkitError(Exception):
    """Base class of every error socketkit raises on purpose."""


class ProtocolError(SocketkitError):
    """Bytes that break a protocol. Abstract: raise a subclass.

    Attributes:
        error_code: a short, stable, machine-readable reason (for error frames and logs).
        recoverable: the decoder that raised this has skipped the bad input and can go on
            with what follows (line protocols such as IRC answer and carry on); ``False``
            means the stream cannot be trusted any more.
    """

    error_code = "protocol-error"
    recoverable = False

    def __init__(self, message: str, *, error_code: str | None = None) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; raise Local/RemoteProtocolError")
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class FrameTooLarge(RemoteProtocolError):
    """A line or frame is longer than its limit.

    Raised before more than ``limit`` bytes (plus the chunk being fed) are buffered, and
    for a length prefix before anything is allocated.

    Attributes:
        limit: the configured maximum, in bytes.
        size: the size seen or declared so far (at least ``limit + 1``).
    """

    error_code = "frame-too-large"

    def __init__(self, limit: int, size: int, what: str = "frame") -> None:
        super().__init__(f"{what} of {size} bytes exceeds the limit of {limit} bytes")
        self.limit = limit
        self.size = size


class IncompleteFrame(RemoteProtocolError):
    """The stream ended in the middle of a line or frame.

    Attributes:
        partial: the bytes of the unfinished line or frame (never handed out as a message).
    """

    error_code = "incomplete-frame"

    def __init__(self, partial: bytes, what: str = "frame", *, detail: str | None = None) -> None:
        # ``detail`` replaces "after N bytes" where ``partial`` does not measure what came
        # (a body is handed out as chunks: its partial is always empty).
        super().__init__(f"stream ended inside a {what} {detail or f'after {len(partial)} bytes'}")
        self.partial = partial


class HandshakeError(RemoteProtocolError):
    """The peer is not speaking this protocol, or no version is common to both sides."""

    error_code = "handshake-failed"


class ResourceError(SocketkitError):
    """A connection or server can no longer be used."""


class ClosedResourceError(ResourceError):
    """We closed the resource ourselves and then tried to use it."""


class BrokenResourceError(ResourceError):
    """The peer or the network broke the connection (the ``OSError`` is ``__cause__``)."""


class ServiceError(SocketkitError):
    """A service refused a request; also raised on the client for an error frame.

    Attributes:
        code: a short, stable reason such as ``"busy"`` or ``"not-found"``.
        message: a human-readable sentence.
    """

    default_code = "service-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code if code is not None else self.default_code
        self.message = message


class PermissionDenied(ServiceError):
    """The request is not allowed (authentication, allow-list, read-only root...)."""

    default_code = "permission-denied"


class PathOutsideRoot(ServiceError):
    """A client path resolves outside the served root."""

    default_code = "path-outside-root"


class ConfigError(SocketkitError):
    """A server cannot start as configured; the message is one line for the operator."""


class SandboxUnavailable(ConfigError):
    """exec: no sandbox backend the settings allow works here (``--no-sandbox`` opts out)."""
