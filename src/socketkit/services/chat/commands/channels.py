"""Channels: JOIN, PART, TOPIC, NAMES, LIST, KICK, INVITE; channels made and dropped."""

from __future__ import annotations

from socketkit.codec.irc import IRCMessage, casefold
from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands import listings
from socketkit.services.chat.commands.listings import ChannelListing, RosterListing
from socketkit.services.chat.names import mask_matches, valid_channel
from socketkit.services.chat.registry import FULL_ADDRESS
from socketkit.services.chat.replies import Outbox
from socketkit.services.chat.state import Channel, Client

__all__ = [
    "drop",
    "forget_if_unused",
    "invite",
    "is_banned",
    "join",
    "kick",
    "list_",
    "names",
    "part",
    "topic",
]


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
        evict, full = state.table.make_room(client.key)
        if full is not None:
            whose = "Your address has" if full == FULL_ADDRESS else "The server has"
            out.numeric(client, n.ERR_TOOMANYCHANNELS, name, f"{whose} too many channels")
            return
        for old in evict:  # lingering channels (empty) give their slot
            drop(out, old)
        channel = Channel(name, out.now, creator=client.key)
        state.table.add(channel)
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
    listings.start(out, client, RosterListing(channel, "NAMES"), "NAMES")
    if channel.emptied_at is not None:  # lingering (or loaded from disk): in use again
        state.table.occupied(channel)
        out.store_channel(channel)
    elif created and not channel.is_default:
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
    """The last member left: a channel with nothing to keep is dropped; one with a
    topic, modes, bans or history lingers (``registry``), or stays if registered."""
    if channel.members:
        return
    if channel.is_default:
        drop(out, channel)
        return
    out.state.table.emptied(channel, out.now)
    out.store_channel(channel)  # when it was emptied, for its expiry after a restart


def drop(out: Outbox, channel: Channel) -> None:
    """Forget an empty channel, its settings and its history (in memory and on disk)."""
    out.state.drop_channel(channel)
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


def names(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """NAMES #a,#b (without a channel: only the end of the list, as ergo does)."""
    if not msg.params:
        out.numeric(client, n.RPL_ENDOFNAMES, "*", "End of /NAMES list.")
        return
    for name in msg.params[0].split(","):
        channel = out.state.channel(name)
        if channel is None:
            out.numeric(client, n.RPL_ENDOFNAMES, name or "*", "End of /NAMES list.")
        else:
            listings.start(out, client, RosterListing(channel, "NAMES"), "NAMES")


def list_(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """LIST [#a,#b]: channels, their sizes and topics (secret ones only to members), in
    name order; made a page at a time (``listings``)."""
    names = tuple(msg.params[0].split(",")) if msg.params and msg.params[0] else None
    out.numeric(client, n.RPL_LISTSTART, "Channel", "Users  Name")
    listings.start(out, client, ChannelListing(names), "LIST")


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
