"""``socketkit serve SERVICE``: run a service in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
from typing import Any

from socketkit.cli._args import positive_int, positive_number
from socketkit.cli._serving import Service, add_server_options, listeners_from_args, run_service

__all__ = ["add_parsers"]

ECHO_PORT = 7007  # socketkit.services.echo.protocol.DEFAULT_PORT, without importing it


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` and its services."""
    serve = commands.add_parser("serve", help="run a service", description="Run a service.")
    services = serve.add_subparsers(title="services", metavar="SERVICE", required=True)

    echo = services.add_parser(
        "echo",
        help="echo server (TCP, UDP, Unix)",
        description="Echo every byte (TCP, Unix) or datagram (UDP) back to its sender (RFC 862).",
    )
    add_server_options(echo, default_port=ECHO_PORT, udp=True)
    from socketkit.services.echo.policy import UDP_REPLY_BURST, UDP_REPLY_RATE  # noqa: PLC0415 (pure, small)

    udp = echo.add_argument_group("UDP against forged sources (no answer to ports below 1024 or our own)")
    udp.add_argument(
        "--udp-rate",
        type=positive_number,
        metavar="N",
        default=UDP_REPLY_RATE,
        help=f"replies per second to one source address (default: {UDP_REPLY_RATE:g})",
    )
    udp.add_argument(
        "--udp-burst",
        type=positive_int,
        metavar="N",
        default=UDP_REPLY_BURST,
        help=f"replies one source address may get at once (default: {UDP_REPLY_BURST})",
    )
    echo.set_defaults(func=serve_echo)

    talk = services.add_parser(
        "talk",
        help="operator console talking with many clients",
        description=(
            "Talk with many clients at once from this console. Lines from clients are shown "
            "with their id; type '@ID text' to answer one, plain text to tell all, "
            "'/list', '/kick ID', '/quit'."
        ),
    )
    from socketkit.cli.talk import TALK_PORT, serve_talk  # noqa: PLC0415 (argparse only)

    add_server_options(talk, default_port=TALK_PORT)
    talk.set_defaults(func=serve_talk)

    from socketkit.cli.chat import add_serve_parser as add_chat  # noqa: PLC0415
    from socketkit.cli.files import add_serve_parser as add_files  # noqa: PLC0415 (argparse only)
    from socketkit.cli.rexec import add_serve_parser as add_exec  # noqa: PLC0415
    from socketkit.cli.serve_all import add_serve_parser as add_all  # noqa: PLC0415

    add_exec(services)
    add_files(services)
    add_chat(services)
    add_all(services)


def serve_echo(args: argparse.Namespace) -> int:
    """``serve echo``."""
    return run_service(echo_service(args), args)


def echo_service(args: argparse.Namespace) -> Service:
    """The echo server: the asyncio engine, with the caps and timeouts from the options."""
    from socketkit.aio.connection import ConnectionLimits  # noqa: PLC0415 (lazy imports: fast CLI)
    from socketkit.services.echo.policy import EchoPolicy  # noqa: PLC0415
    from socketkit.services.echo.server import make_echo_server  # noqa: PLC0415

    def make() -> Any:
        return make_echo_server(
            policy=EchoPolicy(rate=args.udp_rate, burst=args.udp_burst),
            limits=ConnectionLimits(
                idle_timeout=args.idle_timeout, handshake_timeout=None, message_timeout=None
            ),
            max_connections=args.max_connections,
            max_connections_per_address=args.max_per_address,
            shutdown_grace=args.shutdown_grace,
        )

    return Service("echo", make, listeners_from_args(args))
