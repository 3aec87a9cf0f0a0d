"""What command handlers produce: messages to send, connections to close, state to store,
passwords to check.

Handlers never write to sockets; they fill an ``Outbox``. Work too slow for the event
loop is an effect too: ``CheckPassword`` asks the glue to verify a password on a worker
thread and to hand the result back (``commands.password_checked``), so the command layer
stays pure and a PBKDF2 check never stalls the other clients. Delivery to many clients is
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
from socketkit.services.chat.history import HistoryItem
from socketkit.services.chat.state import TAG_MESSAGE_TAGS, TAG_TIME, Channel, ChatState, Client

__all__ = [
    "SUPPORTED_CAPS",
    "AuthFailed",
    "CheckPassword",
    "Disconnect",
    "DropChannel",
    "Effect",
    "ListingPending",
    "Outbox",
    "Send",
    "StoreChannel",
    "StoreHistory",
    "safe_middle",
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


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Check ``password`` against ``stored`` (``session.verify_password``) away from the
    event loop, then give the result to ``commands.password_checked`` with this request.

    One request form for every password check: ``purpose`` says what it is for (``OPER``,
    ``PASS``; SASL's PLAIN would be one more) and the follow-up dispatches on it.

    Attributes:
        id: the client.
        purpose: the command the check belongs to.
        name: the operator (or account) name the client gave; ``""`` for ``PASS``.
        known: whether that name is configured (if not, ``stored`` is a stand-in that
            never matches, checked so that the reply takes as long).
    """

    id: int
    purpose: str
    name: str
    stored: str = field(repr=False)
    password: str = field(repr=False)
    known: bool = True


@dataclass(frozen=True, slots=True)
class ListingPending:
    """The client has replies still to make (``Client.listings``): the glue calls
    ``commands.resume`` on a later turn, once the client's output has drained below
    its high-water mark and its flood budget has a token."""

    id: int


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """A password attempt failed or was refused: one log line (never the password)."""

    id: int
    purpose: str
    name: str
    reason: str


Effect = (
    Send
    | Disconnect
    | StoreChannel
    | DropChannel
    | StoreHistory
    | CheckPassword
    | AuthFailed
    | ListingPending
)


def safe_middle(param: str) -> str:
    """``param`` if it can be a middle parameter, else ``*`` (the placeholder IRC
    replies use for "no such name")."""
    if not param or " " in param or param[0] == ":":
        return "*"
    return param


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
    work: int = 0  # units of work done for the requester (listings), charged to its flood budget

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
        """One message to one client (a ``time`` tag added if it asked for server-time).

        Replies echo what the client sent (a nick, a channel, a subcommand) as middle
        parameters, where an empty word, a space or a leading ``:`` cannot be sent:
        those become ``*`` (as ergo's ``SafeErrorParam`` does) so that every reply can
        be encoded, whatever the client typed.
        """
        if len(params) > 1:
            params = (*map(safe_middle, params[:-1]), params[-1])
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

    def check_password(
        self, client: Client, purpose: str, name: str, stored: str, password: str, *, known: bool = True
    ) -> None:
        """Have ``password`` checked off the event loop; the result comes back through
        ``commands.password_checked`` (one check at a time per client)."""
        client.auth_pending = purpose
        self.effects.append(CheckPassword(client.id, purpose, name, stored, password, known))

    def auth_failed(self, client: Client, purpose: str, name: str, reason: str) -> None:
        """Log a failed or refused password attempt."""
        self.effects.append(AuthFailed(client.id, purpose, name, reason))

    def store_channel(self, channel: Channel) -> None:
        """Persist a channel's settings."""
        self.effects.append(StoreChannel(channel))

    def drop_channel(self, name: str) -> None:
        """Forget a persisted channel."""
        self.effects.append(DropChannel(name))
