"""Server operators: OPER (hashed or plain-text passwords) and KILL."""

from __future__ import annotations

from socketkit.codec.irc import IRCMessage
from socketkit.services.chat import numerics as n
from socketkit.services.chat.replies import Outbox
from socketkit.services.chat.session import verify_password
from socketkit.services.chat.state import Client

__all__ = ["kill", "oper"]


def oper(out: Outbox, client: Client, msg: IRCMessage) -> None:
    """OPER name password: become a server operator (user mode +o)."""
    name, password = msg.params[0], msg.params[1]
    stored = out.state.config.opers.get(name)
    # One answer for an unknown name and a wrong password: names are not disclosed.
    if stored is None or not verify_password(stored, password):
        out.numeric(client, n.ERR_PASSWDMISMATCH, "Password incorrect")
        return
    client.modes.add("o")
    out.state.operators.add(client.id)
    client.oper_name = name
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
