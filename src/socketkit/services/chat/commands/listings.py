"""Replies that grow with the server: LIST, WHO, NAMES, made a page at a time (pure).

One ``LIST`` on a server of 10,000 channels used to sort them all and queue 10,000
lines in one go, on the event loop; twenty clients asking four times a second made
everybody else's PING take seconds. Now such a reply is a ``Listing``: a cursor (the
last channel or nick it looked at, an index into a member list) that makes at most a
page of work at a time:

- the command makes its first page at once (small replies are complete in one turn,
  as before); what is left waits in ``Client.listings``, in order, and the glue asks
  for the next page (``commands.resume``) on a later event-loop turn, round-robin with
  the other clients' listings, once the client's output is below its high-water mark
  (a client that does not read stops being served, instead of filling its send queue)
  and its flood budget has a token again;
- every unit of work (a channel or user looked at, a member listed) is paid for in the
  flood budget: ``WORK_PER_TOKEN`` of them cost one token, as one line does. A LIST of
  10,000 channels costs 50 tokens: its first 4,000 channels come at once (the burst),
  then 1,000 a second at the default rate;
- nothing is sorted per request: channels and nicks are kept in sorted indexes
  (``registry.SortedKeys``), so a listing resumes by bisection after its cursor, and
  what was created or removed meanwhile is shown or not, never twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from socketkit.services.chat import numerics as n
from socketkit.services.chat.names import mask_matches
from socketkit.services.chat.replies import Outbox
from socketkit.services.chat.state import Channel, Client, Listing

__all__ = [
    "LISTING_PAGE",
    "MAX_LISTINGS",
    "MEMBERS_PER_UNIT",
    "NAMES_MEMBERS_PER_UNIT",
    "NAMES_PER_LINE",
    "WORK_PER_TOKEN",
    "ChannelListing",
    "Listing",
    "RosterListing",
    "UserListing",
    "prefix_of",
    "run",
    "neighbours",
    "start",
    "who_line",
]

LISTING_PAGE: Final = 100
"""Units of work (channels or users looked at) one page does: 1 to 2.5 ms on a slow
machine (a WHO line costs twice a LIST line), so a page never holds up the other
clients for long; small replies still fit in one."""

WORK_PER_TOKEN: Final = 200
"""Units of work one flood token pays for (two pages): what one line costs, for the work
of formatting two hundred lines. A LIST of 10,000 channels costs 50 tokens."""

NAMES_MEMBERS_PER_UNIT: Final = 8
"""Members a NAMES listing goes through per unit: a member is a nick added to a line,
about an eighth of the work of a LIST or WHO line."""

MEMBERS_PER_UNIT: Final = 20
"""Members a command goes through in C (a set union of its channels' members, for AWAY
or NICK) or filters (a STATUSMSG or TAGMSG to a channel) per unit of work: a user in
50 channels of 10,000 members pays for touching 500,000 members, even when nobody
gets a line of it."""

MAX_LISTINGS: Final = 64
"""Listings one client may have waiting: a JOIN of CHANLIMIT (50) channels queues one
NAMES each, with room for a LIST and a WHO; beyond it, RPL_TRYAGAIN."""

NAMES_PER_LINE: Final = 400
"""Bytes of nicks per 353 line, under the 510-byte message limit."""


def prefix_of(modes: set[str], *, multi: bool) -> str:
    """``@`` for operators, ``+`` for voiced; both (``@+``) with multi-prefix."""
    if multi:
        return ("@" if "o" in modes else "") + ("+" if "v" in modes else "")
    return "@" if "o" in modes else "+" if "v" in modes else ""


def who_line(out: Outbox, asker: Client, other: Client, channel: Channel | None) -> None:
    """One RPL_WHOREPLY: H/G (here/gone), ``*`` for operators, the channel prefix."""
    flags = "G" if other.away is not None else "H"
    if "o" in other.modes:
        flags += "*"
    if channel is not None:
        flags += prefix_of(channel.members.get(other.id, set()), multi="multi-prefix" in asker.caps)
    out.numeric(
        asker,
        n.RPL_WHOREPLY,
        channel.name if channel else "*",
        other.user or "*",
        other.host,
        out.server,
        other.target,
        flags,
        f"0 {other.realname}",
    )


def _visible_channel(channel: Channel, client: Client) -> bool:
    return "s" not in channel.modes or client.id in channel.members


@dataclass(slots=True)
class ChannelListing:
    """``LIST`` (every channel, in name order) or ``LIST #a,#b``."""

    names: tuple[str, ...] | None = None
    cursor: str | None = None  # the last channel key looked at (every channel)
    at: int = 0  # the next of ``names``
    done: bool = False

    def step(self, out: Outbox, client: Client, budget: int) -> int:
        state = out.state
        if self.names is None:
            keys = state.table.index.after(self.cursor, budget)
            chosen = [state.channels[key] for key in keys]
            if keys:
                self.cursor = keys[-1]
            self.done = len(keys) < budget
        else:
            chosen = []
            for name in self.names[self.at : self.at + budget]:
                channel = state.channel(name)
                if channel is not None:
                    chosen.append(channel)
            self.at += budget
            self.done = self.at >= len(self.names)
        for channel in chosen:
            if _visible_channel(channel, client):
                out.numeric(client, n.RPL_LIST, channel.name, str(len(channel.members)), channel.topic)
        if self.done:
            out.numeric(client, n.RPL_LISTEND, "End of /LIST")
        return max(1, len(chosen))


@dataclass(slots=True)
class UserListing:
    """``WHO mask``: every registered user matching it, in nick order (invisible ones
    only to who shares a channel with them)."""

    mask: str
    cursor: str | None = None  # the last nick key looked at
    done: bool = False

    def step(self, out: Outbox, client: Client, budget: int) -> int:
        state = out.state
        keys = state.nick_index.after(self.cursor, budget)
        if keys:
            self.cursor = keys[-1]
        everyone = self.mask in ("*", "0")
        for key in keys:
            other = state.clients.get(state.nicks.get(key, -1))
            if other is None or not other.registered:
                continue
            if "i" in other.modes and other is not client and other.channels.isdisjoint(client.channels):
                continue
            if everyone or mask_matches(self.mask, other.target) or mask_matches(self.mask, other.prefix):
                who_line(out, client, other, None)
        self.done = len(keys) < budget
        if self.done:
            out.numeric(client, n.RPL_ENDOFWHO, self.mask, "End of /WHO list.")
        return max(1, len(keys))


@dataclass(slots=True)
class RosterListing:
    """``NAMES #chan`` (353 lines of prefixed nicks) or ``WHO #chan`` (352 lines), over
    the members as they were when it started."""

    channel: Channel
    kind: str  # "NAMES" or "WHO"
    ids: tuple[int, ...] = ()
    at: int = 0
    started: bool = False
    line: list[str] = field(default_factory=list)  # NAMES: nicks of the 353 line being filled
    size: int = 0
    done: bool = False

    def step(self, out: Outbox, client: Client, budget: int) -> int:
        channel = self.channel
        if not self.started:
            self.started = True
            self.ids = channel.roster() if _visible_channel(channel, client) else ()
        if self.kind == "WHO":
            return self._who(out, client, budget)
        return self._names(out, client, budget)

    def _who(self, out: Outbox, client: Client, budget: int) -> int:
        channel, clients = self.channel, out.state.clients
        member = client.id in channel.members
        chunk = self.ids[self.at : self.at + budget]
        self.at += len(chunk)
        for cid in chunk:
            other = clients.get(cid)
            if other is None or cid not in channel.members or ("i" in other.modes and not member):
                continue
            who_line(out, client, other, channel)
        if self.at >= len(self.ids):
            self.done = True
            out.numeric(client, n.RPL_ENDOFWHO, channel.name, "End of /WHO list.")
        return max(1, len(chunk))

    def _names(self, out: Outbox, client: Client, budget: int) -> int:
        channel, clients = self.channel, out.state.clients
        multi = "multi-prefix" in client.caps
        kind = "@" if "s" in channel.modes else "="
        member = client.id in channel.members
        chunk = self.ids[self.at : self.at + budget * NAMES_MEMBERS_PER_UNIT]
        self.at += len(chunk)
        line = self.line
        for cid in chunk:
            other = clients.get(cid)
            modes = channel.members.get(cid)
            if other is None or modes is None or ("i" in other.modes and not member):
                continue
            entry = prefix_of(modes, multi=multi) + other.target
            if line and self.size + len(entry) + 1 > NAMES_PER_LINE:
                out.numeric(client, n.RPL_NAMREPLY, kind, channel.name, " ".join(line))
                line.clear()
                self.size = 0
            line.append(entry)
            self.size += len(entry) + 1
        if self.at >= len(self.ids):
            self.done = True
            if line:
                out.numeric(client, n.RPL_NAMREPLY, kind, channel.name, " ".join(line))
                line.clear()
            out.numeric(client, n.RPL_ENDOFNAMES, channel.name, "End of /NAMES list.")
        return max(1, -(-len(chunk) // NAMES_MEMBERS_PER_UNIT))


def neighbours(out: Outbox, client: Client) -> set[int]:
    """``state.neighbours(client)``, its work charged to ``out``."""
    state = out.state
    touched = sum(len(channel.members) for key in client.channels if (channel := state.channels.get(key)))
    out.work += touched // MEMBERS_PER_UNIT
    return state.neighbours(client)


def run(out: Outbox, client: Client, budget: int) -> None:
    """Make up to ``budget`` units of the client's waiting listings, oldest first (the
    units go to ``out.work``, which the command layer charges to the flood budget)."""
    listings = client.listings
    while listings and budget > 0:
        listing = listings[0]
        used = listing.step(out, client, budget)
        budget -= used
        out.work += used
        if listing.done:
            listings.popleft()


def start(out: Outbox, client: Client, listing: Listing, command: str) -> None:
    """Queue ``listing`` behind the client's others and make what is left of this
    command's page of work (RPL_TRYAGAIN if ``MAX_LISTINGS`` are waiting)."""
    if len(client.listings) >= MAX_LISTINGS:
        out.numeric(client, n.RPL_TRYAGAIN, command, "Please wait a while and try again.")
        return
    client.listings.append(listing)
    run(out, client, LISTING_PAGE - out.work)
