"""What command handlers produce: messages to send, connections to close, state to store.

Handlers never write to sockets; they fill an ``Outbox``. Delivery to many clients is
grouped by what their capabilities change (``server-time`` adds a ``time`` tag,
``message-tags`` passes client tags on), so a message to 1,000 members is formatted at
most a few times, not 1,000.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from socketkit.codec.irc import IRCMessage
from socketkit.services.chat.state import Channel, ChatState, Client, HistoryItem

__all__ = [
    "SUPPORTED_CAPS",
    "Disconnect",
    "DropChannel",
    "Effect",
    "Outbox",
    "Send",
    "StoreChannel",
    "StoreHistory",
    "server_time",
]

SUPPORTED_CAPS: Final = (
    "away-notify",
    "batch",
    "draft/chathistory",
    "echo-message",
    "message-tags",
    "multi-prefix",
    "server-time",
)


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to each client in ``ids``."""

    ids: tuple[int, ...]
    message: IRCMessage


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Send ``ERROR :reason`` to the client, then close its connection."""

    id: int
    reason: str


@dataclass(frozen=True, slots=True)
class StoreChannel:
    """Persist a channel's topic, modes and bans (it was created or changed)."""

    channel: Channel


@dataclass(frozen=True, slots=True)
class DropChannel:
    """Forget a channel that was persisted."""

    name: str


@dataclass(frozen=True, slots=True)
class StoreHistory:
    """Persist one channel message for CHATHISTORY."""

    channel: str
    item: HistoryItem


Effect = Send | Disconnect | StoreChannel | DropChannel | StoreHistory


def server_time(now: float) -> str:
    """The IRCv3 ``time`` tag value: ``2026-11-25T17:06:27.123Z``."""
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Outbox:
    """Effects of handling one message (or one tick), in order."""

    state: ChatState
    now: float
    effects: list[Effect] = field(default_factory=list)

    @property
    def server(self) -> str:
        return self.state.config.server_name

    def to(
        self,
        client: Client,
        command: str,
        *params: str,
        source: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """One message to one client (a ``time`` tag added if it asked for server-time)."""
        message = IRCMessage(command, params, self.server if source is None else source or None, {})
        self.deliver([client.id], message, tags or {})

    def numeric(self, client: Client, code: str, *params: str) -> None:
        """A numeric reply from the server, addressed to the client's nick."""
        self.to(client, code, client.target, *params)

    def deliver(
        self,
        ids: Iterable[int],
        message: IRCMessage,
        client_tags: Mapping[str, str] | None = None,
        *,
        msgid: str | None = None,
    ) -> None:
        """``message`` to many clients, tagged for each one's capabilities."""
        groups: dict[tuple[bool, bool], list[int]] = {}
        clients = self.state.clients
        for cid in ids:
            client = clients.get(cid)
            if client is None:
                continue
            caps = client.caps
            groups.setdefault(("server-time" in caps, "message-tags" in caps), []).append(cid)
        if not groups:
            return
        stamp = server_time(self.now)
        for (timed, tagged), members in groups.items():
            tags: dict[str, str] = {}
            if timed:
                tags["time"] = stamp
            if tagged:
                if msgid is not None:
                    tags["msgid"] = msgid
                if client_tags:
                    tags.update(client_tags)
            variant = (
                message if not tags else IRCMessage(message.command, message.params, message.source, tags)
            )
            self.effects.append(Send(tuple(members), variant))

    def disconnect(self, client: Client, reason: str) -> None:
        """Close a client (the glue sends ERROR first)."""
        self.effects.append(Disconnect(client.id, reason))

    def store_channel(self, channel: Channel) -> None:
        """Persist a channel's settings."""
        self.effects.append(StoreChannel(channel))

    def drop_channel(self, name: str) -> None:
        """Forget a persisted channel."""
        self.effects.append(DropChannel(name))
