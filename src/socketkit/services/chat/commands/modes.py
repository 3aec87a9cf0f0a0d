"""MODE: channel modes (o, v, b, k, l, P, i, m, n, s, t) and user modes (i, o).

``+P`` (registered: the channel is kept empty and across restarts, see ``registry``)
is ngircd's persistent mode, and as there only IRC operators may set or remove it:
anyone else could otherwise keep channels for good.
"""

from __future__ import annotations

from socketkit.codec.irc import IRCMessage, casefold
from socketkit.services.chat import numerics as n
from socketkit.services.chat.names import normalize_mask, parse_count, safe_name_text
from socketkit.services.chat.replies import Outbox
from socketkit.services.chat.state import CHANNEL_FLAG_MODES, Channel, Client

__all__ = ["mode"]

_PARAM_ALWAYS = "ovbk"  # take a parameter when set and when unset (-k takes one, ignored)
_PARAM_WHEN_SET = "l"


def mode(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """MODE target [modes [params...]]."""
    target = msg.params[0]
    if target.startswith("#"):
        _channel_mode(out, client, msg)
    else:
        _user_mode(out, client, msg)


def _user_mode(out: Outbox, client: Client, msg: IRCMessage) -> None:
    if casefold(msg.params[0]) != casefold(client.target):
        if out.state.client_by_nick(msg.params[0]) is None:
            out.numeric(client, n.ERR_NOSUCHNICK, msg.params[0], "No such nick/channel")
        else:
            out.numeric(client, n.ERR_USERSDONTMATCH, "Can't change mode for other users")
        return
    if len(msg.params) < 2:
        out.numeric(client, n.RPL_UMODEIS, "+" + "".join(sorted(client.modes)))
        return
    adding = True
    changed = ""
    sign = ""
    unknown = False
    for char in msg.params[1]:
        if char in "+-":
            adding = char == "+"
            continue
        if char == "i":
            if adding != ("i" in client.modes):
                (client.modes.add if adding else client.modes.discard)("i")
                if sign != ("+" if adding else "-"):
                    sign = "+" if adding else "-"
                    changed += sign
                changed += "i"
        elif char == "o":
            if not adding and "o" in client.modes:  # dropping oper is allowed; gaining needs OPER
                client.modes.discard("o")
                out.state.operators.discard(client.id)
                if sign != "-":
                    sign = "-"
                    changed += sign
                changed += "o"
        else:
            unknown = True
    if unknown:
        out.numeric(client, n.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
    if changed:
        out.deliver([client.id], IRCMessage("MODE", (client.target, changed), client.prefix))


def _channel_mode(out: Outbox, client: Client, msg: IRCMessage) -> None:
    state = out.state
    channel = state.channel(msg.params[0])
    if channel is None:
        out.numeric(client, n.ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
        return
    member = channel.members.get(client.id)
    if len(msg.params) < 2:
        out.numeric(
            client, n.RPL_CHANNELMODEIS, channel.name, *channel.mode_string(show_key=member is not None)
        )
        out.numeric(client, n.RPL_CREATIONTIME, channel.name, str(int(channel.created)))
        return
    modestring, args = msg.params[1], list(msg.params[2:])
    if modestring.lstrip("+") in ("b", "") and not args:  # the ban list query anyone may make
        for mask, setter, when in channel.bans:
            out.numeric(client, n.RPL_BANLIST, channel.name, mask, setter, str(int(when)))
        out.numeric(client, n.RPL_ENDOFBANLIST, channel.name, "End of channel ban list")
        return
    if member is None or "o" not in member:
        code = n.ERR_NOTONCHANNEL if member is None else n.ERR_CHANOPRIVSNEEDED
        text = "You're not on that channel" if member is None else "You're not channel operator"
        out.numeric(client, code, channel.name, text)
        return
    applied_modes, applied_args = _apply(out, client, channel, modestring, args)
    if applied_modes:
        out.deliver(
            channel.members, IRCMessage("MODE", (channel.name, applied_modes, *applied_args), client.prefix)
        )
        out.store_channel(channel)


def _apply(
    out: Outbox, client: Client, channel: Channel, modestring: str, args: list[str]
) -> tuple[str, list[str]]:
    """Apply the changes one by one; return the changes actually made (for the broadcast)."""
    state, config = out.state, out.state.config
    adding = True
    changes: list[tuple[bool, str, str | None]] = []
    with_param = 0
    for char in modestring:
        if char in "+-":
            adding = char == "+"
            continue
        needs_param = char in _PARAM_ALWAYS or (adding and char in _PARAM_WHEN_SET)
        param = None
        if needs_param:
            if char == "b" and not args:
                for mask, setter, when in channel.bans:
                    out.numeric(client, n.RPL_BANLIST, channel.name, mask, setter, str(int(when)))
                out.numeric(client, n.RPL_ENDOFBANLIST, channel.name, "End of channel ban list")
                continue
            if not args:
                if not (char == "k" and not adding):
                    out.numeric(client, n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
                    continue
            else:
                param = args.pop(0)
            with_param += 1
            if with_param > config.modes_per_command:
                break
        if char in CHANNEL_FLAG_MODES:
            if char == "P" and "o" not in client.modes:
                out.numeric(client, n.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
                continue
            if adding != (char in channel.modes):
                (channel.modes.add if adding else channel.modes.discard)(char)
                changes.append((adding, char, None))
                if char == "P":
                    state.table.registration_changed(channel)
        elif char in "ov":
            assert param is not None
            target = state.client_by_nick(param)
            if target is None:
                out.numeric(client, n.ERR_NOSUCHNICK, param, "No such nick/channel")
                continue
            modes = channel.members.get(target.id)
            if modes is None:
                out.numeric(
                    client, n.ERR_USERNOTINCHANNEL, target.target, channel.name, "They aren't on that channel"
                )
                continue
            if adding != (char in modes):
                (modes.add if adding else modes.discard)(char)
                changes.append((adding, char, target.target))
        elif char == "b":
            assert param is not None
            mask = normalize_mask(param)
            existing = [b for b in channel.bans if casefold(b[0]) == casefold(mask)]
            if adding and not existing:
                if len(channel.bans) >= config.max_bans:
                    out.numeric(client, "478", channel.name, mask, "Channel ban list is full")
                    continue
                channel.bans.append((mask, client.prefix, out.now))
                changes.append((True, "b", mask))
            elif not adding and existing:
                channel.bans.remove(existing[0])
                changes.append((False, "b", existing[0][0]))
        elif char == "k":
            if adding:
                assert param is not None
                if not param or "," in param or not safe_name_text(param):
                    out.numeric(client, n.ERR_INVALIDKEY, channel.name, "Key is not well-formed")
                    continue
                channel.key = param
                changes.append((True, "k", param))
            elif channel.key:
                channel.key = None
                changes.append((False, "k", "*"))
        elif char == "l":
            if adding:
                assert param is not None
                limit = parse_count(param)
                if limit is None or limit < 1:
                    out.numeric(client, n.ERR_INVALIDMODEPARAM, channel.name, "l", param, "Invalid limit")
                    continue
                channel.limit = limit
                changes.append((True, "l", str(limit)))
            elif channel.limit is not None:
                channel.limit = None
                changes.append((False, "l", None))
        else:
            out.numeric(client, n.ERR_UNKNOWNMODE, char, "is unknown mode char to me")
    return _render(changes)


def _render(changes: list[tuple[bool, str, str | None]]) -> tuple[str, list[str]]:
    modestring = ""
    params: list[str] = []
    sign = None
    for adding, char, param in changes:
        if adding != sign:
            modestring += "+" if adding else "-"
            sign = adding
        modestring += char
        if param is not None:
            params.append(param)
    return modestring, params
