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
from socketkit.services.chat.state import TAG_MESSAGE_TAGS, TAG_TIME, Channel, ChatState, Client, HistoryItem

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
    """Send ``message`` to each client in ``ids`` but ``exclude``."""

    ids: tuple[int, ...]
    message: IRCMessage
    exclude: int | None = None


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


_last_stamp: tuple[int, str] = (-1, "")


def server_time(now: float) -> str:
    """The IRCv3 ``time`` tag value: ``2026-11-25T17:06:27.123Z`` (the last one is
    reused within the same millisecond: a busy channel asks many times per ms)."""
    global _last_stamp  # noqa: PLW0603 (a one-entry cache of a pure function)
    millis = int(now * 1000)
    if _last_stamp[0] == millis:
        return _last_stamp[1]
    moment = datetime.datetime.fromtimestamp(millis / 1000, tz=datetime.UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"
    _last_stamp = (millis, stamp)
    return stamp


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
        groups: dict[int, list[int]] = {}
        clients = self.state.clients
        for cid in ids:
            client = clients.get(cid)
            if client is not None:
                groups.setdefault(client.tag_class, []).append(cid)
        for cls, members in groups.items():
            self._send_variant(cls, tuple(members), message, client_tags, msgid, None)

    def deliver_channel(
        self,
        channel: Channel,
        message: IRCMessage,
        client_tags: Mapping[str, str] | None = None,
        *,
        msgid: str | None = None,
        exclude: int | None = None,
    ) -> None:
        """``message`` to every member of ``channel`` but ``exclude``: the fan-out path,
        with the members already grouped by tag class (no per-member work here)."""
        for cls, members in channel.delivery_groups(self.state.clients).items():
            if exclude is not None and len(members) == 1 and members[0] == exclude:
                continue
            self._send_variant(cls, members, message, client_tags, msgid, exclude)

    def _send_variant(
        self,
        cls: int,
        ids: tuple[int, ...],
        message: IRCMessage,
        client_tags: Mapping[str, str] | None,
        msgid: str | None,
        exclude: int | None,
    ) -> None:
        if cls:
            tags: dict[str, str] = {}
            if cls & TAG_TIME:
                tags["time"] = server_time(self.now)
            if cls & TAG_MESSAGE_TAGS:
                if msgid is not None:
                    tags["msgid"] = msgid
                if client_tags:
                    tags.update(client_tags)
            if tags:
                message = IRCMessage(message.command, message.params, message.source, tags)
        self.effects.append(Send(ids, message, exclude))

    def disconnect(self, client: Client, reason: str) -> None:
        """Close a client (the glue sends ERROR first)."""
        self.effects.append(Disconnect(client.id, reason))

    def store_channel(self, channel: Channel) -> None:
        """Persist a channel's settings."""
        self.effects.append(StoreChannel(channel))

    def drop_channel(self, name: str) -> None:
        """Forget a persisted channel."""
        self.effects.append(DropChannel(name))
