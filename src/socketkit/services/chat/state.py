"""The chat server's state: clients, nicks, channels, history. Pure data and lookups.

Nicks and channel names are indexed by their RFC 1459 casefold. Clients are numbered
by connection; a client is "registered" once NICK and USER (and CAP END, PASS) are done.
Channels live in a ``ChannelTable`` (``registry``: quotas, lingering, expiry), history
in a ``HistoryBook`` and departed nicks in a ``WhowasBook`` (``history``), each bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from socketkit.address import limit_key
from socketkit.codec.irc import casefold
from socketkit.services.chat.history import HistoryBook, HistoryItem, WhowasBook, WhowasEntry
from socketkit.services.chat.options import DEFAULT_FLOOD_BURST, DEFAULT_FLOOD_RATE, DEFAULT_PING_S
from socketkit.services.chat.registry import ChannelTable, SortedKeys
from socketkit.services.chat.session import (
    OPER_ATTEMPT_INTERVAL_S,
    OPER_ATTEMPTS_BURST,
    AttemptThrottle,
    TokenBucket,
)

__all__ = [
    "CHANNEL_FLAG_MODES",
    "EMPTY_CHANNEL_TTL_S",
    "MAX_HISTORY",
    "MAX_MOTD_FILE_SIZE",
    "MOTD_LINE_BYTES",
    "ChatConfig",
    "ChatState",
    "Channel",
    "Client",
    "HistoryItem",
    "Listing",
    "TAG_MESSAGE_TAGS",
    "TAG_TIME",
    "WhowasEntry",
    "motd_lines",
]

TAG_TIME: Final = 1
"""``Client.tag_class`` bit: the client gets a ``time`` tag (server-time)."""
TAG_MESSAGE_TAGS: Final = 2
"""``Client.tag_class`` bit: the client gets msgid and client tags (message-tags)."""

CHANNEL_FLAG_MODES: Final = "Pimnst"
"""Channel modes without a parameter: registered (persistent, IRC operators only, as
ngircd's ``+P``), invite-only, moderated, no external messages, secret, topic settable
by operators only."""

EMPTY_CHANNEL_TTL_S: Final = 7 * 24 * 3600.0
"""How long an unregistered channel with something to keep (a topic, modes, history)
stays once empty: a week, so a room left over a weekend or a holiday, or a restarted
server, finds its topic and history again; abandoned rooms go (``registry``)."""

MAX_CHANNELS_PER_ADDRESS: Final = 1_000
"""Unregistered channels that clients of one peer (``Client.key``) may have created
and that still exist: a tenth of the default table, so that filling it takes ten
addresses holding a hundred connections each; lingering ones make room."""

MAX_HISTORY: Final = 100_000
"""History lines kept in memory across all channels (``HistoryBook``): a hundred busy
channels' worth at the default 1,000 each, some 50 MB; without it, 10,000 channels of
1,000 lines each would be ten million messages, and anyone may create channels. Shared
fairly: past it, the longest history gives a line, so even a full table of 10,000
channels leaves each at least 10."""

MAX_MOTD_FILE_SIZE: Final = 64 * 1024
"""Bytes of a MOTD file: a MOTD is a screenful, and every client gets it on registering
(and again with MOTD), so a large one is an amplifier."""

MOTD_LINE_BYTES: Final = 400
"""Bytes of one RPL_MOTD text: what fits in a 510-byte line with the longest server
name and nick; a longer line of the file is cut into several."""


def motd_lines(text: str) -> tuple[str, ...]:
    """The MOTD file's text as RPL_MOTD lines: control characters (a CR or NUL cannot be
    sent; ESC would reach every terminal) dropped, long lines cut at ``MOTD_LINE_BYTES``
    (between characters), at most ``MAX_MOTD_FILE_SIZE`` in all."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = "".join(c for c in raw if c.isprintable() or c == "\t").replace("\t", "    ")
        while len(line.encode()) > MOTD_LINE_BYTES:
            cut = MOTD_LINE_BYTES
            while len(line[:cut].encode()) > MOTD_LINE_BYTES:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
        lines.append(line)
    return tuple(lines)


class Listing(Protocol):
    """A reply made a page at a time (``commands.listings`` makes them)."""

    done: bool

    def step(self, out: Any, client: Client, budget: int) -> int:
        """Make up to ``budget`` units of the reply into ``out`` (a ``replies.Outbox``,
        whose module imports this one); return the units used (at least 1)."""
        ...


@dataclass(slots=True)
class ChatConfig:
    """Server settings (limits are ISUPPORT values too)."""

    server_name: str = "socketkit.local"
    network: str = "socketkit"
    password: str | None = None  # connection password (PASS)
    opers: Mapping[str, str] = field(default_factory=dict)  # name -> password hash or plain text
    motd: tuple[str, ...] = ("Welcome to socketkit chat.",)
    nick_length: int = 30
    channel_length: int = 50
    topic_length: int = 390
    away_length: int = 200
    kick_length: int = 255
    max_channels_per_client: int = 50
    max_channels: int = 10_000  # channels on the server (lingering ones make room: registry)
    max_channels_per_address: int = MAX_CHANNELS_PER_ADDRESS
    empty_channel_ttl_s: float = EMPTY_CHANNEL_TTL_S
    max_targets: int = 4
    modes_per_command: int = 4
    max_bans: int = 100
    history_per_channel: int = 1000
    max_history: int = MAX_HISTORY  # lines in memory, all channels
    chathistory_limit: int = 100
    whowas_size: int = 1000
    ping_interval_s: float = DEFAULT_PING_S
    ping_timeout_s: float = DEFAULT_PING_S
    registration_timeout_s: float = 30.0
    flood_burst: int = DEFAULT_FLOOD_BURST  # messages a client may send at once ...
    flood_rate: float = DEFAULT_FLOOD_RATE  # ... then this many per second
    flood_queue: int = 50  # lines held back while a client is throttled, then "Excess Flood"


def _oper_bucket() -> TokenBucket:
    burst = float(OPER_ATTEMPTS_BURST)
    return TokenBucket(burst, 1.0 / OPER_ATTEMPT_INTERVAL_S, burst)


@dataclass(slots=True)
class Client:
    """One connection."""

    id: int
    host: str
    connected_at: float
    nick: str | None = None
    user: str | None = None
    realname: str = ""
    registered: bool = False
    password_ok: bool = False
    cap_negotiating: bool = False
    cap_version: int = 0
    caps: set[str] = field(default_factory=set)
    modes: set[str] = field(default_factory=set)  # "i", "o"
    away: str | None = None
    channels: set[str] = field(default_factory=set)  # casefolded names
    last_active: float = 0.0  # last message other than PING/PONG (WHOIS idle)
    last_seen: float = 0.0  # last anything (ping timeout)
    ping_token: str | None = None
    ping_sent_at: float = 0.0
    oper_name: str | None = None
    flood: TokenBucket = field(default_factory=TokenBucket)
    oper_attempts: TokenBucket = field(default_factory=_oper_bucket)
    auth_pending: str | None = None  # what a password check now running is for ("OPER", "PASS")
    pass_attempt: str | None = field(default=None, repr=False)  # PASS, checked at registration
    tag_class: int = 0  # TAG_TIME | TAG_MESSAGE_TAGS: which variant of a message it gets
    # Replies too long for one turn (LIST, WHO, NAMES), produced a page at a time, in order.
    listings: deque[Listing] = field(default_factory=deque)
    # Who it is for per-peer rules: the engine's key (``socketkit.peercred``: a local
    # peer's user), or, for a client made without one, ``limit_key`` of its host.
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = limit_key(self.host)

    def set_caps(self, caps: set[str]) -> None:
        """Replace the negotiated capabilities (and the variant class they imply)."""
        self.caps = caps
        self.tag_class = (TAG_TIME if "server-time" in caps else 0) | (
            TAG_MESSAGE_TAGS if "message-tags" in caps else 0
        )

    @property
    def prefix(self) -> str:
        """``nick!user@host``."""
        return f"{self.nick or '*'}!{self.user or '*'}@{self.host}"

    @property
    def target(self) -> str:
        """What numerics address this client as (``*`` before it has a nick)."""
        return self.nick or "*"


@dataclass(slots=True)
class Channel:
    """One channel."""

    name: str
    created: float
    topic: str = ""
    topic_setter: str = ""
    topic_time: float = 0.0
    modes: set[str] = field(default_factory=lambda: {"n", "t"})
    key: str | None = None
    limit: int | None = None
    bans: list[tuple[str, str, float]] = field(default_factory=list)  # mask, setter, time
    invites: set[str] = field(default_factory=set)  # casefolded nicks
    members: dict[int, set[str]] = field(default_factory=dict)  # client id -> {"o", "v"}; see add/remove
    history: deque[HistoryItem] = field(default_factory=deque)  # appended by ChatState.history
    # Lines were said here (and stored): kept on disk even if the fair share of memory
    # (``HistoryBook``) has left none in ``history``, so the channel is not "default".
    logged: bool = False
    creator: str = ""  # the Client.key of who created it (its peer's quota); "" if not known
    emptied_at: float | None = None  # when the last member left (None: it has members)
    # Members by tag class, for fan-out without a per-member look-up: rebuilt when the
    # membership or a member's capabilities change (``None``: to be rebuilt).
    groups: dict[int, tuple[int, ...]] | None = None
    _roster: tuple[int, ...] | None = None  # member ids, for listings (rebuilt on change)

    def add_member(self, client_id: int, modes: set[str]) -> None:
        """``client_id`` joins with these prefix modes."""
        self.members[client_id] = modes
        self.groups = self._roster = None

    def remove_member(self, client_id: int) -> None:
        """``client_id`` leaves (if it was here)."""
        if self.members.pop(client_id, None) is not None:
            self.groups = self._roster = None

    @property
    def registered(self) -> bool:
        """Kept empty and across restarts (``+P``, set by an IRC operator)."""
        return "P" in self.modes

    def roster(self) -> tuple[int, ...]:
        """The member ids as they are now: a listing walks this tuple by index while the
        membership changes (a change makes a new tuple; the listing keeps the old one)."""
        roster = self._roster
        if roster is None:
            roster = self._roster = tuple(self.members)
        return roster

    def delivery_groups(self, clients: Mapping[int, Client]) -> dict[int, tuple[int, ...]]:
        """Member ids by tag class (cached)."""
        groups = self.groups
        if groups is None:
            lists: dict[int, list[int]] = {}
            for cid in self.members:
                client = clients.get(cid)
                if client is not None:
                    lists.setdefault(client.tag_class, []).append(cid)
            groups = self.groups = {cls: tuple(ids) for cls, ids in lists.items()}
        return groups

    @property
    def is_default(self) -> bool:
        """Nothing worth keeping once empty (no topic, default modes, no bans, no history
        in memory or on disk): dropped when the last member leaves, instead of lingering."""
        return (
            not self.history
            and not self.logged
            and not self.topic
            and self.modes == {"n", "t"}
            and not self.key
            and self.limit is None
            and not self.bans
        )

    def mode_string(self, *, show_key: bool) -> tuple[str, ...]:
        """``+ntk key`` style: the flag modes, then parameters."""
        flags = "".join(sorted(self.modes))
        params: list[str] = []
        if self.key:
            flags += "k"
            params.append(self.key if show_key else "*")
        if self.limit is not None:
            flags += "l"
            params.append(str(self.limit))
        return ("+" + flags, *params)


class ChatState:
    """Everything the server knows; mutated only by ``commands``."""

    def __init__(self, config: ChatConfig, created_at: float) -> None:
        self.config = config
        self.created_at = created_at
        self.clients: dict[int, Client] = {}
        self.nicks: dict[str, int] = {}  # casefolded nick -> client id (see claim_nick)
        self.nick_index = SortedKeys()  # the same nicks in order, for WHO listings
        self.table: ChannelTable[Channel] = ChannelTable(
            max_channels=config.max_channels,
            max_per_address=config.max_channels_per_address,
            ttl_s=config.empty_channel_ttl_s,
        )
        self.channels: dict[str, Channel] = self.table.by_name  # read here, changed by the table
        self.history = HistoryBook(config.history_per_channel, config.max_history)
        self.whowas = WhowasBook(config.whowas_size)
        self.msgid_counter = 0
        self.operators: set[int] = set()  # ids of clients with user mode +o (LUSERS counts them)
        self.password_attempts = AttemptThrottle()  # per address, for OPER and PASS

    def client_by_nick(self, nick: str) -> Client | None:
        """The registered client using ``nick``, if any."""
        cid = self.nicks.get(casefold(nick))
        return None if cid is None else self.clients.get(cid)

    def claim_nick(self, nick: str, client_id: int) -> None:
        """``client_id`` now uses ``nick``."""
        key = casefold(nick)
        self.nicks[key] = client_id
        self.nick_index.add(key)

    def release_nick(self, nick: str) -> None:
        """Nobody uses ``nick`` any more."""
        key = casefold(nick)
        if self.nicks.pop(key, None) is not None:
            self.nick_index.discard(key)

    def drop_channel(self, channel: Channel) -> None:
        """Forget a channel and its history (its members must have left)."""
        self.table.remove(channel)
        self.history.forget(channel.history)

    def channel(self, name: str) -> Channel | None:
        """The channel called ``name`` (any case), if any."""
        return self.channels.get(casefold(name))

    def members(self, channel: Channel) -> Iterator[Client]:
        """The channel's clients."""
        for cid in channel.members:
            client = self.clients.get(cid)
            if client is not None:
                yield client

    def neighbours(self, client: Client) -> set[int]:
        """Ids of everyone sharing a channel with ``client`` (``client`` excluded)."""
        ids: set[int] = set()
        for key in client.channels:
            channel = self.channels.get(key)
            if channel is not None:
                ids.update(channel.members)
        ids.discard(client.id)
        return ids

    def next_msgid(self, now: float) -> str:
        """A message id unique for this server's lifetime (time-ordered)."""
        self.msgid_counter += 1
        return f"{int(now * 1000):x}-{self.msgid_counter:x}"

    @property
    def registered_count(self) -> int:
        """Registered clients."""
        return len(self.nicks)

    @property
    def operator_count(self) -> int:
        """Clients with user mode +o (kept as a set: counting them per registration made a
        burst of N registrations cost N squared)."""
        return len(self.operators)
