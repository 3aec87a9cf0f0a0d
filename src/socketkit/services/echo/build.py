"""``build(options) -> Service``: the echo service its options describe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from socketkit.service import Service, engine_caps, listeners_for, tls_context_for
from socketkit.services.echo.options import EchoOptions

__all__ = ["build"]


def build(options: EchoOptions) -> Service:
    """The echo server (asyncio engine) with the options' caps, timeout and UDP policy."""
    from socketkit.services.echo.policy import EchoPolicy  # noqa: PLC0415 (lazy: fast CLI)
    from socketkit.services.echo.server import make_echo_server  # noqa: PLC0415

    policy = EchoPolicy(rate=options.udp_rate, burst=options.udp_burst)

    def make() -> Any:
        return make_echo_server(
            policy=policy,
            idle_timeout=options.idle_timeout,
            **engine_caps(options),
        )

    def reconfigure(new: EchoOptions) -> Callable[[], None]:
        def commit() -> None:
            # The buckets already filled keep their contents; the new rate applies from now.
            policy.rate, policy.burst = float(new.udp_rate), new.udp_burst

        return commit

    return Service(
        "echo", make, listeners_for(options, tls_context_for(options)), options, reconfigure=reconfigure
    )
