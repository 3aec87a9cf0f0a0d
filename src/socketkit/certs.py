"""Self-signed certificates for ``socketkit cert`` (the ``cryptography`` package).

An ECDSA P-256 key (small and fast) and a certificate valid for the given host names
and addresses (subjectAltName), so clients can verify it by CA file or pin it by its
SHA-256 fingerprint.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from socketkit.tls import certificate_fingerprint

__all__ = ["SelfSigned", "make_self_signed"]


@dataclass(frozen=True, slots=True)
class SelfSigned:
    """A certificate and its key, in PEM, with the certificate's fingerprint."""

    cert_pem: bytes
    key_pem: bytes
    fingerprint: str


def make_self_signed(common_name: str, hosts: Sequence[str], days: int = 825) -> SelfSigned:
    """Create a key and a self-signed certificate for ``hosts``.

    Args:
        common_name: the subject's CN.
        hosts: DNS names and IP addresses the certificate is valid for.
        days: validity (825 days: the longest clients such as Apple's accept).

    Raises:
        ImportError: the ``cryptography`` package is missing.
        ValueError: ``days`` is not positive.
    """
    from cryptography import x509  # noqa: PLC0415 (heavy; only this command needs it)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    if days < 1:
        raise ValueError("days must be at least 1")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return SelfSigned(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_fingerprint(der),
    )
