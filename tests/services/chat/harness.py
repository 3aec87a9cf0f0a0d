"""A chat "network" without sockets: the pure command layer driven with a fake clock,
effects applied as the server glue applies them (so tests read what each client got;
listings too long for one page are run to their end at once).

Password checks run at once (``verify_password``), or, with ``defer_checks``, wait in
``pending`` until the test finishes them with ``finish_check``: what the glue's worker
threads do, in an order the test decides."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from socketkit.codec.irc import IRCMessage, format_message, parse_message
from socketkit.services.chat import commands
from socketkit.services.chat.replies import (
    AuthFailed,
    CheckPassword,
    Disconnect,
    DropChannel,
    Effect,
    ListingPending,
    Send,
    StoreChannel,
    StoreHistory,
)
from socketkit.services.chat.session import verify_password
from socketkit.services.chat.state import ChatConfig, ChatState, Client

SERVER = "irc.test"


class Net:
    def __init__(self, *, defer_checks: bool = False, **config: Any) -> None:
        self.defer_checks = defer_checks
        self.pending: list[CheckPassword] = []
        self.auth_failures: list[AuthFailed] = []
        self.now = 1_800_000_000.0
        self.state = ChatState(ChatConfig(server_name=SERVER, **config), self.now)
        self.inbox: dict[int, list[IRCMessage]] = defaultdict(list)
        self.closed: dict[int, str] = {}
        self.stored: list[Effect] = []
        self._next = 0
        self.pages = 0  # listing pages made after the command that started them

    def connect(self, host: str = "127.0.0.1") -> Client:
        self._next += 1
        return commands.connect(self.state, self._next, host, self.now)

    def register(self, nick: str, caps: str = "", user: str | None = None, host: str = "127.0.0.1") -> Client:
        client = self.connect(host)
        if caps:
            self.send(client, f"CAP REQ :{caps}")
        self.send(client, f"NICK {nick}")
        self.send(client, f"USER {user or nick.lower()} 0 * :{nick} Realname")
        if caps:
            self.send(client, "CAP END")
        assert client.registered, self.lines(client)
        self.inbox[client.id].clear()
        return client

    def send(self, client: Client, line: str | bytes) -> None:
        self.apply(commands.handle(self.state, client, parse_message(line), self.now))

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.apply(commands.tick(self.state, self.now))

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                for cid in effect.ids:
                    if cid not in self.closed and cid != effect.exclude:
                        self.inbox[cid].append(effect.message)
            elif isinstance(effect, Disconnect):
                if effect.id in self.closed:
                    continue
                self.closed[effect.id] = effect.reason
                client = self.state.clients.get(effect.id)
                if client is not None:
                    self.apply(commands.disconnect(self.state, client, effect.reason, self.now))
            elif isinstance(effect, CheckPassword):
                if self.defer_checks:
                    self.pending.append(effect)
                else:
                    self.finish_check(effect, verify_password(effect.stored, effect.password))
            elif isinstance(effect, AuthFailed):
                self.auth_failures.append(effect)
            elif isinstance(effect, ListingPending):
                # What the glue does over later turns, at once: page after page to the end.
                self.pages += 1
                client = self.state.clients.get(effect.id)
                if client is not None and client.listings:
                    self.apply(commands.resume(self.state, client, self.now))
            elif isinstance(effect, StoreChannel | DropChannel | StoreHistory):
                self.stored.append(effect)

    def finish_check(self, request: CheckPassword, ok: bool | None) -> None:
        """Hand the result of a password check back, as the glue does."""
        if request in self.pending:
            self.pending.remove(request)
        self.apply(commands.password_checked(self.state, request, ok, self.now))

    def take(self, client: Client) -> list[IRCMessage]:
        messages, self.inbox[client.id] = self.inbox[client.id], []
        return messages

    def lines(self, client: Client) -> list[str]:
        return [format_message(m) for m in self.take(client)]

    def codes(self, client: Client) -> list[str]:
        return [m.command for m in self.take(client)]
