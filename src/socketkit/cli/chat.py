"""``socketkit chat ADDR --nick N`` (the terminal client) and ``socketkit passwd``."""

from __future__ import annotations

import argparse
import os
import sys

from socketkit._readfile import read_option_text
from socketkit.cli._args import address_arg
from socketkit.services.chat.options import MAX_PASSWORD_FILE_SIZE

__all__ = ["add_parsers"]

PASSWORD_ENV = "SOCKETKIT_CHAT_PASSWORD"


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
        read_option_text(args.password_file, "the password file", MAX_PASSWORD_FILE_SIZE, secret=True)
        if args.password_file
        else os.environ.get(PASSWORD_ENV)
    )
    args.password = password.strip() if password else None
    return run_client(args)
