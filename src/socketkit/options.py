"""Service options, declared once: each option's default, unit, help text and check.

A service declares its options as a frozen dataclass whose fields are made with
``option(...)``; the command line's flags (``socketkit.runtime.flags``), the
configuration file and the environment (``socketkit.runtime.config``) are all derived
from that declaration, so a default or a limit is never written twice. A ``Kind`` says
how a value is read from text (a flag, an environment variable) and from TOML, and how
it is shown; the checks raise ``ValueError`` with a sentence a user can act on.

Pure: no I/O, no clock, nothing but the standard library.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from socketkit.address import parse_port
from socketkit.limits import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_SHUTDOWN_GRACE_S,
    DEFAULT_STATE_DIR,
    MAX_WORKERS,
    MAX_WORKERS_CEILING,
    MAX_WORKERS_PER_CPU,
)

__all__ = [
    "CHOICE",
    "COUNT",
    "FLAG",
    "MAX_SECONDS",
    "MAX_SIZE",
    "NAMES",
    "PATH",
    "PORT",
    "RATE",
    "SECONDS",
    "SIZE",
    "TEXT",
    "WORKERS",
    "IdleOption",
    "Kind",
    "ListenOptions",
    "OptionInfo",
    "RootOption",
    "StateOption",
    "UdpOption",
    "UnixOption",
    "WorkersOption",
    "choice",
    "declared",
    "option",
    "port_option",
]

MAX_SECONDS = 366 * 24 * 3600.0
"""The longest duration any option takes (a year): ``inf`` and ``1e300`` are refused,
where they would overflow the kernel's timeval (``settimeout``) or never end."""

MAX_SIZE = 1 << 60
"""The largest size any option takes (1 EiB): beyond any disk or memory, and well inside
the kernel's 64-bit limits (``setrlimit``)."""

MAX_RATE = 1e9
"""The largest rate any option takes (per second): more is no limit at all."""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Kind:
    """How one sort of value is read and shown.

    ``parse`` reads the text of a flag or an environment variable; ``accept`` reads a
    value from the configuration file (TOML has its own types); both raise
    ``ValueError`` with the reason. ``multiple``: the flag repeats, the file has a list.
    """

    name: str
    metavar: str
    parse: Callable[[str], Any]
    accept: Callable[[object], Any]
    show: Callable[[Any], str] = str
    multiple: bool = False


def _seconds(value: float) -> float:
    if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
        raise ValueError(
            f"expected a number of seconds more than 0 and at most a year ({MAX_SECONDS:.0f}), not {value:g}"
        )
    return value


def _parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, not {text!r}") from None
    return _seconds(value)


def _accept_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected {what}, not {_toml_type(value)}")  # noqa: TRY004 (a value error to the user)
    return float(value)


def _count(value: int) -> int:
    if value < 1:
        raise ValueError(f"expected a whole number of at least 1, not {value}")
    return value


def _parse_count(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"expected a whole number of at least 1, not {text!r}")
    return _count(int(text))


def _accept_int(value: object, what: str = "a whole number") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected {what}, not {_toml_type(value)}")  # noqa: TRY004 (a value error to the user)
    return value


def _rate(value: float) -> float:
    if not math.isfinite(value) or not 0 < value <= MAX_RATE:
        raise ValueError(f"expected a number more than 0 and at most {MAX_RATE:g}, not {value:g}")
    return value


def _parse_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, not {text!r}") from None
    return _rate(value)


def _parse_size(text: str) -> int:
    digits = text.rstrip("KMGTkmgtiBb")
    unit = text[len(digits) :].upper().replace("IB", "").replace("B", "")
    if not digits.isdigit() or unit not in _UNITS or not 1 <= int(digits) * _UNITS[unit] <= MAX_SIZE:
        raise ValueError(f"expected a size such as 64M or 2G (at least 1 byte), not {text!r}")
    return int(digits) * _UNITS[unit]


def _accept_size(value: object) -> int:
    if isinstance(value, str):
        return _parse_size(value)
    number = _accept_int(value, 'a size (a number of bytes, or a string such as "64M")')
    if not 1 <= number <= MAX_SIZE:
        raise ValueError(f"expected a size of at least 1 byte and at most 1 EiB, not {number}")
    return number


def show_size(value: int) -> str:
    """``64M``, ``2G``, ``1T``: the largest power of 1024 that divides the size."""
    for unit in ("T", "G", "M", "K"):
        if value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]}{unit}"
    return str(value)


def _accept_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, not {_toml_type(value)}")  # noqa: TRY004 (a value error to the user)
    if not value or "\x00" in value:
        raise ValueError("expected a non-empty string without NUL")
    return value


def _parse_text(text: str) -> str:
    return _accept_text(text)


def _accept_flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {_toml_type(value)}")  # noqa: TRY004 (a value error to the user)
    return value


def _parse_flag(text: str) -> bool:
    words = {
        "1": True,
        "true": True,
        "yes": True,
        "on": True,
        "0": False,
        "false": False,
        "no": False,
        "off": False,
    }
    try:
        return words[text.strip().lower()]
    except KeyError:
        raise ValueError(f"expected true or false (1/0, yes/no), not {text!r}") from None


def _accept_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, not {_toml_type(value)}")  # noqa: TRY004 (a value error to the user)
    return tuple(_accept_text(item) for item in value)


def _parse_names(text: str) -> tuple[str, ...]:
    # The environment holds one string: a comma-separated list (names hold no commas).
    return tuple(_accept_text(item.strip()) for item in text.split(",") if item.strip())


def _parse_port(text: str) -> int:
    return parse_port(text)


def _accept_port(value: object) -> int:
    number = _accept_int(value, "a port number")
    return parse_port(str(number))


def _workers(value: int) -> int:
    _count(value)
    if value > MAX_WORKERS:
        raise ValueError(
            f"at most {MAX_WORKERS} here ({MAX_WORKERS_PER_CPU} per CPU, never more than "
            f"{MAX_WORKERS_CEILING}), not {value}"
        )
    return value


def _toml_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


SECONDS = Kind(
    "seconds",
    "SECONDS",
    _parse_seconds,
    lambda v: _seconds(_accept_number(v, "a number of seconds")),
    lambda v: f"{v:g}",
)
COUNT = Kind("count", "N", _parse_count, lambda v: _count(_accept_int(v)))
RATE = Kind("rate", "N", _parse_rate, lambda v: _rate(_accept_number(v, "a number")), lambda v: f"{v:g}")
SIZE = Kind("size", "SIZE", _parse_size, _accept_size, show_size)
PORT = Kind("port", "PORT", _parse_port, _accept_port)
TEXT = Kind("text", "TEXT", _parse_text, _accept_text)
PATH = Kind("path", "PATH", _parse_text, _accept_text)
FLAG = Kind("flag", "", _parse_flag, _accept_flag, lambda v: "true" if v else "false")
NAMES = Kind("names", "NAME", _parse_names, _accept_names, ", ".join, multiple=True)
WORKERS = Kind("workers", "N", lambda t: _workers(_parse_count(t)), lambda v: _workers(_accept_int(v)))


def choice(*values: str) -> Kind:
    """A kind that takes one of ``values``."""

    def check(value: object) -> str:
        text = _accept_text(value)
        if text not in values:
            raise ValueError(f"expected one of {', '.join(values)}, not {text!r}")
        return text

    return Kind("choice", "{" + ",".join(values) + "}", check, check)


CHOICE = choice


@dataclass(frozen=True)
class OptionInfo:
    """What the declaration says of one option besides its default.

    ``live``: a SIGHUP reload may change it on a running server (otherwise a change
    needs a restart, and the reload says so). ``shown``: the default as help shows
    it, where the value itself is too long or computed (``None``: ``kind.show``).
    ``flag``: the command-line flag, if not ``--`` and the name with dashes.
    ``group``: the help section.
    """

    kind: Kind
    help: str
    live: bool = False
    shown: str | None = None
    flag: str | None = None
    group: str = "options"
    metavar: str | None = None


def option(
    default: Any,
    help: str,
    kind: Kind,
    *,
    live: bool = False,
    shown: str | None = None,
    flag: str | None = None,
    group: str = "options",
    metavar: str | None = None,
) -> Any:
    """A dataclass field declaring one option (its default, help, kind and so on)."""
    info = OptionInfo(kind, help, live, shown, flag, group, metavar)
    return dataclasses.field(default=default, metadata={"option": info})


def port_option(default: int) -> Any:
    """The ``port`` option of a service whose well-known port is ``default``."""
    return option(default, "port (0 picks a free one)", PORT, group="where to listen")


@dataclass(frozen=True)
class Declared:
    """One declared option: its name, default and ``OptionInfo``."""

    name: str
    default: Any
    info: OptionInfo

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return self.info.flag or "--" + self.name.replace("_", "-")

    @property
    def default_text(self) -> str | None:
        """The default as help shows it (None: there is none to show)."""
        if self.info.shown is not None:
            return self.info.shown
        if self.default is None or self.info.kind is FLAG or self.default == ():
            return None
        return self.info.kind.show(self.default)


GROUP_ORDER = ("where to listen", "TLS", "limits")
"""Help sections in this order first (then the service's own, as declared)."""

_FIRST = ("host", "port")


def declared(cls: type) -> Iterator[Declared]:
    """The options an options dataclass declares: the shared sections first (host and
    port leading), then the service's own sections, each in declaration order."""
    items = [
        Declared(field.name, field.default, field.metadata["option"])
        for field in dataclasses.fields(cls)
        if isinstance(field.metadata.get("option"), OptionInfo)
    ]
    order = {name: index for index, name in enumerate(GROUP_ORDER)}
    groups = list(dict.fromkeys(item.info.group for item in items))

    def rank(item: Declared) -> tuple[int, int, int]:
        group = order.get(item.info.group, len(order) + groups.index(item.info.group))
        first = _FIRST.index(item.name) if item.name in _FIRST else len(_FIRST)
        return group, first, 0

    yield from sorted(items, key=rank)


def names(cls: type) -> Sequence[str]:
    """The declared option names of ``cls``."""
    return [item.name for item in declared(cls)]


# Option groups services share. A service's options class inherits the ones that apply
# to it (and only those: no flag is offered that the service refuses).


@dataclass(frozen=True)
class ListenOptions:
    """Where and how a service listens, and the caps every listener has."""

    host: str = option(
        "127.0.0.1",
        "address to bind ('::' for every IPv4 and IPv6 address)",
        TEXT,
        group="where to listen",
        metavar="HOST",
    )
    tls_cert: str | None = option(
        None, "certificate chain (PEM): serve TLS on stream listeners", PATH, group="TLS", metavar="FILE"
    )
    tls_key: str | None = option(
        None, "private key (PEM), if not in --tls-cert", PATH, group="TLS", metavar="FILE"
    )
    max_connections: int = option(
        DEFAULT_MAX_CONNECTIONS, "open connections at once", COUNT, live=True, group="limits"
    )
    max_per_address: int = option(
        DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        "open connections from one peer (an IP address, an IPv6 /64, a local user)",
        COUNT,
        live=True,
        group="limits",
    )
    shutdown_grace: float = option(
        DEFAULT_SHUTDOWN_GRACE_S,
        "seconds open connections get to finish on shutdown",
        SECONDS,
        live=True,
        group="limits",
    )

    def __post_init__(self) -> None:
        if self.tls_key and not self.tls_cert:
            raise ValueError("tls_key needs tls_cert")


@dataclass(frozen=True)
class UnixOption:
    """A Unix-socket listener instead of (or, with ``tcp``, besides) TCP."""

    unix: str | None = option(
        None,
        "serve on a Unix socket (instead of TCP unless --tcp)",
        PATH,
        group="where to listen",
        metavar="PATH",
    )
    tcp: bool = option(False, "serve TCP as well as the other kinds asked for", FLAG, group="where to listen")


@dataclass(frozen=True)
class UdpOption:
    """A UDP listener instead of (or, with ``tcp``, besides) TCP."""

    udp: bool = option(False, "serve UDP (instead of TCP unless --tcp)", FLAG, group="where to listen")


@dataclass(frozen=True)
class WorkersOption:
    """Several processes sharing the port."""

    workers: int = option(
        1, f"processes sharing the port (SO_REUSEPORT; at most {MAX_WORKERS} here)", WORKERS, group="limits"
    )


@dataclass(frozen=True)
class IdleOption:
    """How long a silent connection stays open."""

    idle_timeout: float = option(
        DEFAULT_IDLE_TIMEOUT_S,
        "close a connection silent this many seconds",
        SECONDS,
        live=True,
        group="limits",
    )


@dataclass(frozen=True)
class StateOption:
    """Where the service keeps its state (token, databases, audit log)."""

    state_dir: str = option(
        DEFAULT_STATE_DIR, "token, databases and audit log (created private, 0700)", PATH, metavar="DIR"
    )


@dataclass(frozen=True)
class RootOption:
    """The directory a service works on (files serves it, exec's commands run in it)."""

    root: str | None = option(
        None,
        "the directory served, created if missing",
        PATH,
        shown="STATE_DIR/files",
        metavar="DIR",
    )
