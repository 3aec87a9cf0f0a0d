"""``socketkit serve exec`` and ``socketkit exec ADDR -- PROGRAM ARGS...``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from socketkit.cli._args import address_arg, size_arg
from socketkit.cli._errors import error_line
from socketkit.cli._serving import (
    Service,
    add_server_options,
    listeners_from_args,
    positive_float,
    positive_int,
    run_service,
)

__all__ = ["EXEC_PORT", "add_parsers", "add_serve_parser", "exec_command", "serve_exec"]

EXEC_PORT = 7022
DEFAULT_RUN_AS = "nobody"  # SandboxSettings.run_as, without importing the sandbox here
DEFAULT_STATE_DIR = ".socketkit"


def add_serve_parser(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve exec``."""
    parser = services.add_parser(
        "exec",
        help="authenticated remote command execution",
        description=(
            "Run commands for authenticated clients, like sshd runs `ssh host cmd`: argv "
            "lists without a shell, an allow-list of programs, each command confined by a "
            "sandbox (bubblewrap, else Landlock) to the root, the system directories and no "
            "network, timeouts and output caps that kill the whole process group, an audit log."
        ),
    )
    # No idle timeout: a command may run silently for long; --timeout bounds it.
    add_server_options(parser, default_port=EXEC_PORT, unix=True, idle_timeout=None)
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"token, audit log (default: {DEFAULT_STATE_DIR})",
    )
    rules = parser.add_argument_group("what may run")
    rules.add_argument(
        "--allow",
        action="append",
        metavar="PROGRAM",
        default=None,
        help="allow this program (name or absolute path); repeat; replaces the default list",
    )
    rules.add_argument("--allow-any", action="store_true", help="allow every program (as sshd does)")
    rules.add_argument("--allow-shell", action="store_true", help="accept shell command lines (/bin/sh -c)")
    rules.add_argument(
        "--env-allow",
        action="append",
        metavar="NAME",
        default=[],
        help="also accept this client environment variable (NAME or PREFIX*)",
    )
    rules.add_argument("--root", default=".", help="commands run under this directory (default: .)")
    rules.add_argument(
        "--timeout",
        type=positive_float,
        default=3600.0,
        help="seconds a command may run (default: 3600)",
    )
    rules.add_argument(
        "--max-output",
        type=positive_int,
        default=None,
        metavar="BYTES",
        help="stdout+stderr bytes per command before it is stopped (default: 1 TiB)",
    )
    rules.add_argument(
        "--max-procs",
        type=positive_int,
        default=32,
        help="commands running at once, all --workers together; more get 'busy' (default: 32)",
    )
    _add_limit_options(parser)
    sandbox = parser.add_argument_group("sandbox (docs/security.md)")
    sandbox.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "landlock"),
        default="auto",
        help="how commands are confined (default: auto, bwrap if it works here, else Landlock)",
    )
    sandbox.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run commands unconfined (only the allow-list and --run-as apply): at your own risk",
    )
    sandbox.add_argument(
        "--allow-network", action="store_true", help="give commands the network (default: none)"
    )
    sandbox.add_argument(
        "--run-as",
        metavar="USER",
        default=DEFAULT_RUN_AS,
        help=f"the user commands run as when the server runs as root (default: {DEFAULT_RUN_AS}); "
        "it needs write permission on --root",
    )
    rules.add_argument(
        "--no-auth",
        action="store_true",
        help="no token (refused unless listening on loopback only)",
    )
    parser.set_defaults(func=serve_exec)


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    from socketkit.services.rexec import policy  # noqa: PLC0415 (pure and small: the defaults)

    def size(value: int) -> str:
        return f"{value >> 30}G" if value % (1 << 30) == 0 else f"{value >> 20}M"

    group = parser.add_argument_group(
        "limits of each command (docs/security.md: what they bound under each sandbox)"
    )
    group.add_argument(
        "--max-memory",
        type=size_arg,
        default=policy.DEFAULT_MAX_MEMORY,
        metavar="SIZE",
        help=f"address space of each process (default: {size(policy.DEFAULT_MAX_MEMORY)})",
    )
    group.add_argument(
        "--max-tasks",
        type=positive_int,
        default=policy.DEFAULT_MAX_TASKS,
        metavar="N",
        help="processes and threads; as root shared by all commands, which run as --run-as "
        f"(default: {policy.DEFAULT_MAX_TASKS})",
    )
    group.add_argument(
        "--max-file-size",
        type=size_arg,
        default=policy.DEFAULT_MAX_FILE_SIZE,
        metavar="SIZE",
        help=f"largest file a process may write (default: {size(policy.DEFAULT_MAX_FILE_SIZE)})",
    )
    group.add_argument(
        "--max-cpu-time",
        type=positive_int,
        default=policy.DEFAULT_MAX_CPU_S,
        metavar="SECONDS",
        help=f"CPU seconds of each process (default: {policy.DEFAULT_MAX_CPU_S})",
    )
    group.add_argument(
        "--max-open-files",
        type=positive_int,
        default=policy.DEFAULT_MAX_OPEN_FILES,
        metavar="N",
        help=f"open files of each process (default: {policy.DEFAULT_MAX_OPEN_FILES})",
    )
    group.add_argument(
        "--tmp-size",
        type=size_arg,
        default=policy.SANDBOX_TMP_BYTES,
        metavar="SIZE",
        help="each command's private /tmp (bwrap; Landlock as root), in memory: --max-procs times "
        "this at most "
        f"(default: {size(policy.SANDBOX_TMP_BYTES)})",
    )


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
    group.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=argparse.SUPPRESS)
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
    group.add_argument("--connect-timeout", type=positive_float, default=10.0, help=argparse.SUPPRESS)


def check_exposure(service: str, args: argparse.Namespace, *, needs_tls: bool) -> None:
    """The library's exposure rule applied to the options, before anything is built (the
    servers apply it again to every listener they bind).

    Raises:
        PermissionDenied: a listener is not loopback and the safety is missing.
    """
    from socketkit.auth.exposure import check_exposure as check  # noqa: PLC0415

    for listener in listeners_from_args(args):
        check(
            service,
            listener.address,
            has_token=not args.no_auth,
            has_tls=listener.ssl is not None,
            needs_tls=needs_tls,
        )


def load_server_token(service: str, args: argparse.Namespace) -> str | None:
    """The server token (created and announced on first start), or None with --no-auth.

    The value itself is printed only to a terminal: a server's standard output is often
    a log (journald, ``make serve > log``), where the token would stay readable by
    whoever reads the logs; there the line says where the file is instead.
    """
    if args.no_auth:
        return None
    from socketkit.auth.token import TOKEN_ENV, load_or_create_token  # noqa: PLC0415

    token = load_or_create_token(args.state_dir)
    if token.created:
        where = f"{service}: created a token in {token.path} (mode 0600); clients on this machine find it"
        where += " there"
        if _is_terminal(sys.stdout):
            print(
                f"{where}; elsewhere give it to them once:\n  {TOKEN_ENV}={token.value}  "
                f"(or copy the file and pass --token-file)",
                flush=True,
            )
        else:
            print(
                f"{where}; to give it to a client elsewhere, read it from that file as its owner "
                f"(cat {token.path}) and pass it as {TOKEN_ENV} or copy the file for --token-file "
                "(the value is shown only on a terminal, never in a log)",
                flush=True,
            )
    return token.value


def _is_terminal(stream: Any) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def serve_exec(args: argparse.Namespace) -> int:
    """``serve exec``."""
    return run_service(exec_service(args), args)


def exec_service(args: argparse.Namespace) -> Service:
    """The exec server the options describe (refused if exposed without safety)."""
    from socketkit.services.rexec.policy import (  # noqa: PLC0415
        DEFAULT_ALLOWED,
        DEFAULT_ENV_ALLOW,
        CommandLimits,
        ExecPolicy,
    )
    from socketkit.services.rexec.sandbox import SandboxSettings  # noqa: PLC0415
    from socketkit.services.rexec.server import (  # noqa: PLC0415
        DEFAULT_MAX_OUTPUT,
        ExecServer,
        ExecSettings,
        prepare_sandbox,
    )
    from socketkit.state import StateDB  # noqa: PLC0415

    check_exposure("exec", args, needs_tls=True)
    root = os.path.realpath(args.root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--root {args.root} is not a directory")
    policy = ExecPolicy(
        allow=frozenset(args.allow) if args.allow is not None else DEFAULT_ALLOWED,
        allow_any=args.allow_any,
        allow_shell=args.allow_shell,
        env_allow=DEFAULT_ENV_ALLOW | frozenset(args.env_allow),
        timeout=args.timeout,
        home=root,
    )
    # Never visible to commands: the token and audit log, and the TLS key and certificate.
    hidden = [p for p in (args.state_dir, args.tls_key, args.tls_cert) if p]
    limits = CommandLimits(
        memory=args.max_memory,
        tasks=args.max_tasks,
        file_size=args.max_file_size,
        cpu_s=args.max_cpu_time,
        open_files=args.max_open_files,
    )
    sandbox = SandboxSettings(
        backend="none" if args.no_sandbox else args.sandbox,
        allow_network=args.allow_network,
        run_as=args.run_as,
        hidden=tuple(hidden),
        tmp_size=args.tmp_size,
        limits=limits,
    )
    settings = ExecSettings(
        root=root,
        policy=policy,
        token=None,
        max_output=args.max_output or DEFAULT_MAX_OUTPUT,
        max_procs=args.max_procs,
        sandbox=sandbox,
        workers=args.workers,
    )
    # Everything that can refuse the start (root, sandbox, allow-list: one line) comes
    # before anything is created: no state directory, no token for a server that never ran.
    chosen = prepare_sandbox(settings)
    settings.token = load_server_token("exec", args)
    settings.db = db = StateDB(args.state_dir)
    try:
        service = ExecServer(settings, chosen)
    except BaseException:
        db.close()
        raise

    def make() -> Any:
        return service.make_server(
            max_connections=args.max_connections,
            max_connections_per_address=args.max_per_address,
            shutdown_grace=args.shutdown_grace,
        )

    return Service(
        "exec",
        make,
        listeners_from_args(args),
        cleanups=[db.close, service.close],
        gauges=lambda: {"running": service.running},
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
