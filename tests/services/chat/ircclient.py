"""A blocking line-level IRC client for loopback tests: send raw lines, wait for replies.

Waiting is always for a reply (``expect``) or for the connection to end, with the
suite's deadline; ``sync`` round-trips a PING so that everything sent before it has
been handled.
"""

from __future__ import annotations

import itertools
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

from socketkit.codec.irc import IRCDecoder, IRCMessage
from tests.helpers import TIMEOUT

_tokens = itertools.count(1)


class Irc:
    def __init__(
        self,
        address: Any,
        nick: str | None = None,
        *,
        caps: str = "",
        tls: ssl.SSLContext | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(TIMEOUT)
        try:
            raw.connect((address.host, address.port))
            self.sock: socket.socket = tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
        except BaseException:
            raw.close()
            raise
        self.decoder = IRCDecoder(max_body=1 << 16)
        self.queue: deque[IRCMessage] = deque()
        self.seen: list[IRCMessage] = []
        self.nick = nick
        if nick is not None:
            self.register(nick, caps)

    def __enter__(self) -> Irc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, *lines: str | bytes) -> None:
        data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\r\n" for ln in lines)
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.decoder.feed(data)
        while True:
            event = self.decoder.next_event()
            if not isinstance(event, IRCMessage):
                break
            self.queue.append(event)
        return bool(data)

    def next(self) -> IRCMessage:
        while not self.queue:
            if not self._fill():
                raise EOFError("the server closed the connection")
        message = self.queue.popleft()
        self.seen.append(message)
        return message

    def expect(self, command: str, where: Callable[[IRCMessage], bool] = lambda m: True) -> IRCMessage:
        """The next message with this command (others are skipped, kept in ``seen``)."""
        skipped = []
        while True:
            try:
                message = self.next()
            except EOFError:
                raise AssertionError(f"closed before {command}; got {[str(m) for m in skipped]}") from None
            if message.command == command and where(message):
                return message
            skipped.append(message)

    def collect(self, until: str) -> list[IRCMessage]:
        """Every message up to and including the first ``until``."""
        got = []
        while True:
            message = self.next()
            got.append(message)
            if message.command == until:
                return got

    def sync(self) -> list[IRCMessage]:
        """Round-trip a PING; return what arrived before the PONG."""
        token = f"sync{next(_tokens)}"
        self.send(f"PING {token}")
        got = []
        while True:
            message = self.next()
            if message.command == "PONG" and message.params[-1] == token:
                return got
            got.append(message)

    def register(self, nick: str, caps: str = "") -> None:
        if caps:
            self.send("CAP LS 302", f"CAP REQ :{caps}")
        self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick} Test")
        if caps:
            self.send("CAP END")
        self.expect("001")
        self.expect("376")  # the end of the welcome burst

    def closed_reason(self) -> str:
        """Read until the server closes; return its ERROR text (or "" without one)."""
        reason = ""
        while True:
            try:
                message = self.next()
            except (EOFError, ConnectionResetError):
                return reason
            if message.command == "ERROR":
                reason = message.params[-1]
