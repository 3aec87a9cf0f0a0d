"""TLS contexts for servers and clients, with safe defaults (TLS 1.2+, verification on).

``--insecure`` is the only way to skip verification, and it is explicit at every call.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from pathlib import Path

__all__ = [
    "certificate_fingerprint",
    "check_fingerprint",
    "client_context",
    "normalize_fingerprint",
    "server_context",
]


def server_context(cert: str | Path, key: str | Path | None = None) -> ssl.SSLContext:
    """A server-side context loading a certificate chain and its key.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: the certificate or key is invalid, or they do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), None if key is None else str(key))
    return context


def client_context(
    ca: str | Path | None = None, *, fingerprint: str | None = None, insecure: bool = False
) -> ssl.SSLContext:
    """A client-side context verifying the server.

    Args:
        ca: a CA bundle (PEM) to trust instead of the system's.
        fingerprint: pin the server certificate by its SHA-256 fingerprint instead of a
            CA (self-signed servers); the caller checks it after the handshake with
            ``check_fingerprint``.
        insecure: skip every verification (explicit opt-in; never the default).

    Raises:
        OSError: ``ca`` cannot be read.
        ssl.SSLError: ``ca`` is not a valid bundle.
        ValueError: ``fingerprint`` is not 64 hex digits.
    """
    context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if fingerprint is not None:
        normalize_fingerprint(fingerprint)  # fail early on a typo
    if insecure or fingerprint is not None:
        # With a pin, the certificate is checked byte for byte after the handshake.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def certificate_fingerprint(der: bytes) -> str:
    """``AB:CD:...``: the SHA-256 of a DER certificate, as OpenSSL prints it."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> bytes:
    """The 32 bytes of a fingerprint written with or without colons, any case,
    optionally prefixed ``sha256:``.

    Raises:
        ValueError: not a SHA-256 fingerprint.
    """
    cleaned = text.strip().lower().removeprefix("sha256:").removeprefix("sha256 fingerprint=")
    cleaned = cleaned.replace(":", "")
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"not a SHA-256 certificate fingerprint: {text!r}")
    return raw


def check_fingerprint(ssl_object: ssl.SSLObject | ssl.SSLSocket | None, expected: str) -> None:
    """Compare the peer certificate with a pinned fingerprint (constant time).

    Raises:
        PermissionDenied: no certificate, or a different one (code ``tls-fingerprint``).
    """
    from socketkit.errors import PermissionDenied  # noqa: PLC0415 (keeps tls importable alone)

    der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
    if not der:
        raise PermissionDenied("the server sent no certificate", code="tls-fingerprint")
    actual = hashlib.sha256(der).digest()
    if not hmac.compare_digest(actual, normalize_fingerprint(expected)):
        raise PermissionDenied(
            f"the server certificate is {certificate_fingerprint(der)}, not the pinned {expected}",
            code="tls-fingerprint",
        )
