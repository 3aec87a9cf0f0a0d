"""The chat server's state: clients, nicks, channels, history. Pure data and lookups.

Nicks and channel names are indexed by their RFC 1459 casefold. Clients are numbered
by connection; a client is "registered" once NICK and USER (and CAP END, PASS) are done.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from socketkit.codec.irc import casefold
from socketkit.services.chat.session import (
    OPER_ATTEMPT_INTERVAL_S,
    OPER_ATTEMPTS_BURST,
    AttemptThrottle,
    TokenBucket,
)

__all__ = [
    "CHANNEL_FLAG_MODES",
    "ChatConfig",
    "ChatState",
    "Channel",
    "Client",
    "HistoryItem",
    "TAG_MESSAGE_TAGS",
    "TAG_TIME",
    "WhowasEntry",
    "mask_matches",
    "normalize_mask",
    "valid_channel",
    "valid_nick",
]

TAG_TIME: Final = 1
"""``Client.tag_class`` bit: the client gets a ``time`` tag (server-time)."""
TAG_MESSAGE_TAGS: Final = 2
"""``Client.tag_class`` bit: the client gets msgid and client tags (message-tags)."""

CHANNEL_FLAG_MODES: Final = "imnst"
"""Channel modes without a parameter: invite-only, moderated, no external messages,
secret, topic settable by operators only."""

_NICK = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*$")


def valid_nick(nick: str, max_length: int) -> bool:
    """RFC 2812 nicknames (letter or special first), at most ``max_length`` characters."""
    return 0 < len(nick) <= max_length and bool(_NICK.match(nick))


def valid_channel(name: str, max_length: int) -> bool:
    """``#name`` without space, comma, BEL or NUL, at most ``max_length`` characters."""
    return (
        1 < len(name) <= max_length and name.startswith("#") and not any(c in name for c in " ,\x07\0\r\n:")
    )


def normalize_mask(mask: str) -> str:
    """Complete a ban mask: ``nick`` -> ``nick!*@*``, ``user@host`` -> ``*!user@host``."""
    if "!" not in mask and "@" not in mask:
        return f"{mask}!*@*"
    if "!" not in mask:
        return f"*!{mask}"
    if "@" not in mask:
        return f"{mask}@*"
    return mask


def mask_matches(mask: str, hostmask: str) -> bool:
    """Glob match (``*``, ``?``) of ``nick!user@host`` against a mask, case-insensitively.

    Masks are anyone's input (WHO, a ban any channel operator sets), so the match must
    not backtrack: a regex made of the mask (``*a*a*a...*b`` as ``.*a.*a.*a....*b``)
    takes exponential time, and one ``WHO`` froze the server. Instead the mask is cut at
    its stars: the first piece must match at the start, the last at the end, and each
    piece between is found leftmost after the previous one (leftmost is always right
    when the gaps can hold anything), each search a plain scan.
    """
    return _glob(casefold(mask), casefold(hostmask))


def _glob(pattern: str, text: str) -> bool:
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return len(pattern) == len(text) and _piece_at(pattern, text, 0)
    first, last = pieces[0], pieces[-1]
    end = len(text) - len(last)  # where the last piece must start
    if end < len(first) or not _piece_at(first, text, 0) or not _piece_at(last, text, end):
        return False
    at = len(first)
    for piece in pieces[1:-1]:
        if piece:
            found = _find_piece(piece, text, at, end)
            if found < 0:
                return False
            at = found + len(piece)
    return True


def _piece_at(piece: str, text: str, start: int) -> bool:
    """Whether ``piece`` (``?`` for any one character) matches ``text`` at ``start``."""
    if "?" not in piece:
        return text.startswith(piece, start)
    return all(c == "?" or c == text[start + i] for i, c in enumerate(piece))


def _find_piece(piece: str, text: str, start: int, end: int) -> int:
    """Where ``piece`` first matches within ``text[start:end]`` (-1: nowhere)."""
    if "?" not in piece:
        return text.find(piece, start, end)
    # Literals and single-character dots only: no repetition, so no backtracking.
    found = re.compile("".join("." if c == "?" else re.escape(c) for c in piece), re.DOTALL).search(
        text, start, end
    )
    return -1 if found is None else found.start()


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
    max_channels: int = 10_000  # channels on the server (each keeps up to history_per_channel)
    max_targets: int = 4
    modes_per_command: int = 4
    max_bans: int = 100
    history_per_channel: int = 1000
    chathistory_limit: int = 100
    whowas_size: int = 1000
    ping_interval_s: float = 60.0
    ping_timeout_s: float = 60.0
    registration_timeout_s: float = 30.0
    flood_burst: int = 20  # messages a client may send at once ...
    flood_rate: float = 5.0  # ... then this many per second
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
class HistoryItem:
    """One stored channel message (for CHATHISTORY)."""

    time: float
    msgid: str
    source: str
    command: str  # PRIVMSG or NOTICE
    text: str


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
    history: deque[HistoryItem] = field(default_factory=deque)
    # Members by tag class, for fan-out without a per-member look-up: rebuilt when the
    # membership or a member's capabilities change (``None``: to be rebuilt).
    groups: dict[int, tuple[int, ...]] | None = None

    def add_member(self, client_id: int, modes: set[str]) -> None:
        """``client_id`` joins with these prefix modes."""
        self.members[client_id] = modes
        self.groups = None

    def remove_member(self, client_id: int) -> None:
        """``client_id`` leaves (if it was here)."""
        if self.members.pop(client_id, None) is not None:
            self.groups = None

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
        """Nothing worth keeping once empty (no topic, default modes, no bans, no history)."""
        return (
            not self.history
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


@dataclass(slots=True)
class WhowasEntry:
    """A nick that left."""

    nick: str
    user: str
    host: str
    realname: str
    time: float


class ChatState:
    """Everything the server knows; mutated only by ``commands``."""

    def __init__(self, config: ChatConfig, created_at: float) -> None:
        self.config = config
        self.created_at = created_at
        self.clients: dict[int, Client] = {}
        self.nicks: dict[str, int] = {}  # casefolded nick -> client id
        self.channels: dict[str, Channel] = {}  # casefolded name -> channel
        self.whowas: deque[WhowasEntry] = deque(maxlen=config.whowas_size)
        self.msgid_counter = 0
        self.operators: set[int] = set()  # ids of clients with user mode +o (LUSERS counts them)
        self.password_attempts = AttemptThrottle()  # per address, for OPER and PASS

    def client_by_nick(self, nick: str) -> Client | None:
        """The registered client using ``nick``, if any."""
        cid = self.nicks.get(casefold(nick))
        return None if cid is None else self.clients.get(cid)

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
