"""Channels: JOIN, PART, TOPIC, NAMES, LIST, KICK, INVITE."""

from __future__ import annotations

from socketkit.codec.irc import IRCMessage, casefold
from socketkit.services.chat import numerics as n
from socketkit.services.chat.replies import Outbox
from socketkit.services.chat.state import Channel, Client, mask_matches, valid_channel

__all__ = [
    "forget_if_unused",
    "invite",
    "join",
    "kick",
    "list_",
    "names",
    "part",
    "prefix_of",
    "send_names",
    "topic",
]

NAMES_PER_LINE = 400  # bytes of nicks per 353 line, under the 510-byte message limit


def prefix_of(modes: set[str], *, multi: bool) -> str:
    """``@`` for operators, ``+`` for voiced; both (``@+``) with multi-prefix."""
    if multi:
        return ("@" if "o" in modes else "") + ("+" if "v" in modes else "")
    return "@" if "o" in modes else "+" if "v" in modes else ""


def is_banned(channel: Channel, client: Client) -> bool:
    """Whether a ban mask matches the client (an invitation overrides it)."""
    return any(mask_matches(mask, client.prefix) for mask, _, _ in channel.bans)


def join(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """JOIN #a,#b [key,key] or JOIN 0 (leave every channel)."""
    if msg.params[0] == "0":
        for key in list(client.channels):
            channel = out.state.channels.get(key)
            if channel is not None:
                _leave(out, client, channel, "PART", (channel.name, "Left all channels"))
        return
    names = msg.params[0].split(",")
    keys = msg.params[1].split(",") if len(msg.params) > 1 else []
    for i, name in enumerate(names):
        _join_one(out, client, name, keys[i] if i < len(keys) else None)


def _join_one(out: Outbox, client: Client, name: str, key: str | None) -> None:
    state, config = out.state, out.state.config
    if not valid_channel(name, config.channel_length):
        out.numeric(client, n.ERR_NOSUCHCHANNEL, name or "*", "No such channel")
        return
    folded = casefold(name)
    if folded in client.channels:
        return
    if len(client.channels) >= config.max_channels_per_client:
        out.numeric(client, n.ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
        return
    channel = state.channels.get(folded)
    created = channel is None
    if channel is None:
        if len(state.channels) >= config.max_channels:
            out.numeric(client, n.ERR_TOOMANYCHANNELS, name, "The server has too many channels")
            return
        channel = Channel(name, out.now)
        state.channels[folded] = channel
    else:
        invited = casefold(client.target) in channel.invites
        if channel.key and key != channel.key:
            out.numeric(client, n.ERR_BADCHANNELKEY, channel.name, "Cannot join channel (+k)")
            return
        if channel.limit is not None and len(channel.members) >= channel.limit:
            out.numeric(client, n.ERR_CHANNELISFULL, channel.name, "Cannot join channel (+l)")
            return
        if "i" in channel.modes and not invited:
            out.numeric(client, n.ERR_INVITEONLYCHAN, channel.name, "Cannot join channel (+i)")
            return
        if not invited and is_banned(channel, client):
            out.numeric(client, n.ERR_BANNEDFROMCHAN, channel.name, "Cannot join channel (+b)")
            return
        channel.invites.discard(casefold(client.target))
    # The first member of a channel (new, or persisted and empty) operates it.
    channel.add_member(client.id, {"o"} if not channel.members else set())
    client.channels.add(folded)
    out.deliver(channel.members, IRCMessage("JOIN", (channel.name,), client.prefix))
    if channel.topic:
        _send_topic(out, client, channel)
    send_names(out, client, channel)
    if created and not channel.is_default:
        out.store_channel(channel)


def _leave(
    out: Outbox,
    client: Client,
    channel: Channel,
    command: str,
    params: tuple[str, ...],
    source: str | None = None,
    target: Client | None = None,
) -> None:
    """Broadcast PART/KICK to the channel, then remove ``target`` (default: ``client``)."""
    leaving = target or client
    out.deliver(channel.members, IRCMessage(command, params, source or client.prefix))
    channel.remove_member(leaving.id)
    leaving.channels.discard(casefold(channel.name))
    forget_if_unused(out, channel)


def forget_if_unused(out: Outbox, channel: Channel) -> None:
    """An empty channel with nothing to keep (topic, modes, bans, history) is removed."""
    if not channel.members and channel.is_default:
        del out.state.channels[casefold(channel.name)]
        out.drop_channel(channel.name)


def part(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """PART #a,#b [:reason]."""
    reason = msg.params[1] if len(msg.params) > 1 else ""
    for name in msg.params[0].split(","):
        channel = out.state.channel(name)
        if channel is None:
            out.numeric(client, n.ERR_NOSUCHCHANNEL, name, "No such channel")
        elif client.id not in channel.members:
            out.numeric(client, n.ERR_NOTONCHANNEL, channel.name, "You're not on that channel")
        else:
            _leave(out, client, channel, "PART", (channel.name, reason) if reason else (channel.name,))


def _send_topic(out: Outbox, client: Client, channel: Channel) -> None:
    out.numeric(client, n.RPL_TOPIC, channel.name, channel.topic)
    out.numeric(client, n.RPL_TOPICWHOTIME, channel.name, channel.topic_setter, str(int(channel.topic_time)))


def topic(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """TOPIC #chan (query) or TOPIC #chan :text (set; operators only with +t)."""
    channel = out.state.channel(msg.params[0])
    if channel is None:
        out.numeric(client, n.ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
        return
    member = channel.members.get(client.id)
    if len(msg.params) < 2:
        if member is None and "s" in channel.modes:
            out.numeric(client, n.ERR_NOTONCHANNEL, channel.name, "You're not on that channel")
        elif channel.topic:
            _send_topic(out, client, channel)
        else:
            out.numeric(client, n.RPL_NOTOPIC, channel.name, "No topic is set")
        return
    if member is None:
        out.numeric(client, n.ERR_NOTONCHANNEL, channel.name, "You're not on that channel")
        return
    if "t" in channel.modes and "o" not in member:
        out.numeric(client, n.ERR_CHANOPRIVSNEEDED, channel.name, "You're not channel operator")
        return
    channel.topic = msg.params[1][: out.state.config.topic_length]
    channel.topic_setter = client.prefix
    channel.topic_time = out.now
    out.deliver(channel.members, IRCMessage("TOPIC", (channel.name, channel.topic), client.prefix))
    out.store_channel(channel)


def send_names(out: Outbox, client: Client, channel: Channel) -> None:
    """353 lines with the members' prefixed nicks, then 366."""
    multi = "multi-prefix" in client.caps
    kind = "@" if "s" in channel.modes else "="
    visible = client.id in channel.members or "s" not in channel.modes
    if visible:
        line: list[str] = []
        size = 0
        for member in out.state.members(channel):
            if "i" in member.modes and client.id not in channel.members:
                continue
            entry = prefix_of(channel.members[member.id], multi=multi) + member.target
            if line and size + len(entry) + 1 > NAMES_PER_LINE:
                out.numeric(client, n.RPL_NAMREPLY, kind, channel.name, " ".join(line))
                line, size = [], 0
            line.append(entry)
            size += len(entry) + 1
        if line:
            out.numeric(client, n.RPL_NAMREPLY, kind, channel.name, " ".join(line))
    out.numeric(client, n.RPL_ENDOFNAMES, channel.name, "End of /NAMES list.")


def names(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """NAMES #a,#b."""
    if not msg.params:
        out.numeric(client, n.RPL_ENDOFNAMES, "*", "End of /NAMES list.")
        return
    for name in msg.params[0].split(","):
        channel = out.state.channel(name)
        if channel is None:
            out.numeric(client, n.RPL_ENDOFNAMES, name, "End of /NAMES list.")
        else:
            send_names(out, client, channel)


def list_(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """LIST [#a,#b]: channels, their sizes and topics (secret ones only to members)."""
    state = out.state
    if msg.params and msg.params[0]:
        wanted = [state.channel(name) for name in msg.params[0].split(",")]
        channels = [c for c in wanted if c is not None]
    else:
        channels = sorted(state.channels.values(), key=lambda c: casefold(c.name))
    out.numeric(client, n.RPL_LISTSTART, "Channel", "Users  Name")
    for channel in channels:
        if "s" in channel.modes and client.id not in channel.members:
            continue
        out.numeric(client, n.RPL_LIST, channel.name, str(len(channel.members)), channel.topic)
    out.numeric(client, n.RPL_LISTEND, "End of /LIST")


def kick(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """KICK #chan nick[,nick] [:reason] (channel operators)."""
    state = out.state
    channel = state.channel(msg.params[0])
    if channel is None:
        out.numeric(client, n.ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
        return
    member = channel.members.get(client.id)
    if member is None:
        out.numeric(client, n.ERR_NOTONCHANNEL, channel.name, "You're not on that channel")
        return
    if "o" not in member:
        out.numeric(client, n.ERR_CHANOPRIVSNEEDED, channel.name, "You're not channel operator")
        return
    reason = (msg.params[2] if len(msg.params) > 2 else client.target)[: state.config.kick_length]
    for nick in msg.params[1].split(","):
        target = state.client_by_nick(nick)
        if target is None or target.id not in channel.members:
            out.numeric(client, n.ERR_USERNOTINCHANNEL, nick, channel.name, "They aren't on that channel")
            continue
        _leave(out, client, channel, "KICK", (channel.name, target.target, reason), target=target)


def invite(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """INVITE nick #chan."""
    state = out.state
    target = state.client_by_nick(msg.params[0])
    if target is None:
        out.numeric(client, n.ERR_NOSUCHNICK, msg.params[0], "No such nick/channel")
        return
    channel = state.channel(msg.params[1])
    name = msg.params[1]
    if channel is not None:
        name = channel.name
        member = channel.members.get(client.id)
        if member is None:
            out.numeric(client, n.ERR_NOTONCHANNEL, channel.name, "You're not on that channel")
            return
        if target.id in channel.members:
            out.numeric(client, n.ERR_USERONCHANNEL, target.target, channel.name, "is already on channel")
            return
        if "i" in channel.modes and "o" not in member:
            out.numeric(client, n.ERR_CHANOPRIVSNEEDED, channel.name, "You're not channel operator")
            return
        channel.invites.add(casefold(target.target))
    out.numeric(client, n.RPL_INVITING, target.target, name)
    out.deliver([target.id], IRCMessage("INVITE", (target.target, name), client.prefix))
