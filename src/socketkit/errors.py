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
    ├─ ConnectError (also OSError)    a client cannot reach ADDRESS: why, and what to try
    ├─ ServiceError                   a service refused a request (.code, .message)
    │   ├─ PermissionDenied
    │   └─ PathOutsideRoot
    └─ ConfigError                    a server cannot start as configured (one line to print)
        ├─ ListenError (also OSError) SERVICE cannot listen on ADDRESS: why, and what to try
        └─ SandboxUnavailable         exec: no sandbox backend works on this machine

Raw ``OSError``s are translated into ``ResourceError``s at one boundary per engine
(``raise ... from exc``), so callers never need to know errno values. Failures to
connect or to listen become ``ConnectError``/``ListenError`` in ``socketkit._oserrors``
(one translation for every client and server); they stay ``OSError``s with the errno of
the cause, so code that handles ``OSError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BrokenResourceError",
    "ClosedResourceError",
    "ConfigError",
    "ConnectError",
    "FrameTooLarge",
    "HandshakeError",
    "IncompleteFrame",
    "ListenError",
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


class ConnectError(SocketkitError, OSError):
    """A client could not reach a server: ``cannot connect to ADDRESS: REASON (HINT)``.

    Attributes:
        address: what was dialled, as the user wrote it (``host:port``, ``unix:/path``).
        reason: what went wrong, in words (``connection refused``).
        hint: what to try (``is `socketkit serve all` running there? ...``), or ``""``.
        errno: the cause's errno (``None`` for a timeout or a name lookup).
    """

    def __init__(self, address: str, reason: str, *, hint: str = "", errno: int | None = None) -> None:
        super().__init__(errno, reason)
        self.address = address
        self.reason = reason
        self.hint = hint

    def __str__(self) -> str:
        return f"cannot connect to {self.address}: {self.reason}" + (f" ({self.hint})" if self.hint else "")


class ConfigError(SocketkitError):
    """A server or client cannot start as configured; the message is one line for the
    operator (a TLS file that cannot be loaded names the file and why)."""


class ListenError(ConfigError, OSError):
    """A server cannot listen: ``SERVICE cannot listen on ADDRESS (KIND): REASON (HINT)``.

    Attributes:
        address: where, as the listener was given (``127.0.0.1:7007``, ``unix:/path``).
        kind: ``tcp`` or ``udp`` (``unix`` for a path).
        reason: what went wrong, in words (``the address is already in use``).
        hint: what to try, or ``""``.
        service: the service that wanted it, or ``None`` (``socketkit listen``).
        errno: the cause's errno.
    """

    def __init__(
        self,
        address: str,
        kind: str,
        reason: str,
        *,
        hint: str = "",
        service: str | None = None,
        errno: int | None = None,
    ) -> None:
        super().__init__(errno, reason)
        self.address = address
        self.kind = kind
        self.reason = reason
        self.hint = hint
        self.service = service

    def __str__(self) -> str:
        who = f"{self.service} " if self.service else ""
        where = f"{who}cannot listen on {self.address} ({self.kind})"
        return f"{where}: {self.reason}" + (f" ({self.hint})" if self.hint else "")

    def replace(self, *, service: str | None = None, hint: str | None = None) -> ListenError:
        """A copy naming ``service`` or giving another ``hint`` (the cause is kept)."""
        new = ListenError(
            self.address,
            self.kind,
            self.reason,
            hint=self.hint if hint is None else hint,
            service=self.service if service is None else service,
            errno=self.errno,
        )
        new.__cause__ = self.__cause__
        return new


class SandboxUnavailable(ConfigError):
    """exec: no sandbox backend the settings allow works here (``--no-sandbox`` opts out)."""
