"""TLS contexts for servers and clients, with safe defaults (TLS 1.2+, verification on).

``--insecure`` is the only way to skip verification, and it is explicit at every call.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from pathlib import Path

from socketkit.errors import ConfigError

__all__ = [
    "certificate_fingerprint",
    "check_fingerprint",
    "client_context",
    "normalize_fingerprint",
    "PEM_DIAGNOSIS_BYTES",
    "server_context",
]


PEM_DIAGNOSIS_BYTES = 1 << 20
"""How much of a certificate or key file is read to say why OpenSSL refused it ("PEM
lib" names neither the file nor the problem). A chain of a few certificates is a few
KiB; a megabyte is plenty, and bounds what a wrong path (a disk image) costs to read."""


def server_context(cert: str | Path, key: str | Path | None = None) -> ssl.SSLContext:
    """A server-side context loading a certificate chain and its key.

    Raises:
        ConfigError: the certificate or the key cannot be loaded; the message names the
            file and the reason (missing, unreadable, not PEM, encrypted, not matching).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    key_file = cert if key is None else key

    def no_passphrase() -> str:
        # Without a callback, OpenSSL would prompt on the terminal, and a server started
        # by a service manager would wait there for ever.
        raise ConfigError(
            f"cannot load the TLS key {key_file}: it is encrypted with a passphrase; "
            "give the key without one (openssl pkey -in KEY -out PLAIN)"
        )

    try:
        context.load_cert_chain(str(cert), None if key is None else str(key), password=no_passphrase)
    except OSError as exc:  # ssl.SSLError included
        raise _load_error(exc, cert, key) from exc
    return context


def _load_error(exc: OSError, cert: str | Path, key: str | Path | None) -> ConfigError:
    """Why ``load_cert_chain(cert, key)`` failed, naming the file at fault."""
    key_file = cert if key is None else key
    if not isinstance(exc, ssl.SSLError):  # the file itself: missing, unreadable, a directory
        for what, path in (("certificate", cert), ("key", key_file)):
            why = _unreadable(path)
            if why:
                return ConfigError(f"cannot load the TLS {what} {path}: {why}")
        return ConfigError(f"cannot load the TLS certificate {cert}: {exc.strerror or exc}")
    if exc.reason == "KEY_VALUES_MISMATCH":
        return ConfigError(f"cannot load the TLS key {key_file}: it does not match the certificate in {cert}")
    if b"-----BEGIN CERTIFICATE-----" not in _head(cert):
        return ConfigError(f"cannot load the TLS certificate {cert}: it holds no PEM certificate")
    if b"PRIVATE KEY-----" not in _head(key_file):
        more = " (give the key file too)" if key is None else ""
        return ConfigError(f"cannot load the TLS key {key_file}: it holds no PEM private key{more}")
    reason = (exc.reason or str(exc)).lower().replace("_", " ")
    return ConfigError(f"cannot load the TLS certificate {cert} with the key {key_file}: {reason}")


def _unreadable(path: str | Path) -> str:
    """Why ``path`` cannot be read as a file, or ``""``."""
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as exc:
        text = exc.strerror or str(exc)
        return text[:1].lower() + text[1:]
    return ""


def _head(path: str | Path) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(PEM_DIAGNOSIS_BYTES)
    except OSError:
        return b""


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
        ConfigError: ``ca`` cannot be read or holds no certificate (the message names it).
        ValueError: ``fingerprint`` is not 64 hex digits.
    """
    try:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    except OSError as exc:  # ssl.SSLError included
        why = _unreadable(ca) if ca is not None and not isinstance(exc, ssl.SSLError) else ""
        if isinstance(exc, ssl.SSLError):
            why = "it holds no PEM certificate" if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND" else str(exc)
        raise ConfigError(f"cannot load the TLS CA bundle {ca}: {why or exc.strerror or exc}") from exc
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
