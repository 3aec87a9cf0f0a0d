"""Messages: PRIVMSG, NOTICE, TAGMSG, AWAY, and CHATHISTORY (IRCv3 draft/chathistory)."""

from __future__ import annotations

import datetime

from socketkit.codec.irc import IRCMessage
from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands import listings
from socketkit.services.chat.commands.channels import is_banned
from socketkit.services.chat.history import HistoryItem
from socketkit.services.chat.names import parse_count
from socketkit.services.chat.replies import Outbox, Send, StoreHistory, server_time
from socketkit.services.chat.state import Channel, Client

__all__ = ["away", "chathistory", "notice", "privmsg", "tagmsg"]


def _client_tags(msg: IRCMessage) -> dict[str, str]:
    """Client-only tags (``+name``) are relayed to message-tags clients; others are not."""
    return {k: v for k, v in msg.tags.items() if k.startswith("+")}


def _can_send(channel: Channel, client: Client) -> bool:
    modes = channel.members.get(client.id)
    if modes is None:
        return "n" not in channel.modes and "m" not in channel.modes and not is_banned(channel, client)
    if modes & {"o", "v"}:
        return True
    return "m" not in channel.modes and not is_banned(channel, client)


def _message(out: Outbox, client: Client, msg: IRCMessage, command: str) -> None:
    quiet = command != "PRIVMSG"  # NOTICE and TAGMSG never cause automatic replies
    if not msg.params or not msg.params[0]:
        if not quiet:
            out.numeric(client, n.ERR_NORECIPIENT, f"No recipient given ({command})")
        return
    text = msg.params[1] if len(msg.params) > 1 else ""
    if command != "TAGMSG" and not text:
        if not quiet:
            out.numeric(client, n.ERR_NOTEXTTOSEND, "No text to send")
        return
    targets = msg.params[0].split(",")
    state = out.state
    if len(targets) > state.config.max_targets:
        out.numeric(client, n.ERR_TOOMANYTARGETS, msg.params[0], "Too many targets")
        return
    tags = _client_tags(msg)
    echo = "echo-message" in client.caps
    for raw_target in targets:
        status = ""
        target = raw_target
        while target[:1] in ("@", "+"):  # STATUSMSG: @#chan reaches operators only
            status, target = status + target[0], target[1:]
        params = (raw_target, text) if command != "TAGMSG" else (raw_target,)
        line = IRCMessage(command, params, client.prefix)
        msgid = state.next_msgid(out.now)
        if target.startswith("#"):
            channel = state.channel(target)
            if channel is None:
                if not quiet:
                    out.numeric(client, n.ERR_NOSUCHCHANNEL, target, "No such channel")
                continue
            if not _can_send(channel, client):
                if not quiet:
                    out.numeric(client, n.ERR_CANNOTSENDTOCHAN, channel.name, "Cannot send to channel")
                continue
            if status or command == "TAGMSG":
                out.work += len(channel.members) // listings.MEMBERS_PER_UNIT  # filtered, maybe to nobody
                wanted = {"o"} if "@" in status else {"o", "v"} if status else None
                recipients = [
                    cid
                    for cid, modes in channel.members.items()
                    if cid != client.id
                    and (wanted is None or modes & wanted)
                    # tags are all a TAGMSG has: only for those who take them
                    and (command != "TAGMSG" or "message-tags" in state.clients[cid].caps)
                ]
                out.deliver(recipients, line, tags, msgid=msgid)
            else:
                out.deliver_channel(channel, line, tags, msgid=msgid, exclude=client.id)
            if command != "TAGMSG" and not status:
                item = HistoryItem(out.now, msgid, client.prefix, command, text)
                state.history.append(channel.history, item)
                if not channel.logged:  # a channel with history lingers when empty: persisted
                    channel.logged = True
                    out.store_channel(channel)
                out.effects.append(StoreHistory(channel.name, item))
        else:
            other = state.client_by_nick(target)
            if other is None:
                if not quiet:
                    out.numeric(client, n.ERR_NOSUCHNICK, target, "No such nick/channel")
                continue
            if command == "TAGMSG" and "message-tags" not in other.caps:
                continue
            out.deliver([other.id], line, tags, msgid=msgid)
            if command == "PRIVMSG" and other.away is not None:
                out.numeric(client, n.RPL_AWAY, other.target, other.away)
        if echo:
            out.deliver([client.id], line, tags, msgid=msgid)


def privmsg(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """PRIVMSG target[,target] :text (channels, nicks, @#chan for operators)."""
    _message(out, client, msg, "PRIVMSG")


def notice(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """NOTICE target :text (never answered with errors, by RFC)."""
    _message(out, client, msg, "NOTICE")


def tagmsg(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """TAGMSG target (IRCv3 message-tags: typing notifications and such)."""
    if "message-tags" in client.caps:
        _message(out, client, msg, "TAGMSG")


def away(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """AWAY :message sets, AWAY alone clears; away-notify clients in shared channels hear it."""
    text = msg.params[0][: out.state.config.away_length] if msg.params and msg.params[0] else None
    client.away = text
    if text is None:
        out.numeric(client, n.RPL_UNAWAY, "You are no longer marked as being away")
    else:
        out.numeric(client, n.RPL_NOWAWAY, "You have been marked as being away")
    state = out.state
    watchers = [cid for cid in listings.neighbours(out, client) if "away-notify" in state.clients[cid].caps]
    out.deliver(watchers, IRCMessage("AWAY", (text,) if text else (), client.prefix))


def _parse_time(selector: str) -> float | None:
    if not selector.startswith("timestamp="):
        return None
    try:
        value = datetime.datetime.fromisoformat(selector.removeprefix("timestamp=").replace("Z", "+00:00"))
        return value.timestamp()
    except (ValueError, OverflowError, OSError):  # not a time, or one no clock can hold
        return None


def _position(items: list[HistoryItem], selector: str, *, after: bool) -> int | None:
    """Index of the first item after (``after``) or at the selected point, ``None`` if
    the selector is malformed. An unknown msgid selects nothing before/after it."""
    if selector.startswith("msgid="):
        wanted = selector.removeprefix("msgid=")
        for index, item in enumerate(items):
            if item.msgid == wanted:
                return index + 1 if after else index
        return len(items) if after else 0
    moment = _parse_time(selector)
    if moment is None:
        return None
    if after:
        return sum(1 for i in items if i.time <= moment)
    return sum(1 for i in items if i.time < moment)


def chathistory(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """CHATHISTORY LATEST|BEFORE|AFTER <#chan> *|timestamp=...|msgid=... <limit>,
    answered in a ``chathistory`` batch with the original time and msgid of each message.

    Only members may read a channel's history (as in ergo): history is the room's.
    """
    sub, target = msg.params[0].upper(), msg.params[1]
    state = out.state
    channel = state.channel(target)
    if channel is None or client.id not in channel.members:
        out.to(client, "FAIL", "CHATHISTORY", "INVALID_TARGET", target, "Messages could not be retrieved")
        return
    asked = parse_count(msg.params[3] if len(msg.params) > 3 else msg.params[2])
    if asked is None:
        out.to(client, "FAIL", "CHATHISTORY", "INVALID_PARAMS", sub, "Bad limit")
        return
    limit = min(asked, state.config.chathistory_limit)
    items = list(channel.history)
    selector = msg.params[2] if len(msg.params) > 3 else "*"
    if sub not in ("LATEST", "BEFORE", "AFTER") or (selector == "*" and sub != "LATEST"):
        out.to(client, "FAIL", "CHATHISTORY", "INVALID_PARAMS", sub, "Supported: LATEST, BEFORE, AFTER")
        return
    if selector == "*":
        selected = items[-limit:] if limit else []
    else:
        cut = _position(items, selector, after=sub != "BEFORE")
        if cut is None:
            out.to(client, "FAIL", "CHATHISTORY", "INVALID_PARAMS", sub, "Bad msgid= or timestamp=")
            return
        if sub == "BEFORE":
            selected = items[max(0, cut - limit) : cut]
        elif sub == "AFTER":
            selected = items[cut : cut + limit]
        else:  # LATEST after a point: the newest ``limit`` of them
            selected = items[max(cut, len(items) - limit) :]
    # Tags only for clients that negotiated them: a client without message-tags may not
    # parse them, and the batch wrapper needs the batch capability.
    caps = client.caps
    batch = f"h{state.next_msgid(out.now)}" if "batch" in caps else None
    if batch is not None:
        out.to(client, "BATCH", f"+{batch}", "chathistory", channel.name)
    for item in selected:
        tags: dict[str, str] = {}
        if batch is not None:
            tags["batch"] = batch
        if "server-time" in caps:
            tags["time"] = server_time(item.time)
        if "message-tags" in caps:
            tags["msgid"] = item.msgid
        # The original time and msgid of each message, not now's.
        out.effects.append(
            Send((client.id,), IRCMessage(item.command, (channel.name, item.text), item.source, tags))
        )
    if batch is not None:
        out.to(client, "BATCH", f"-{batch}")
    out.work += len(selected)  # replayed lines cost as listed ones do
