"""The terminal client's logic (pure): what a typed line means, and how each message from
the server reads on screen.

``Conversation`` keeps what the client knows (its nick, the channels it is in, the
window it talks to) and turns input into IRC messages and server messages into
``Line``s for the screen. The I/O (socket, terminal, reconnect timer) is in
``socketkit.services.chat.client``; nothing here reads a clock: times come with the
messages (``server-time``) or from the caller.
"""

from __future__ import annotations

import datetime
import zlib
from dataclasses import dataclass, field
from typing import Final

from socketkit._text import escape_controls, strip_irc_formatting
from socketkit.codec.irc import IRCMessage, casefold, parse_message
from socketkit.errors import ProtocolError

__all__ = [
    "HELP",
    "NICK_COLOURS",
    "NICK_REFUSALS",
    "WANTED_CAPS",
    "Conversation",
    "Line",
    "nick_colour",
    "parse_time_tag",
]

WANTED_CAPS: Final = ("server-time", "echo-message", "multi-prefix", "away-notify", "batch")
"""Capabilities the client asks for when the server offers them."""

NICK_REFUSALS: Final = frozenset({"431", "432", "433", "436", "437"})
"""Numerics that refuse the nick we register with: none given, erroneous, in use, a
collision, temporarily unavailable (RFC 2812). Before the welcome the client cannot go
on without another nick, so it asks for one (or, in line mode, ends)."""

HISTORY_ON_JOIN: Final = 20
"""Messages of channel history shown on joining (servers with draft/chathistory)."""

NICK_COLOURS: Final = (
    "ansicyan",
    "ansigreen",
    "ansiyellow",
    "ansimagenta",
    "ansiblue",
    "ansibrightcyan",
    "ansibrightgreen",
    "ansibrightmagenta",
    "ansibrightyellow",
    "ansibrightblue",
)

HELP: Final = (
    "/join #room [key]   join a room (it becomes the current one)",
    "/part [#room] [why] leave a room",
    "/msg NICK|#room TEXT  say something to someone or somewhere else",
    "/query NICK|#room   talk to them from now on",
    "/me TEXT            an action",
    "/nick NEW           change your nickname",
    "/names [#room]      who is in a room",
    "/topic [TEXT]       show or set the current room's topic",
    "/away [TEXT]        mark yourself away (no text: back)",
    "/whois NICK         about someone",
    "/list               the rooms on the server",
    "/quote LINE         send a raw IRC line",
    "/quit [why]         leave",
)


def nick_colour(nick: str) -> str:
    """The same colour for the same nick, every time and on every machine."""
    return NICK_COLOURS[zlib.crc32(casefold(nick).encode("utf-8", "surrogateescape")) % len(NICK_COLOURS)]


def parse_time_tag(value: str | None) -> float | None:
    """The IRCv3 ``time`` tag as a Unix time (``None`` if missing or malformed)."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Line:
    """One line for the screen.

    Attributes:
        time: when it was said (server time if the server sent it).
        kind: ``message``, ``action``, ``notice``, ``event`` (joins, parts...),
            ``info`` (server replies), ``error``, or ``fatal`` (why the client ends).
        text: what to show.
        nick: who said it (messages, actions, notices).
        target: the room or person it belongs to (``None``: the server).
        own: said by us.
        history: replayed channel history.
    """

    time: float
    kind: str
    text: str
    nick: str | None = None
    target: str | None = None
    own: bool = False
    history: bool = False

    def __post_init__(self) -> None:
        # Everything shown comes from the network: IRC formatting codes are dropped
        # (the display is plain) and any other control character is shown escaped, so
        # no peer can move the cursor, clear the screen or retitle the terminal.
        for name in ("text", "nick", "target"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, escape_controls(strip_irc_formatting(value)))


def _nick_of(source: str | None) -> str:
    return (source or "").split("!", 1)[0]


@dataclass(slots=True)
class Conversation:
    """Client-side IRC state and translation."""

    nick: str
    user: str = "socketkit"
    realname: str = "socketkit chat"
    password: str | None = None
    channels: list[str] = field(default_factory=list)  # joined (or to rejoin), as typed
    current: str | None = None
    registered: bool = False
    caps: set[str] = field(default_factory=set)
    offered_caps: set[str] = field(default_factory=set)
    history_batches: set[str] = field(default_factory=set)
    quitting: bool = False
    refused: str | None = None  # why the server refused our nick before the welcome
    _nick_attempt: int = 0
    _welcomed: bool = False  # a welcome on an earlier connection: a 433 then is our old self

    # --- connection ------------------------------------------------------------------

    def hello(self) -> list[IRCMessage]:
        """What to send on connecting: CAP LS, PASS, NICK, USER."""
        self.registered = False
        self.refused = None
        self.caps.clear()
        self.offered_caps.clear()
        self._nick_attempt = 0
        messages = [IRCMessage("CAP", ("LS", "302"))]
        if self.password:
            messages.append(IRCMessage("PASS", (self.password,)))
        messages += [
            IRCMessage("NICK", (self.nick,)),
            IRCMessage("USER", (self.user, "0", "*", self.realname)),
        ]
        return messages

    # --- typed input ------------------------------------------------------------------

    def command(self, text: str, now: float) -> tuple[list[IRCMessage], list[Line]]:
        """A typed line: IRC messages to send and lines to show (help, errors, own words)."""
        if not text.strip():
            return [], []

        def error(message: str) -> tuple[list[IRCMessage], list[Line]]:
            return [], [Line(now, "error", message)]

        if not text.startswith("/") or text.startswith("//"):
            if self.refused is not None and not self.registered:  # the answer to "type another nickname"
                return self._new_nick(text.strip(), now)
            return self._say(self.current, text[1:] if text.startswith("//") else text, now)
        verb, _, rest = text[1:].partition(" ")
        verb = verb.lower()
        rest = rest.strip()
        args = rest.split()

        if verb in ("join", "j"):
            if not args:
                return error("usage: /join #room [key]")
            room = args[0] if args[0][:1] in "#&" else "#" + args[0]
            self.current = room
            return [IRCMessage("JOIN", (room, *args[1:2]))], []
        if verb in ("part", "leave"):
            leaving = args[0] if args and args[0][:1] in "#&" else self.current
            if leaving is None or not leaving.startswith("#"):
                return error("usage: /part #room [reason]")
            reason = rest[len(args[0]) :].strip() if args and args[0] == leaving else rest
            return [IRCMessage("PART", (leaving, reason) if reason else (leaving,))], []
        if verb in ("msg", "m"):
            if len(args) < 2:
                return error("usage: /msg NICK|#room text")
            return self._say(args[0], rest[len(args[0]) :].lstrip(), now)
        if verb in ("query", "q"):
            if not args:
                return error("usage: /query NICK|#room")
            self.current = args[0]
            return [], [Line(now, "info", f"talking to {args[0]}")]
        if verb == "me":
            if self.current is None or not rest:
                return error("usage: /me does something (in a room or query)")
            return self._say(self.current, f"\x01ACTION {rest}\x01", now)
        if verb == "nick":
            if len(args) != 1:
                return error("usage: /nick NEWNICK")
            return self._new_nick(args[0], now)
        if verb == "names":
            where = args[0] if args else self.current
            if where is None:
                return error("usage: /names #room")
            return [IRCMessage("NAMES", (where,))], []
        if verb == "topic":
            if self.current is None or not self.current.startswith("#"):
                return error("/topic works in a room: /join one first")
            return [IRCMessage("TOPIC", (self.current, rest) if rest else (self.current,))], []
        if verb == "away":
            return [IRCMessage("AWAY", (rest,) if rest else ())], []
        if verb == "whois":
            if not args:
                return error("usage: /whois NICK")
            return [IRCMessage("WHOIS", (args[0],))], []
        if verb == "list":
            return [IRCMessage("LIST", tuple(args[:1]))], []
        if verb in ("quote", "raw"):
            if not rest:
                return error("usage: /quote IRC LINE")
            try:
                return [parse_message(rest)], []
            except ProtocolError as exc:
                return error(f"not an IRC line: {exc}")
        if verb in ("quit", "exit"):
            self.quitting = True
            return [IRCMessage("QUIT", (rest or "Leaving",))], []
        if verb in ("help", "h", "?"):
            return [], [Line(now, "info", line) for line in HELP]
        return error(f"unknown command /{verb} (try /help)")

    def _new_nick(self, nick: str, now: float) -> tuple[list[IRCMessage], list[Line]]:
        if not nick or " " in nick:
            return [], [Line(now, "error", "a nickname is one word: type another one (or /quit)")]
        if not self.registered:  # no NICK echo before the welcome: this is the nick we ask for
            self.nick = nick
            self.refused = None
        return [IRCMessage("NICK", (nick,))], []

    def _say(self, target: str | None, text: str, now: float) -> tuple[list[IRCMessage], list[Line]]:
        if target is None:
            return [], [Line(now, "error", "nowhere to say it: /join #room or /query NICK first")]
        lines = []
        if "echo-message" not in self.caps:  # otherwise the server's echo shows it, once delivered
            lines.append(self._said(target, self.nick, text, now, own=True))
        return [IRCMessage("PRIVMSG", (target, text))], lines

    def _said(
        self,
        target: str,
        nick: str,
        text: str,
        when: float,
        *,
        own: bool,
        history: bool = False,
        notice: bool = False,
    ) -> Line:
        if text.startswith("\x01ACTION ") and text.endswith("\x01"):
            return Line(when, "action", text[8:-1], nick, target, own, history)
        return Line(when, "notice" if notice else "message", text, nick, target, own, history)

    # --- from the server ------------------------------------------------------------

    def receive(self, msg: IRCMessage, now: float) -> tuple[list[IRCMessage], list[Line]]:
        """A message from the server: replies to send (PONG, CAP...) and lines to show."""
        when = parse_time_tag(msg.tags.get("time")) or now
        verb = msg.verb
        params = msg.params
        nick = _nick_of(msg.source)
        me = casefold(nick) == casefold(self.nick)
        out: list[IRCMessage] = []
        lines: list[Line] = []
        if verb == "PING":
            out.append(IRCMessage("PONG", params[-1:]))
        elif verb == "CAP" and len(params) >= 3:
            out += self._cap(params)
        elif verb == "001":
            self.registered = self._welcomed = True
            self.refused = None
            self.nick = params[0]
            lines.append(Line(when, "info", params[-1]))
            for room in self.channels:
                out.append(IRCMessage("JOIN", (room,)))
        elif verb in NICK_REFUSALS and not self.registered and not (verb == "433" and self._welcomed):
            # The first registration: ask (the caller may end instead: line mode).
            self.refused = f"the server refused the nickname {self.nick!r}: {params[-1] if params else verb}"
            lines.append(Line(when, "error", self.refused))
            lines.append(Line(when, "info", "type another nickname (or /nick NEWNICK, /quit)"))
        elif verb == "433" and not self.registered:
            # Reconnecting: the server may not have noticed yet that our old connection is
            # gone, and it holds the nick; take another one rather than stop.
            self._nick_attempt += 1
            self.nick = f"{self.nick.rstrip('_')}{'_' * self._nick_attempt}"
            out.append(IRCMessage("NICK", (self.nick,)))
            lines.append(Line(when, "error", f"nickname in use, trying {self.nick}"))
        elif verb in ("PRIVMSG", "NOTICE") and len(params) >= 2:
            target = params[0]
            history = msg.tags.get("batch") in self.history_batches
            where = target if target.startswith(("#", "&")) else (target if me else nick)
            if "!" not in (msg.source or ""):  # from the server itself
                lines.append(Line(when, "notice", params[1], msg.source, None))
            else:
                lines.append(
                    self._said(where, nick, params[1], when, own=me, history=history, notice=verb == "NOTICE")
                )
        elif verb == "BATCH" and params:
            ref = params[0]
            if ref.startswith("+") and len(params) > 1 and params[1] == "chathistory":
                self.history_batches.add(ref[1:])
            elif ref.startswith("-"):
                self.history_batches.discard(ref[1:])
        elif verb == "JOIN" and params:
            room = params[0]
            if me:
                if not any(casefold(c) == casefold(room) for c in self.channels):
                    self.channels.append(room)
                if self.current is None or casefold(self.current) == casefold(room):
                    self.current = room
                if "draft/chathistory" in self.caps:
                    out.append(IRCMessage("CHATHISTORY", ("LATEST", room, "*", str(HISTORY_ON_JOIN))))
            lines.append(Line(when, "event", f"{nick} joined {room}", nick, room))
        elif verb == "PART" and params:
            room = params[0]
            if me:
                self._forget(room)
            why = f" ({params[1]})" if len(params) > 1 and params[1] else ""
            lines.append(Line(when, "event", f"{nick} left {room}{why}", nick, room))
        elif verb == "KICK" and len(params) >= 2:
            room, victim = params[0], params[1]
            if casefold(victim) == casefold(self.nick):
                self._forget(room)
            why = f" ({params[2]})" if len(params) > 2 else ""
            lines.append(Line(when, "event", f"{nick} kicked {victim} from {room}{why}", nick, room))
        elif verb == "QUIT":
            why = f" ({params[0]})" if params else ""
            lines.append(Line(when, "event", f"{nick} quit{why}", nick))
        elif verb == "NICK" and params:
            if me:
                self.nick = params[0]
            lines.append(Line(when, "event", f"{nick} is now known as {params[0]}", nick))
        elif verb == "TOPIC" and len(params) >= 2:
            lines.append(
                Line(when, "event", f"{nick} set the topic of {params[0]}: {params[1]}", nick, params[0])
            )
        elif verb == "332" and len(params) >= 3:
            lines.append(Line(when, "info", f"topic of {params[1]}: {params[2]}", target=params[1]))
        elif verb == "353" and len(params) >= 4:
            lines.append(Line(when, "info", f"in {params[2]}: {params[3]}", target=params[2]))
        elif verb in ("366", "333", "329", "315", "318", "369", "321", "376", "005", "004", "003"):
            pass  # ends of lists and machine-readable details: nothing worth a line
        elif verb == "322" and len(params) >= 3:
            topic = f": {params[3]}" if len(params) > 3 and params[3] else ""
            lines.append(Line(when, "info", f"{params[1]} ({params[2]} users){topic}"))
        elif verb == "INVITE" and len(params) >= 2:
            lines.append(Line(when, "event", f"{nick} invites you to {params[1]} (/join {params[1]})", nick))
        elif verb == "AWAY":
            state = f"is away: {params[0]}" if params else "is back"
            lines.append(Line(when, "event", f"{nick} {state}", nick))
        elif verb == "ERROR":
            lines.append(Line(when, "error", params[0] if params else "the server closed the link"))
        elif verb == "FAIL" and len(params) >= 2:
            lines.append(Line(when, "error", f"{params[0]} failed: {params[-1]}"))
        elif verb.isdigit() and len(params) >= 2:
            kind = "error" if verb[0] in "45" else "info"
            detail = " ".join(params[1:-1])
            text = f"{detail}: {params[-1]}" if detail else params[-1]
            lines.append(Line(when, kind, text))
        return out, lines

    def _cap(self, params: tuple[str, ...]) -> list[IRCMessage]:
        sub = params[1].upper()
        if sub == "LS":
            more = len(params) > 3 and params[2] == "*"
            self.offered_caps.update(name.split("=", 1)[0] for name in params[-1].split())
            if more:
                return []
            wanted = [c for c in (*WANTED_CAPS, "draft/chathistory") if c in self.offered_caps]
            if wanted and not self.registered:
                return [IRCMessage("CAP", ("REQ", " ".join(wanted)))]
            return [IRCMessage("CAP", ("END",))] if not self.registered else []
        if sub in ("ACK", "NAK"):
            if sub == "ACK":
                for name in params[-1].split():
                    if name.startswith("-"):
                        self.caps.discard(name[1:])
                    else:
                        self.caps.add(name)
            return [IRCMessage("CAP", ("END",))] if not self.registered else []
        return []

    def _forget(self, room: str) -> None:
        self.channels = [c for c in self.channels if casefold(c) != casefold(room)]
        if self.current is not None and casefold(self.current) == casefold(room):
            self.current = self.channels[-1] if self.channels else None
