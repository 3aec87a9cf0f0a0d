"""Registration (CAP, PASS, NICK, USER), the welcome burst, PING/PONG, QUIT, MOTD, LUSERS.

The connection password is checked once, when NICK and USER (and CAP END) are in, with
the last PASS sent (modern.ircdocs: only the last one counts): the check runs off the
event loop (``Outbox.check_password``) and registration resumes in ``pass_checked``.
"""

from __future__ import annotations

import math

from socketkit.codec.irc import IRCMessage, casefold
from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands import listings
from socketkit.services.chat.commands.channels import forget_if_unused
from socketkit.services.chat.history import WhowasEntry
from socketkit.services.chat.names import parse_count, valid_nick, valid_username
from socketkit.services.chat.replies import SUPPORTED_CAPS, CheckPassword, Outbox
from socketkit.services.chat.state import Client

__all__ = [
    "cap",
    "lusers",
    "motd",
    "nick",
    "pass_",
    "pass_checked",
    "ping",
    "pong",
    "quit",
    "remove_client",
    "user",
]

VERSION = "socketkit-0.1"
USER_MODES = "io"
CHANNEL_MODES = "Pbiklmnostv"


def _isupport(out: Outbox) -> list[str]:
    c = out.state.config
    return [
        "CASEMAPPING=rfc1459",
        "CHANTYPES=#",
        "CHANMODES=b,k,l,Pimnst",
        "PREFIX=(ov)@+",
        f"NICKLEN={c.nick_length}",
        f"CHANNELLEN={c.channel_length}",
        f"TOPICLEN={c.topic_length}",
        f"AWAYLEN={c.away_length}",
        f"KICKLEN={c.kick_length}",
        f"MODES={c.modes_per_command}",
        f"CHANLIMIT=#:{c.max_channels_per_client}",
        f"MAXTARGETS={c.max_targets}",
        f"MAXLIST=b:{c.max_bans}",
        f"NETWORK={c.network}",
        f"CHATHISTORY={c.chathistory_limit}",
        "STATUSMSG=@+",
        "SAFELIST",  # LIST is made a page at a time, as the client reads it
        "UTF8ONLY",  # lines that are not UTF-8 are refused (FAIL ... INVALID_UTF8)
    ]


def cap(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """CAP LS [302] / LIST / REQ :caps / END: IRCv3 capability negotiation."""
    sub = msg.params[0].upper()
    if sub == "LS":
        if not client.registered:
            client.cap_negotiating = True
        version = parse_count(msg.params[1]) if len(msg.params) > 1 else None
        if version is not None:
            client.cap_version = max(client.cap_version, version)
        out.to(client, "CAP", client.target, "LS", " ".join(SUPPORTED_CAPS))
    elif sub == "LIST":
        out.to(client, "CAP", client.target, "LIST", " ".join(sorted(client.caps)))
    elif sub == "REQ":
        if not client.registered:
            client.cap_negotiating = True
        wanted = msg.params[1].split() if len(msg.params) > 1 else []
        names = [w.removeprefix("-") for w in wanted]
        if all(name in SUPPORTED_CAPS for name in names):  # all or nothing
            caps = set(client.caps)
            for w in wanted:
                if w.startswith("-"):
                    caps.discard(w[1:])
                else:
                    caps.add(w)
            client.set_caps(caps)
            for key in client.channels:  # its channels deliver it another variant now
                channel = out.state.channels.get(key)
                if channel is not None:
                    channel.groups = None
            out.to(client, "CAP", client.target, "ACK", " ".join(wanted))
        else:
            out.to(client, "CAP", client.target, "NAK", " ".join(wanted))
    elif sub == "END":
        if client.cap_negotiating:
            client.cap_negotiating = False
            _try_register(out, client)
    else:
        out.numeric(client, "410", sub, "Invalid CAP command")


def pass_(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """PASS password: the connection password, before NICK/USER."""
    if client.registered:
        out.numeric(client, n.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    if out.state.config.password is not None:
        client.pass_attempt = msg.params[0]  # checked at registration (a PBKDF2 check is slow)


def pass_checked(out: Outbox, client: Client, request: CheckPassword, ok: bool | None) -> None:
    """The connection password check is done (``ok is None``: the server had no room)."""
    throttle = out.state.password_attempts
    if ok is None:
        throttle.give_back(client.key)
        out.numeric(client, n.RPL_TRYAGAIN, "PASS", "Please wait a while and try again.")
        out.auth_failed(client, "PASS", "", "the server is busy checking other passwords")
        out.disconnect(client, "Server busy, try again later")
        return
    if not ok:
        out.numeric(client, n.ERR_PASSWDMISMATCH, "Password incorrect")
        out.auth_failed(client, "PASS", "", "bad password")
        out.disconnect(client, "Bad password")
        return
    throttle.give_back(client.key)  # successes do not use up the address's budget
    client.password_ok = True
    _try_register(out, client)


def nick(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """NICK newnick: choose or change a nickname."""
    if not msg.params or not msg.params[0]:
        out.numeric(client, n.ERR_NONICKNAMEGIVEN, "No nickname given")
        return
    state = out.state
    new = msg.params[0]
    if not valid_nick(new, state.config.nick_length):
        out.numeric(client, n.ERR_ERRONEUSNICKNAME, new, "Erroneous nickname")
        return
    key = casefold(new)
    holder = state.nicks.get(key)
    if holder is not None and holder != client.id:
        out.numeric(client, n.ERR_NICKNAMEINUSE, new, "Nickname is already in use")
        return
    if client.nick == new:
        return
    if not client.registered:
        client.nick = new
        _try_register(out, client)
        return
    old_prefix = client.prefix
    assert client.nick is not None
    state.whowas.add(WhowasEntry(client.nick, client.user or "", client.host, client.realname, out.now))
    state.release_nick(client.nick)
    state.claim_nick(new, client.id)
    client.nick = new
    out.deliver([client.id, *listings.neighbours(out, client)], IRCMessage("NICK", (new,), old_prefix))


def user(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """USER username 0 * :realname."""
    if client.registered:
        out.numeric(client, n.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    username = msg.params[0][:10]
    if not username:
        out.numeric(client, n.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
        return
    if not valid_username(username):  # it is part of nick!user@host, shown to everyone
        out.numeric(client, n.ERR_INVALIDUSERNAME, "USER", "Malformed username")
        return
    client.user = "~" + username if not username.startswith("~") else username
    client.realname = msg.params[3]
    _try_register(out, client)


def _try_register(out: Outbox, client: Client) -> None:
    if client.registered or client.nick is None or client.user is None or client.cap_negotiating:
        return
    state = out.state
    if not client.password_ok:
        _check_connection_password(out, client)
        return
    key = casefold(client.nick)
    if state.nicks.get(key, client.id) != client.id:  # taken while we negotiated
        out.numeric(client, n.ERR_NICKNAMEINUSE, client.nick, "Nickname is already in use")
        client.nick = None
        return
    state.claim_nick(client.nick, client.id)
    client.registered = True
    config = state.config
    out.numeric(client, n.RPL_WELCOME, f"Welcome to the {config.network} IRC network {client.prefix}")
    out.numeric(client, n.RPL_YOURHOST, f"Your host is {config.server_name}, running version {VERSION}")
    out.numeric(client, n.RPL_CREATED, "This server was created at start-up")
    out.numeric(client, n.RPL_MYINFO, config.server_name, VERSION, USER_MODES, CHANNEL_MODES, "bklov")
    tokens = _isupport(out)
    for i in range(0, len(tokens), 12):
        out.numeric(client, n.RPL_ISUPPORT, *tokens[i : i + 12], "are supported by this server")
    lusers(out, client, IRCMessage("LUSERS"))
    motd(out, client, IRCMessage("MOTD"))


def _check_connection_password(out: Outbox, client: Client) -> None:
    """Start the check of the PASS sent (registration goes on in ``pass_checked``)."""
    if client.auth_pending is not None:  # running already: the result finishes registration
        return
    attempt, client.pass_attempt = client.pass_attempt, None
    password = out.state.config.password
    if attempt is None or password is None:
        out.numeric(client, n.ERR_PASSWDMISMATCH, "Password incorrect")
        out.auth_failed(client, "PASS", "", "no password sent")
        out.disconnect(client, "Bad password")
        return
    wait = out.state.password_attempts.take(client.key, out.now)
    if wait > 0:
        seconds = math.ceil(wait)
        out.numeric(client, n.ERR_PASSWDMISMATCH, f"Too many password attempts; try again in {seconds} s")
        out.auth_failed(client, "PASS", "", f"throttled for {seconds} s")
        out.disconnect(client, "Too many password attempts")
        return
    out.check_password(client, "PASS", "", password, attempt)


def lusers(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """LUSERS: counts of users, operators, channels."""
    state = out.state
    users = state.registered_count
    out.numeric(client, n.RPL_LUSERCLIENT, f"There are {users} users and 0 invisible on 1 servers")
    out.numeric(client, n.RPL_LUSEROP, str(state.operator_count), "operator(s) online")
    unknown = len(state.clients) - users
    if unknown:
        out.numeric(client, n.RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)")
    out.numeric(client, n.RPL_LUSERCHANNELS, str(len(state.channels)), "channels formed")
    out.numeric(client, n.RPL_LUSERME, f"I have {users} clients and 0 servers")
    out.numeric(client, n.RPL_LOCALUSERS, str(users), str(users), f"Current local users {users}")
    out.numeric(client, n.RPL_GLOBALUSERS, str(users), str(users), f"Current global users {users}")


def motd(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """MOTD: the message of the day."""
    lines = out.state.config.motd
    if not lines:
        out.numeric(client, n.ERR_NOMOTD, "MOTD File is missing")
        return
    out.numeric(client, n.RPL_MOTDSTART, f"- {out.server} Message of the day - ")
    for line in lines:
        out.numeric(client, n.RPL_MOTD, f"- {line}")
    out.work += len(lines)  # a long MOTD costs what its lines cost
    out.numeric(client, n.RPL_ENDOFMOTD, "End of /MOTD command.")


def ping(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """PING token: answered with PONG."""
    out.to(client, "PONG", out.server, msg.params[0])


def pong(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """PONG [server] token: the answer to our PING (any PONG counts as a sign of life)."""
    client.ping_token = None


def quit(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """QUIT [:reason]."""
    reason = msg.params[0] if msg.params else "Client quit"
    out.disconnect(client, f"Quit: {reason}"[:200])


def remove_client(out: Outbox, client: Client, reason: str) -> None:
    """Take a client out of the state: QUIT to those who share a channel, nick freed."""
    state = out.state
    if client.id not in state.clients:
        return
    if client.registered and client.nick is not None:
        out.deliver(state.neighbours(client), IRCMessage("QUIT", (reason,), client.prefix))
        state.whowas.add(WhowasEntry(client.nick, client.user or "", client.host, client.realname, out.now))
        if state.nicks.get(casefold(client.nick)) == client.id:
            state.release_nick(client.nick)
    for key in list(client.channels):
        channel = state.channels.get(key)
        if channel is None:
            continue
        channel.remove_member(client.id)
        forget_if_unused(out, channel)
    client.channels.clear()
    del state.clients[client.id]
    state.operators.discard(client.id)
