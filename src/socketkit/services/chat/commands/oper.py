"""Server operators: OPER (hashed or plain-text passwords, checked off the event loop) and KILL.

``OPER name password`` does not check the password itself: that is a PBKDF2 run, far
too slow for the event loop. It asks for a check (``Outbox.check_password``) and
``checked`` finishes the command when the result comes back. Before that, attempts are
throttled per connection and per address (``session.AttemptThrottle``): a throttled one
is refused at once, never checked, with ERR_PASSWDMISMATCH and how long to wait (the
failure numeric with a "wait" text, as ergo answers throttled logins; ngircd answers 464
and delays the client).
"""

from __future__ import annotations

import math

from socketkit.codec.irc import IRCMessage
from socketkit.services.chat import numerics as n
from socketkit.services.chat.replies import CheckPassword, Outbox
from socketkit.services.chat.session import UNKNOWN_NAME_HASH
from socketkit.services.chat.state import Client

__all__ = ["checked", "kill", "oper"]

TRY_AGAIN = "Please wait a while and try again."


def oper(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """OPER name password: become a server operator (user mode +o), once checked."""
    name, password = msg.params[0], msg.params[1]
    if client.auth_pending is not None:  # one check at a time: no connection hogs the workers
        out.numeric(client, n.RPL_TRYAGAIN, "OPER", TRY_AGAIN)
        out.auth_failed(client, "OPER", name, "a check is already running")
        return
    state = out.state
    wait = state.password_attempts.take(client.key, out.now, client.oper_attempts)
    if wait > 0:
        seconds = math.ceil(wait)
        out.numeric(client, n.ERR_PASSWDMISMATCH, f"Too many OPER attempts; try again in {seconds} s")
        out.auth_failed(client, "OPER", name, f"throttled for {seconds} s")
        return
    stored = state.config.opers.get(name)
    # One answer for an unknown name and a wrong password, in the same time: names are
    # not disclosed.
    if stored is None:
        out.check_password(client, "OPER", name, UNKNOWN_NAME_HASH, password, known=False)
    else:
        out.check_password(client, "OPER", name, stored, password)


def checked(out: Outbox, client: Client, request: CheckPassword, ok: bool | None) -> None:
    """The check an OPER asked for is done (``ok is None``: the server had no room for it)."""
    state = out.state
    if ok is None:
        state.password_attempts.give_back(client.key)  # it was never checked
        client.oper_attempts.give_back()
        out.numeric(client, n.RPL_TRYAGAIN, "OPER", TRY_AGAIN)
        out.auth_failed(client, "OPER", request.name, "the server is busy checking other passwords")
        return
    if not ok:
        out.numeric(client, n.ERR_PASSWDMISMATCH, "Password incorrect")
        out.auth_failed(client, "OPER", request.name, "bad password" if request.known else "no such operator")
        return
    state.password_attempts.give_back(client.key)  # successes do not use up the address's budget
    client.modes.add("o")
    state.operators.add(client.id)
    client.oper_name = request.name
    out.numeric(client, n.RPL_YOUREOPER, "You are now an IRC operator")
    out.deliver([client.id], IRCMessage("MODE", (client.target, "+o"), client.prefix))


def kill(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """KILL nick :reason (operators): disconnect a user."""
    target = out.state.client_by_nick(msg.params[0])
    if target is None:
        out.numeric(client, n.ERR_NOSUCHNICK, msg.params[0], "No such nick/channel")
        return
    reason = f"Killed ({client.target} ({msg.params[1]}))"
    out.deliver([target.id], IRCMessage("KILL", (target.target, reason), client.prefix))
    out.disconnect(target, reason)
