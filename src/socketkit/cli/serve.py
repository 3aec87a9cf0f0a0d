"""``socketkit serve SERVICE``: run a service in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Any

from socketkit.address import format_host_port
from socketkit.cli._args import port_arg

__all__ = ["add_parsers"]

DEFAULT_ECHO_PORT = 7007  # the echo protocol is port 7 (RFC 862); 7007 needs no root


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` and its services."""
    serve = commands.add_parser("serve", help="run a service", description="Run a service.")
    services = serve.add_subparsers(title="services", metavar="SERVICE", required=True)
    echo = services.add_parser(
        "echo", help="echo server (TCP)", description="Echo every byte back."
    )
    echo.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    echo.add_argument(
        "--port",
        type=port_arg,
        default=DEFAULT_ECHO_PORT,
        help=f"port (default: {DEFAULT_ECHO_PORT}; 0 picks a free one)",
    )
    echo.set_defaults(func=serve_echo)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve_echo(args: argparse.Namespace) -> int:
    """Serve echo on the blocking engine until interrupted; returns 0 after a clean stop."""
    import socketkit.server as ss  # noqa: PLC0415 (lazy: keeps `socketkit --help` fast)

    class Echo(ss.BaseRequestHandler):
        timeout = 300.0

        def handle(self) -> None:
            self.request.settimeout(self.timeout)
            while data := self.request.recv(65536):
                self.request.sendall(data)

    server: Any = ss.ThreadingTCPServer((args.host, args.port), Echo)
    host, port = server.server_address[:2]
    print(f"socketkit echo listening on {format_host_port(host, port)} (tcp)", flush=True)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr, flush=True)
    finally:
        server.server_close()
    return 0
