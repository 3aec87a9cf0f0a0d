"""The command table and the entry points the glue calls (pure).

``handle(state, client, message, now)`` checks once, for every command, what ergo's
``Command`` table checks: is the client registered (or is the command allowed before
registration), are there enough parameters, is it an operator command; then calls the
handler, which fills an ``Outbox``, and charges the work it did beyond its line (a
page of a listing) to the client's flood budget. ``connect``, ``disconnect`` and
``tick`` (pings, timeouts, expired channels) complete the set, with
``password_checked`` (the follow-up of a ``CheckPassword`` effect), ``resume`` (the
next page of a listing) and the answers to lines the codec refused. Nothing here
touches a socket or reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from socketkit.codec.irc import IRCMessage
from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands import channels, listings, messaging, modes, oper, queries, registration
from socketkit.services.chat.replies import CheckPassword, Effect, ListingPending, Outbox
from socketkit.services.chat.state import ChatState, Client

__all__ = [
    "CHECKED",
    "COMMANDS",
    "Command",
    "connect",
    "disconnect",
    "forbidden_character",
    "handle",
    "input_too_long",
    "invalid_text",
    "password_checked",
    "resume",
    "tick",
]

Handler = Callable[[Outbox, Client, IRCMessage], None]
CheckedHandler = Callable[[Outbox, Client, CheckPassword, bool | None], None]


@dataclass(frozen=True, slots=True)
class Command:
    """One command: its handler and the checks made before it runs."""

    handler: Handler
    min_params: int = 0
    pre_registration: bool = False
    oper_only: bool = False
    idle_resets: bool = True  # counts as activity for WHOIS idle (PING/PONG do not)


COMMANDS: dict[str, Command] = {
    "CAP": Command(registration.cap, 1, pre_registration=True),
    "PASS": Command(registration.pass_, 1, pre_registration=True),
    "NICK": Command(registration.nick, 0, pre_registration=True),
    "USER": Command(registration.user, 4, pre_registration=True),
    "PING": Command(registration.ping, 1, pre_registration=True, idle_resets=False),
    "PONG": Command(registration.pong, 0, pre_registration=True, idle_resets=False),
    "QUIT": Command(registration.quit, 0, pre_registration=True),
    "MOTD": Command(registration.motd),
    "LUSERS": Command(registration.lusers),
    "PRIVMSG": Command(messaging.privmsg),
    "NOTICE": Command(messaging.notice),
    "TAGMSG": Command(messaging.tagmsg, 1),
    "AWAY": Command(messaging.away),
    "CHATHISTORY": Command(messaging.chathistory, 3),
    "JOIN": Command(channels.join, 1),
    "PART": Command(channels.part, 1),
    "TOPIC": Command(channels.topic, 1),
    "NAMES": Command(channels.names),
    "LIST": Command(channels.list_),
    "KICK": Command(channels.kick, 2),
    "INVITE": Command(channels.invite, 2),
    "MODE": Command(modes.mode, 1),
    "WHO": Command(queries.who),
    "WHOIS": Command(queries.whois, 1),
    "WHOWAS": Command(queries.whowas, 1),
    "ISON": Command(queries.ison, 1),
    "USERHOST": Command(queries.userhost, 1),
    "VERSION": Command(queries.version),
    "TIME": Command(queries.time_),
    "OPER": Command(oper.oper, 2),
    "KILL": Command(oper.kill, 2, oper_only=True),
}


CHECKED: dict[str, CheckedHandler] = {
    "OPER": oper.checked,
    "PASS": registration.pass_checked,
}
"""What finishes a command once its password check is done, by ``CheckPassword.purpose``."""


def connect(state: ChatState, client_id: int, host: str, now: float, key: str = "") -> Client:
    """Register a new connection (not yet a registered user); ``key`` is who it is for
    per-peer rules (the engine's ``conn.limit_key``; by default its host's)."""
    client = Client(client_id, host, now, last_active=now, last_seen=now, key=key)
    client.flood.configure(state.config.flood_burst, state.config.flood_rate)
    client.flood.updated = now
    client.password_ok = state.config.password is None
    state.clients[client_id] = client
    return client


def handle(state: ChatState, client: Client, message: IRCMessage, now: float) -> list[Effect]:
    """Run one message from ``client``; return the effects, in order."""
    out = Outbox(state, now)
    verb = message.verb
    client.last_seen = now
    command = COMMANDS.get(verb)
    if command is None:
        if client.registered:
            out.numeric(client, n.ERR_UNKNOWNCOMMAND, message.command, "Unknown command")
        else:
            out.numeric(client, n.ERR_NOTREGISTERED, "You have not registered")
        return out.effects
    if not client.registered and not command.pre_registration:
        out.numeric(client, n.ERR_NOTREGISTERED, "You have not registered")
        return out.effects
    if len(message.params) < command.min_params:
        out.numeric(client, n.ERR_NEEDMOREPARAMS, verb, "Not enough parameters")
        return out.effects
    if command.oper_only and "o" not in client.modes:
        out.numeric(client, n.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
        return out.effects
    if command.idle_resets:
        client.last_active = now
    command.handler(out, client, message)
    _settle(out, client)
    return out.effects


def _settle(out: Outbox, client: Client) -> None:
    """Charge the work done for ``client`` beyond its line, and say if more is to come."""
    if out.work:
        client.flood.spend(out.work / listings.WORK_PER_TOKEN, out.now)
    if client.listings and client.id in out.state.clients:
        out.effects.append(ListingPending(client.id))


def resume(state: ChatState, client: Client, now: float, budget: int = listings.LISTING_PAGE) -> list[Effect]:
    """The next page (``budget`` units of work) of the client's waiting listings."""
    out = Outbox(state, now)
    listings.run(out, client, budget)
    _settle(out, client)
    return out.effects


def input_too_long(state: ChatState, client: Client, now: float) -> list[Effect]:
    """The client sent an over-long line: ERR_INPUTTOOLONG, and it stays connected."""
    out = Outbox(state, now)
    out.numeric(client, n.ERR_INPUTTOOLONG, "Input line was too long")
    return out.effects


def password_checked(state: ChatState, request: CheckPassword, ok: bool | None, now: float) -> list[Effect]:
    """The result of a ``CheckPassword`` effect: ``True``/``False``, or ``None`` when the
    server could not check it (every worker busy and the queue full). Nothing happens
    if the client has left meanwhile."""
    out = Outbox(state, now)
    client = state.clients.get(request.id)
    if client is None:
        return out.effects
    client.auth_pending = None
    CHECKED[request.purpose](out, client, request, ok)
    return out.effects


def forbidden_character(state: ChatState, client: Client, now: float) -> list[Effect]:
    """The client sent a line holding NUL or a bare CR: refused, and it stays connected.

    ERR_UNKNOWNERROR (400), the generic "could not process" numeric every client shows,
    with ``*`` for the command (the line was not parsed, as ergo answers lines it cannot
    take): a FAIL standard reply would need a command and a registered code, and none
    exists for this; stripping the characters (which ircdocs allows for some input)
    would deliver text the sender never wrote.
    """
    out = Outbox(state, now)
    out.numeric(client, n.ERR_UNKNOWNERROR, "*", "Line refused: NUL and CR are not allowed inside a message")
    return out.effects


def invalid_text(state: ChatState, client: Client, command: str, now: float) -> list[Effect]:
    """The client sent a line that is not UTF-8: refused, and it stays connected.

    IRCv3 ``UTF8ONLY`` (advertised in ISUPPORT): ``FAIL <command> INVALID_UTF8``, and
    the line is neither relayed nor stored. Text stays text everywhere after the codec
    (SQLite, logs, every client's screen), with no undecodable byte to carry along.
    """
    out = Outbox(state, now)
    out.to(client, "FAIL", command, "INVALID_UTF8", "Message refused: this server accepts UTF-8 text only")
    return out.effects


def disconnect(state: ChatState, client: Client, reason: str, now: float) -> list[Effect]:
    """The connection is gone (or is being closed): tell its channels, free its nick."""
    out = Outbox(state, now)
    registration.remove_client(out, client, reason)
    return out.effects


def tick(state: ChatState, now: float) -> list[Effect]:
    """Periodic duties: PING quiet clients, drop those that do not answer or never
    register, forget channels empty for longer than ``empty_channel_ttl_s``."""
    out = Outbox(state, now)
    config = state.config
    for channel in state.table.expired(now):
        channels.drop(out, channel)
    for client in list(state.clients.values()):
        if not client.registered:
            if now - client.connected_at > config.registration_timeout_s:
                out.disconnect(client, "Registration timed out")
            continue
        if client.ping_token is not None:
            if now - client.ping_sent_at > config.ping_timeout_s:
                out.disconnect(client, f"Ping timeout: {int(now - client.last_seen)} seconds")
        elif now - client.last_seen > config.ping_interval_s:
            client.ping_token = f"{int(now)}"
            client.ping_sent_at = now
            out.to(client, "PING", client.ping_token)
    return out.effects
