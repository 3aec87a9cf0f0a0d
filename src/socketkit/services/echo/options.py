"""``serve echo``'s options, declared once (flags, configuration file, environment)."""

from __future__ import annotations

from dataclasses import dataclass

from socketkit.options import (
    COUNT,
    RATE,
    IdleOption,
    ListenOptions,
    UdpOption,
    UnixOption,
    WorkersOption,
    option,
    port_option,
)
from socketkit.services.echo.policy import UDP_REPLY_BURST, UDP_REPLY_RATE
from socketkit.services.echo.protocol import DEFAULT_PORT

__all__ = ["EchoOptions"]

_UDP = "UDP against forged sources (no answer to ports below 1024 or our own)"


@dataclass(frozen=True)
class EchoOptions(ListenOptions, UdpOption, UnixOption, WorkersOption, IdleOption):
    """Echo every byte (TCP, Unix) or datagram (UDP) back to its sender (RFC 862)."""

    port: int = port_option(DEFAULT_PORT)
    udp_rate: float = option(
        UDP_REPLY_RATE, "replies per second to one source address", RATE, live=True, group=_UDP
    )
    udp_burst: int = option(
        UDP_REPLY_BURST, "replies one source address may get at once", COUNT, live=True, group=_UDP
    )
