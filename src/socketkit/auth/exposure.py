"""The exposure rule (pure): which listeners a service may open, with which safeguards.

One rule for every entry point (the command line, ``serve all`` and programs that use
the servers as a library, which call it from ``AsyncServer.start`` through the
service's listener check):

- a listener on a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``) or a Unix
  socket reaches only this machine: anything goes;
- any other address (``0.0.0.0``, ``::``, ``""``, a LAN address, a host name) is
  exposed: a service that needs authentication refuses to listen there without a
  token, and one that needs TLS (exec: it runs commands) also without TLS.
"""

from __future__ import annotations

import ipaddress

from socketkit.address import Address
from socketkit.errors import PermissionDenied

__all__ = ["check_exposure", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only (a loopback address or ``localhost``).

    The empty host and wildcards mean every address, so they are not loopback; a host
    name other than ``localhost`` may resolve anywhere, so it is not either.
    """
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_exposure(
    service: str,
    address: Address,
    *,
    has_token: bool,
    has_tls: bool,
    needs_token: bool = True,
    needs_tls: bool = False,
) -> None:
    """Refuse to listen on ``address`` without the safeguards the service needs there.

    Raises:
        PermissionDenied: (code ``exposed``) the address is not loopback, and the token
            or TLS is missing.
    """
    if address.path is not None or is_loopback(address.host):
        return
    where = address.host or "every address"
    if needs_token and not has_token:
        raise PermissionDenied(
            f"{service} refuses to listen on {where} without a token: authentication is required "
            "off loopback (drop --no-auth)",
            code="exposed",
        )
    if needs_tls and not has_tls:
        raise PermissionDenied(
            f"{service} refuses to listen on {where} without TLS: pass --tls-cert and --tls-key "
            "(`socketkit cert` makes a pair)",
            code="exposed",
        )
