"""TLS contexts for servers and clients, with safe defaults (TLS 1.2+, verification on).

``--insecure`` is the only way to skip verification, and it is explicit at every call.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["client_context", "server_context"]


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


def client_context(ca: str | Path | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """A client-side context verifying the server (against ``ca``, or the system store).

    Args:
        ca: a CA bundle (PEM) to trust instead of the system's.
        insecure: skip certificate and host name verification (explicit opt-in).

    Raises:
        OSError: ``ca`` cannot be read.
        ssl.SSLError: ``ca`` is not a valid bundle.
    """
    context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
