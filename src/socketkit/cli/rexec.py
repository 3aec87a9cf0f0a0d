"""``socketkit exec ADDR -- PROGRAM ARGS...``: the exec client (the server: ``serve exec``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from socketkit.cli._args import address_arg, positive_float
from socketkit.cli._errors import error_line
from socketkit.limits import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_STATE_DIR

__all__ = ["add_client_auth_options", "add_parsers", "client_tls", "exec_command"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``exec``."""
    parser = commands.add_parser(
        "exec",
        help="run a command on a `serve exec` server",
        description="Run PROGRAM ARGS on the server; its output is ours, its exit status ours.",
        usage="socketkit exec [options] ADDR -- PROGRAM [ARGS...]",
    )
    parser.add_argument("address", type=address_arg, metavar="ADDR", help="HOST:PORT, [v6]:PORT or unix:PATH")
    parser.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="PROGRAM",
        help="the command and its arguments (options go before ADDR, as for ssh)",
    )
    add_client_auth_options(parser)
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        help="seconds the command may run (sent to the server too)",
    )
    parser.add_argument(
        "--shell", metavar="COMMAND", help="run a shell command line (servers with --allow-shell)"
    )
    parser.add_argument("--cwd", default="", help="working directory, relative to the server's root")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a variable the server accepts (LANG, LC_*, TZ, TERM...)",
    )
    parser.add_argument("-n", "--no-stdin", action="store_true", help="send end of input at once")
    parser.set_defaults(func=exec_command)


def add_client_auth_options(parser: argparse.ArgumentParser) -> None:
    """Token and TLS options shared by the exec and file clients."""
    group = parser.add_argument_group("authentication and TLS")
    group.add_argument(
        "--token-file",
        metavar="FILE",
        help="the server token (default: $SOCKETKIT_TOKEN, then STATE_DIR/token)",
    )
    group.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"state directory of a server on this machine: its token is used (default: {DEFAULT_STATE_DIR})",
    )
    group.add_argument("--tls", action="store_true", help="use TLS, verified against the system CAs")
    group.add_argument("--tls-ca", metavar="FILE", help="use TLS, verified against this CA bundle")
    group.add_argument(
        "--tls-fingerprint",
        metavar="SHA256",
        help="use TLS, accepting only the certificate with this SHA-256 fingerprint",
    )
    group.add_argument(
        "--insecure", action="store_true", help="use TLS without verifying the server (unsafe)"
    )
    group.add_argument(
        "--connect-timeout", type=positive_float, default=DEFAULT_CONNECT_TIMEOUT_S, help=argparse.SUPPRESS
    )


def client_tls(args: argparse.Namespace) -> Any:
    """The client TLS context the options ask for (None: plain TCP)."""
    if not (args.tls or args.tls_ca or args.tls_fingerprint or args.insecure):
        return None
    from socketkit.tls import client_context  # noqa: PLC0415

    return client_context(args.tls_ca, fingerprint=args.tls_fingerprint, insecure=args.insecure)


def exec_command(args: argparse.Namespace) -> int:
    """``exec``: the remote status, 128+N for a signal, 126/127/255 for failures."""
    from socketkit.aio.loop import run  # noqa: PLC0415 (lazy imports keep the CLI quick)
    from socketkit.auth.connect import ServiceTarget  # noqa: PLC0415
    from socketkit.auth.token import load_client_token  # noqa: PLC0415
    from socketkit.services.rexec.client import exit_status_for_error, run_remote  # noqa: PLC0415
    from socketkit.services.rexec.protocol import ExecRequest  # noqa: PLC0415

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if argv and args.shell is not None:
        print("give PROGRAM ARGS or --shell COMMAND, not both", file=sys.stderr)
        return 2
    if not argv and args.shell is None:
        print("usage: socketkit exec ADDR -- PROGRAM [ARGS...]  (or --shell COMMAND)", file=sys.stderr)
        return 2
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"--env needs NAME=VALUE, not {item!r}", file=sys.stderr)
            return 2
        env[name] = value
    try:
        token = load_client_token(args.token_file, args.state_dir)
        target = ServiceTarget(
            args.address,
            token,
            client_tls(args),
            args.tls_fingerprint,
            connect_timeout=args.connect_timeout,
        )
        request = ExecRequest(tuple(argv), env, args.cwd, args.shell, not args.no_stdin, args.timeout)
        return run(
            run_remote(
                target,
                request,
                stdin=None if args.no_stdin else sys.stdin.buffer,
                stdout=sys.stdout.buffer,
                stderr=sys.stderr.buffer,
                timeout=args.timeout,
                forward_sigint=True,
            )
        )
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(error_line(exc), file=sys.stderr)
        return exit_status_for_error(exc)
