"""Questions about users and the server: WHO, WHOIS, WHOWAS, ISON, USERHOST, VERSION, TIME."""

from __future__ import annotations

import datetime

from socketkit.codec.irc import IRCMessage
from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands import listings
from socketkit.services.chat.commands.listings import RosterListing, UserListing, prefix_of
from socketkit.services.chat.commands.registration import VERSION
from socketkit.services.chat.history import WHOWAS_REPLIES
from socketkit.services.chat.names import parse_count
from socketkit.services.chat.replies import Outbox
from socketkit.services.chat.state import Client

__all__ = ["ison", "time_", "userhost", "version", "who", "whois", "whowas"]


def who(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """WHO #chan | WHO mask: users, with H/G (here/gone), * (operator) and prefixes; made
    a page at a time (``listings``)."""
    state = out.state
    mask = msg.params[0] if msg.params and msg.params[0] else "*"
    if mask.startswith("#"):
        channel = state.channel(mask)
        if channel is None:
            out.numeric(client, n.RPL_ENDOFWHO, mask, "End of /WHO list.")
        else:
            listings.start(out, client, RosterListing(channel, "WHO"), "WHO")
        return
    listings.start(out, client, UserListing(mask), "WHO")


def whois(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """WHOIS [server] nick[,nick]."""
    state = out.state
    nicks = msg.params[-1]
    for nick in nicks.split(",")[: state.config.max_targets]:
        other = state.client_by_nick(nick)
        if other is None:
            out.numeric(client, n.ERR_NOSUCHNICK, nick, "No such nick/channel")
            continue
        out.numeric(client, n.RPL_WHOISUSER, other.target, other.user or "*", other.host, "*", other.realname)
        visible = []
        for key in sorted(other.channels):
            channel = state.channels.get(key)
            if channel is None or ("s" in channel.modes and client.id not in channel.members):
                continue
            visible.append(prefix_of(channel.members.get(other.id, set()), multi=False) + channel.name)
        if visible:
            out.numeric(client, n.RPL_WHOISCHANNELS, other.target, " ".join(visible))
        out.numeric(client, n.RPL_WHOISSERVER, other.target, out.server, state.config.network)
        if "o" in other.modes:
            out.numeric(client, n.RPL_WHOISOPERATOR, other.target, "is an IRC operator")
        if other.away is not None:
            out.numeric(client, n.RPL_AWAY, other.target, other.away)
        idle = max(0, int(out.now - other.last_active))
        out.numeric(
            client,
            n.RPL_WHOISIDLE,
            other.target,
            str(idle),
            str(int(other.connected_at)),
            "seconds idle, signon time",
        )
    out.numeric(client, n.RPL_ENDOFWHOIS, nicks, "End of /WHOIS list.")


def whowas(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """WHOWAS nick [count]: who used a nick that has left."""
    nick = msg.params[0]
    count = parse_count(msg.params[1]) if len(msg.params) > 1 else None
    found = out.state.whowas.find(nick, count or WHOWAS_REPLIES)
    out.work += len(found)
    if not found:
        out.numeric(client, n.ERR_WASNOSUCHNICK, nick, "There was no such nickname")
    for entry in found:
        out.numeric(client, n.RPL_WHOWASUSER, entry.nick, entry.user, entry.host, "*", entry.realname)
        out.numeric(client, n.RPL_WHOISSERVER, entry.nick, out.server, _iso(entry.time))
    out.numeric(client, n.RPL_ENDOFWHOWAS, nick, "End of WHOWAS")


def ison(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """ISON nick nick...: which of these are online."""
    state = out.state
    wanted = " ".join(msg.params).split()
    online = [c.target for nick in wanted if (c := state.client_by_nick(nick)) is not None]
    out.numeric(client, n.RPL_ISON, " ".join(online))


def userhost(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """USERHOST nick...: nick[*]=[+-]user@host."""
    replies = []
    for nick in msg.params[:5]:
        other = out.state.client_by_nick(nick)
        if other is not None:
            oper = "*" if "o" in other.modes else ""
            here = "-" if other.away is not None else "+"
            replies.append(f"{other.target}{oper}={here}{other.user}@{other.host}")
    out.numeric(client, n.RPL_USERHOST, " ".join(replies))


def version(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """VERSION."""
    out.numeric(client, n.RPL_VERSION, VERSION, out.server, "socketkit chat")


def time_(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """TIME."""
    out.numeric(client, n.RPL_TIME, out.server, _iso(out.now))


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
