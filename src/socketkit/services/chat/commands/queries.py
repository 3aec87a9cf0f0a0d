"""Questions about users and the server: WHO, WHOIS, WHOWAS, ISON, USERHOST, VERSION, TIME."""

from __future__ import annotations

import datetime

from socketkit.codec.irc import IRCMessage, casefold
from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands.channels import prefix_of
from socketkit.services.chat.commands.registration import VERSION
from socketkit.services.chat.replies import Outbox
from socketkit.services.chat.state import Channel, Client, mask_matches

__all__ = ["ison", "time_", "userhost", "version", "who", "whois", "whowas"]


def _who_line(out: Outbox, asker: Client, other: Client, channel: Channel | None) -> None:
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


def who(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """WHO #chan | WHO mask: users, with H/G (here/gone), * (operator) and prefixes."""
    state = out.state
    mask = msg.params[0] if msg.params else "*"
    channel = state.channel(mask) if mask.startswith("#") else None
    if channel is not None:
        if client.id in channel.members or "s" not in channel.modes:
            for other in state.members(channel):
                if "i" in other.modes and client.id not in channel.members:
                    continue
                _who_line(out, client, other, channel)
    elif not mask.startswith("#"):
        shared = state.neighbours(client) | {client.id}
        for other in state.clients.values():
            if not other.registered or ("i" in other.modes and other.id not in shared):
                continue
            if mask in ("*", "0") or mask_matches(mask, other.target) or mask_matches(mask, other.prefix):
                _who_line(out, client, other, None)
    out.numeric(client, n.RPL_ENDOFWHO, mask, "End of /WHO list.")


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
    count = int(msg.params[1]) if len(msg.params) > 1 and msg.params[1].isdigit() else 10
    found = [e for e in reversed(out.state.whowas) if casefold(e.nick) == casefold(nick)][: max(1, count)]
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
