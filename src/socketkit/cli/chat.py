"""``socketkit serve chat``, ``socketkit chat ADDR --nick N`` and ``socketkit passwd``."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from socketkit._readfile import MAX_OPTION_FILE_SIZE, read_option_file
from socketkit.cli._args import address_arg, port_arg, positive_number
from socketkit.cli._serving import Service, add_server_options, listeners_from_args, positive_int, run_service
from socketkit.errors import ConfigError

__all__ = ["CHAT_PORT", "add_parsers", "add_serve_parser"]

CHAT_PORT = 6667
CHAT_TLS_PORT = 6697
PASSWORD_ENV = "SOCKETKIT_CHAT_PASSWORD"
CHAT_PING_S = 60.0  # ChatConfig.ping_interval_s; IRC's own liveness check replaces idle timeouts


def add_serve_parser(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve chat``."""
    parser = services.add_parser(
        "chat",
        help="IRC-compatible chat server",
        description="An IRC server (RFC 1459/2812, IRCv3 basics) that irssi, weechat and HexChat can use.",
    )
    add_server_options(
        parser,
        default_port=CHAT_PORT,
        unix=False,
        idle_timeout=CHAT_PING_S,
        idle_help="ping a client silent this many seconds; drop it if no answer in as many more",
    )
    parser.add_argument("--server-name", default=None, help="name in replies (default: the host name)")
    parser.add_argument(
        "--tls-port",
        type=port_arg,
        default=None,
        help=f"also serve TLS on this port (usually {CHAT_TLS_PORT}; needs --tls-cert)",
    )
    parser.add_argument("--password-file", help="file holding the connection password (PASS)")
    parser.add_argument(
        "--oper-file", help="'NAME PASSWORD' per line (hash from `socketkit passwd`, or plain)"
    )
    parser.add_argument("--motd-file", help="message of the day")
    parser.add_argument("--state-dir", default=".socketkit", help="channels and history (SQLite)")
    parser.add_argument(
        "--sendq",
        type=positive_int,
        default=1 << 20,
        help="bytes queued for a client that does not read before it is dropped (default: 1 MiB)",
    )
    parser.add_argument(
        "--flood-burst", type=positive_int, default=20, help="lines a client may send at once"
    )
    parser.add_argument(
        "--flood-rate", type=positive_number, default=5.0, help="then lines per second (default: 5)"
    )
    parser.add_argument("--no-flood-limit", action="store_true", help="no flood control (benchmarks, bots)")
    parser.set_defaults(func=serve_chat)


MAX_NICK_ARG = 64
"""Characters of ``--nick``: servers allow 9 (RFC 1459) to 30 or more (NICKLEN), and say
so with 432 if it is too long for them; longer than this is a typing mistake."""


def _nick_arg(text: str) -> str:
    """argparse type: an RFC 2812 nickname."""
    from socketkit.services.chat.names import valid_nick  # noqa: PLC0415

    if not valid_nick(text, MAX_NICK_ARG):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a nickname (a letter or one of []\\`_^{{|}} first, then also digits and -, "
            f"at most {MAX_NICK_ARG})"
        )
    return text


def _channel_arg(text: str) -> str:
    """argparse type: a channel name (``#`` is added if missing)."""
    from socketkit.services.chat.names import valid_channel  # noqa: PLC0415

    name = text if text.startswith("#") else "#" + text
    if not valid_channel(name, MAX_NICK_ARG * 4):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a channel name (no spaces, commas, colons or control characters)"
        )
    return name


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``chat`` and ``passwd``."""
    chat = commands.add_parser(
        "chat",
        help="terminal chat client",
        description="Join an IRC server: /join, /part, /msg, /nick, /names, /topic, /quit.",
    )
    chat.add_argument("address", type=address_arg, metavar="ADDR", help="HOST:PORT (6667 plain, 6697 TLS)")
    chat.add_argument("--nick", required=True, type=_nick_arg, help="your nickname")
    chat.add_argument(
        "--join", action="append", default=[], type=_channel_arg, metavar="#CHANNEL", help="channels to join"
    )
    chat.add_argument("--tls", action="store_true", help="use TLS")
    chat.add_argument("--tls-ca", metavar="FILE", help="trust this CA for TLS")
    chat.add_argument("--insecure", action="store_true", help="TLS without verification")
    chat.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"file holding the connection password (PASS); default: ${PASSWORD_ENV} if set",
    )
    chat.add_argument("--plain", action="store_true", help="line mode instead of the full-screen interface")
    chat.set_defaults(func=run_chat_client)

    passwd = commands.add_parser(
        "passwd",
        help="hash an operator password for --oper-file",
        description="Print the hash of a password (read from the terminal or stdin).",
    )
    passwd.set_defaults(func=make_password_hash)


MAX_PASSWORD_FILE_SIZE = 4096
"""Bytes of a password file: a password is a line; anything larger is not one."""


def _read(
    path: str | None, what: str, limit: int = MAX_OPTION_FILE_SIZE, *, secret: bool = False
) -> str | None:
    """The text of a file an option names, through the one capped reader (regular files
    and pipes only, never a blocking open, at most ``limit`` bytes; ``secret``: a
    regular file others can read is refused, as for the token).

    Raises:
        ConfigError: unreadable, not a regular file or a pipe, too large, readable by
            others (``secret``), or not UTF-8.
    """
    if path is None:
        return None
    data = read_option_file(path, what, limit=limit, secret=secret)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def serve_chat(args: argparse.Namespace) -> int:
    """``serve chat``."""
    return run_service(chat_service(args), args)


def chat_service(args: argparse.Namespace) -> Service:
    """The chat server the options describe, with its SQLite store."""
    from dataclasses import replace  # noqa: PLC0415 (lazy imports: fast CLI)

    from socketkit.address import Address  # noqa: PLC0415
    from socketkit.aio.listeners import Listener  # noqa: PLC0415
    from socketkit.services.chat.server import ChatServer  # noqa: PLC0415
    from socketkit.services.chat.state import MAX_MOTD_FILE_SIZE, ChatConfig, motd_lines  # noqa: PLC0415
    from socketkit.services.chat.store import ChatStore  # noqa: PLC0415
    from socketkit.state import StateDB  # noqa: PLC0415

    if args.workers != 1:
        raise ValueError("one chat server is one process: --workers does not apply")
    opers = {}
    for number, line in enumerate(
        (_read(args.oper_file, "the operator file", secret=True) or "").splitlines(), 1
    ):
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, stored = line.strip().partition(" ")
            if not stored.strip():
                raise ValueError(f"{args.oper_file}:{number}: expected 'NAME PASSWORD'")
            opers[name] = stored.strip()
    password = _read(args.password_file, "the password file", MAX_PASSWORD_FILE_SIZE, secret=True)
    motd = _read(args.motd_file, "the MOTD file", MAX_MOTD_FILE_SIZE)
    burst, rate = (10**9, 10.0**9) if args.no_flood_limit else (args.flood_burst, args.flood_rate)
    config = ChatConfig(
        server_name=args.server_name or socket.gethostname() or "socketkit.local",
        password=password.strip() if password else None,
        opers=opers,
        flood_burst=burst,
        flood_rate=rate,
        ping_interval_s=args.idle_timeout,
        ping_timeout_s=args.idle_timeout,
    )
    if motd is not None:
        config.motd = motd_lines(motd)
    listeners = listeners_from_args(args)
    if args.tls_port is not None:
        if not args.tls_cert:
            raise ValueError("--tls-port needs --tls-cert (and --tls-key)")
        # --port stays plain text; TLS is served on --tls-port, as IRC networks do.
        tls_context = listeners[0].ssl
        listeners = [replace(listener, ssl=None) for listener in listeners]
        listeners.append(Listener(Address(args.host, args.tls_port), "tcp", tls_context))
    db = StateDB(args.state_dir)
    store = ChatStore(db)
    chat = ChatServer(config, store)

    def make() -> Any:
        return chat.make_server(
            sendq=args.sendq,
            max_connections=args.max_connections,
            max_connections_per_address=args.max_per_address,
            shutdown_grace=args.shutdown_grace,
        )

    return Service(
        "chat",
        make,
        listeners,
        on_started=chat.start_ticker,
        cleanups=[db.close, store.close, chat.close],
        gauges=lambda: {"clients": len(chat.state.clients), "channels": len(chat.state.channels)},
    )


def make_password_hash(args: argparse.Namespace) -> int:
    """``passwd``: print ``pbkdf2-sha256$...`` for the password typed (or piped)."""
    from socketkit.services.chat.session import hash_password  # noqa: PLC0415

    if sys.stdin.isatty():
        import getpass  # noqa: PLC0415

        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 1
    print(hash_password(password, os.urandom(16)))
    return 0


def run_chat_client(args: argparse.Namespace) -> int:
    """``chat``: the terminal client. The password comes from a file or the environment,
    never from the command line (where every user of the machine could read it)."""
    from socketkit.services.chat.client import run_client  # noqa: PLC0415

    password = (
        _read(args.password_file, "the password file", MAX_PASSWORD_FILE_SIZE, secret=True)
        if args.password_file
        else os.environ.get(PASSWORD_ENV)
    )
    args.password = password.strip() if password else None
    return run_client(args)
