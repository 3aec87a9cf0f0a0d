"""Challenge-response authentication over socketkit wire v1 control frames (pure).

After the hello exchange::

    server -> client  {"auth": "challenge", "nonce": Ns, "service": S, "delay": D}
                                                                     (or {"auth": "none", "service": S})
    client -> server  {"auth": "response", "nonce": Nc, "mac": Mc}
    server -> client  {"auth": "ok", "mac": Ms}                      (or ERROR auth-failed)

    Mc = HMAC-SHA256(token, "socketkit/1 client\\0" || Ns || Nc)
    Ms = HMAC-SHA256(token, "socketkit/1 server\\0" || Ns || Nc)

Nonces are 32 random bytes, hex-encoded, fresh on every connection. The token never
crosses the wire; a recorded response is useless on a new connection (new Ns); the
server proves it knows the token too (Ms over the client's fresh Nc), so a client is
never fooled by an impostor; the two labels keep a MAC of one side from being
reflected as the other's. MACs are compared with ``hmac.compare_digest``.

The client may send its request right behind its response without waiting for "ok"
(one round trip saved); the server acts on it only after verifying the response, and
the client trusts nothing it receives until it has checked Ms.

``service`` names the service ("exec", "files"), so a client pointed at the wrong port
says so instead of failing later. ``delay`` (seconds, present only when non-zero) says
that the server will give its verdict no sooner: failed attempts from the client's
address are being throttled (``socketkit.auth.throttle``); the client waits that much
longer before it gives up.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from socketkit.errors import HandshakeError, PermissionDenied, RemoteProtocolError

__all__ = [
    "NONCE_SIZE",
    "ClientAuth",
    "ServerAuth",
    "client_mac",
    "server_mac",
]

NONCE_SIZE: Final = 32
"""Bytes of randomness per nonce (256 bits, as the token)."""

_CLIENT_LABEL: Final = b"socketkit/1 client\0"
_SERVER_LABEL: Final = b"socketkit/1 server\0"


def _key(token: str) -> bytes:
    return token.strip().encode("utf-8")


def client_mac(token: str, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """The client's proof of the token."""
    return hmac.new(_key(token), _CLIENT_LABEL + server_nonce + client_nonce, hashlib.sha256).digest()


def server_mac(token: str, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """The server's proof of the token."""
    return hmac.new(_key(token), _SERVER_LABEL + server_nonce + client_nonce, hashlib.sha256).digest()


def _hex_field(header: Mapping[str, Any], name: str, size: int) -> bytes:
    value = header.get(name)
    if not isinstance(value, str) or len(value) != 2 * size:
        raise RemoteProtocolError(f"auth message needs a {size}-byte hex {name!r}", error_code="bad-auth")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise RemoteProtocolError(f"auth {name!r} is not hex", error_code="bad-auth") from None


@dataclass(slots=True)
class ServerAuth:
    """The server side for one connection.

    Args:
        token: the shared secret (``None``: authentication is off, loopback only).
        nonce: ``NONCE_SIZE`` fresh random bytes (from ``secrets``; injected, so this
            module stays pure and testable).
        service: the service's name, announced in the challenge.
    """

    token: str | None
    nonce: bytes
    service: str = ""

    def challenge(self, delay: float = 0.0) -> dict[str, Any]:
        """The first control message to send (``delay``: seconds before the verdict)."""
        if self.token is None:
            return {"auth": "none", "service": self.service}
        message: dict[str, Any] = {
            "auth": "challenge",
            "nonce": self.nonce.hex(),
            "methods": ["hmac-sha256"],
            "service": self.service,
        }
        if delay > 0:
            message["delay"] = round(delay, 3)
        return message

    def verify(self, header: Mapping[str, Any]) -> dict[str, Any]:
        """Check the client's response; return the "ok" message to send.

        Raises:
            PermissionDenied: wrong token (code ``auth-failed``).
            RemoteProtocolError: not a response message.
        """
        if self.token is None:
            raise RemoteProtocolError("authentication is off: no response expected", error_code="bad-auth")
        if header.get("auth") != "response":
            raise RemoteProtocolError("expected an auth response first", error_code="bad-auth")
        client_nonce = _hex_field(header, "nonce", NONCE_SIZE)
        mac = _hex_field(header, "mac", hashlib.sha256().digest_size)
        if not hmac.compare_digest(mac, client_mac(self.token, self.nonce, client_nonce)):
            raise PermissionDenied("authentication failed: wrong token", code="auth-failed")
        return {"auth": "ok", "mac": server_mac(self.token, self.nonce, client_nonce).hex()}


@dataclass(slots=True)
class ClientAuth:
    """The client side for one connection.

    Args:
        token: the shared secret (``None``: we have none; only an auth-less server works).
        nonce: ``NONCE_SIZE`` fresh random bytes.
        service: the service we expect (``""``: any).
    """

    token: str | None
    nonce: bytes
    service: str = ""
    _server_nonce: bytes | None = None

    def respond(self, challenge: Mapping[str, Any]) -> dict[str, Any] | None:
        """Answer the server's first message (``None``: the server needs no auth).

        Raises:
            PermissionDenied: the server wants a token and we have none (code
                ``no-token``).
            HandshakeError: the server is another socketkit service (code
                ``wrong-service``).
            RemoteProtocolError: not a challenge.
        """
        offered = challenge.get("service")
        if self.service and isinstance(offered, str) and offered and offered != self.service:
            raise HandshakeError(
                f"this is a socketkit {offered[:40]!r} server, not {self.service}", error_code="wrong-service"
            )
        kind = challenge.get("auth")
        if kind == "none":
            return None
        if kind != "challenge":
            raise RemoteProtocolError("expected an auth challenge from the server", error_code="bad-auth")
        if self.token is None:
            raise PermissionDenied(
                "the server requires a token: set SOCKETKIT_TOKEN or pass --token-file",
                code="no-token",
            )
        self._server_nonce = _hex_field(challenge, "nonce", NONCE_SIZE)
        mac = client_mac(self.token, self._server_nonce, self.nonce)
        return {"auth": "response", "nonce": self.nonce.hex(), "mac": mac.hex()}

    @staticmethod
    def announced_delay(challenge: Mapping[str, Any], limit: float) -> float:
        """The verdict delay the server announced, in seconds (0 to ``limit``)."""
        delay = challenge.get("delay")
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not delay > 0:
            return 0.0
        return min(float(delay), limit)

    def check_ok(self, header: Mapping[str, Any]) -> None:
        """Verify the server's proof.

        Raises:
            PermissionDenied: the server does not know the token (code ``server-auth-failed``).
            RemoteProtocolError: not an "ok" message.
        """
        if header.get("auth") != "ok" or self._server_nonce is None:
            raise RemoteProtocolError("expected the server's auth ok", error_code="bad-auth")
        assert self.token is not None
        mac = _hex_field(header, "mac", hashlib.sha256().digest_size)
        if not hmac.compare_digest(mac, server_mac(self.token, self._server_nonce, self.nonce)):
            raise PermissionDenied(
                "the server failed to prove it knows the token (impostor?)",
                code="server-auth-failed",
            )
