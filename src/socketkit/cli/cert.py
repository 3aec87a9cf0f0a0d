"""``socketkit cert``: make a self-signed certificate and key, print the fingerprint."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from socketkit.cli._args import positive_int

__all__ = ["add_parsers", "make_cert"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cert``."""
    parser = commands.add_parser(
        "cert",
        help="make a self-signed TLS certificate",
        description="Write NAME.crt and NAME.key (mode 0600) and print the certificate's SHA-256 "
        "fingerprint, which clients pin with --tls-fingerprint.",
    )
    parser.add_argument("--name", default="socketkit", help="file name stem (default: socketkit)")
    parser.add_argument("--out-dir", default=".socketkit", help="where to write (default: .socketkit)")
    parser.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="HOST",
        help="a host name or address the certificate is for; repeat (default: localhost, 127.0.0.1, ::1)",
    )
    parser.add_argument("--days", type=positive_int, default=825, help="validity in days (default: 825)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.set_defaults(func=make_cert)


def make_cert(args: argparse.Namespace) -> int:
    """Write the pair; refuses to overwrite without --force."""
    from socketkit.certs import make_self_signed  # noqa: PLC0415 (cryptography is heavy)

    hosts = args.host or ["localhost", "127.0.0.1", "::1"]
    from socketkit._private import private_dir  # noqa: PLC0415

    # A directory of the user's own choosing keeps its mode (the key file is 0600).
    out = Path(args.out_dir) if Path(args.out_dir).is_dir() else private_dir(args.out_dir)
    cert_path, key_path = out / f"{args.name}.crt", out / f"{args.name}.key"
    if not args.force:
        for path in (cert_path, key_path):
            if path.exists():
                raise FileExistsError(f"{path} exists (use --force to replace it)")
    pair = make_self_signed(hosts[0], hosts, args.days)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # a replaced (--force) key file keeps no looser mode it had
    with os.fdopen(fd, "wb") as f:
        f.write(pair.key_pem)
    cert_path.write_bytes(pair.cert_pem)
    print(
        f"certificate: {cert_path}\nkey:         {key_path} (mode 0600)\n"
        f"hosts:       {', '.join(hosts)}\nfingerprint: {pair.fingerprint}"
    )
    print(
        f"\nserver: --tls-cert {cert_path} --tls-key {key_path}\n"
        f"client: --tls-fingerprint {pair.fingerprint.replace(':', '')}"
    )
    return 0
