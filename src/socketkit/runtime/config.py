"""``socketkit.toml`` and the environment: where each option's value comes from.

One table per service (``[echo]``, ``[chat]``...; keys are the options' declared names),
``[admin]`` for the admin endpoint, and ``[all]`` for what services share (host,
state_dir, root, log format; TLS files are each service's own: a certificate in
``[all]`` would turn chat's plain-text port into TLS); ``enabled = false`` leaves a service out of
``serve all``. Precedence, highest first: the command-line flag, the environment
(``SOCKETKIT_<SERVICE>_<OPTION>``, then ``SOCKETKIT_ALL_<OPTION>``), the service's
table, ``[all]``, the declared default. ``check`` lists every mistake of a file with
its line, table and key; ``resolve`` builds a service's options and says where each
value came from.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from socketkit._logformat import LOG_FORMATS
from socketkit.errors import ConfigError
from socketkit.options import choice, declared

__all__ = [
    "CONFIG_NAME",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "SHARED_KEYS",
    "SHARED_TABLE",
    "ConfigFile",
    "Finding",
    "Resolved",
    "check",
    "env_name",
    "parse_config",
    "resolve",
]

CONFIG_NAME: Final = "socketkit.toml"
"""The file read from the working directory when no ``--config`` is given."""

MAX_CONFIG_SIZE: Final = 1 << 20
"""Bytes of a configuration file: a few hundred lines are a large one."""

ENV_PREFIX: Final = "SOCKETKIT_"
SHARED_TABLE: Final = "all"

SHARED_KEYS: Final = frozenset({"host", "state_dir", "root", "log_format"})
"""Keys ``[all]`` may hold: each applies to every service that declares it."""

ENABLED_KEY: Final = "enabled"
_LOG_FORMAT = choice(*LOG_FORMATS)
_OWN_SHARED_KINDS: Final = {"log_format": _LOG_FORMAT}
"""Keys of ``[all]`` that are no service's option (the others take the service's kind)."""

_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


@dataclass(frozen=True)
class Finding:
    """One mistake in a configuration file."""

    path: str
    line: int
    table: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"[{self.table}]" + (f" {self.key}" if self.key else "")
        return f"{self.path}:{self.line}: {where}: {self.message}"


@dataclass
class ConfigFile:
    """A parsed configuration file (``path`` None: there is none)."""

    path: str | None = None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[tuple[str, str], int] = field(default_factory=dict)
    top_level: dict[str, Any] = field(default_factory=dict)

    def line(self, table: str, key: str = "") -> int:
        """The line of ``key`` in ``table`` (or of the table's header; 1 if unknown)."""
        return self.lines.get((table, key)) or self.lines.get((table, "")) or 1

    def where(self, table: str, key: str) -> str:
        """``FILE:LINE`` of a key, for messages."""
        return f"{self.path}:{self.line(table, key)}"


def _locate(text: str) -> dict[tuple[str, str], int]:
    """Line numbers of table headers and keys (tomllib keeps none)."""
    lines: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = _TABLE.match(line)
        if header:
            table = header.group(1)
            lines.setdefault((table, ""), number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((table, key.group(1)), number)
    return lines


def parse_config(text: str, path: str) -> ConfigFile:
    """Parse the text of a configuration file.

    Raises:
        ConfigError: not TOML (the message names the file, line and column).
    """
    import tomllib  # noqa: PLC0415 (lazy: only servers read a file; fast CLI)

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = ConfigFile(path, lines=_locate(text))
    for key, value in data.items():
        if isinstance(value, dict):
            config.tables[key] = value
        else:
            config.top_level[key] = value
    return config


def env_name(table: str, option: str) -> str:
    """``SOCKETKIT_ECHO_PORT`` for ``[echo] port``."""
    return f"{ENV_PREFIX}{table.upper()}_{option.upper()}"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _shared_kinds(services: Mapping[str, type]) -> dict[str, Any]:
    kinds: dict[str, Any] = dict(_OWN_SHARED_KINDS)
    for cls in services.values():
        for item in declared(cls):
            if item.name in SHARED_KEYS:
                kinds.setdefault(item.name, item.info.kind)
    return kinds


def check(config: ConfigFile, services: Mapping[str, type]) -> list[Finding]:
    """Every mistake in ``config``: unknown tables and keys (with a did-you-mean),
    values of the wrong type or out of range, options that contradict each other.

    ``services`` maps each table name to its options class.
    """
    path = config.path or "(none)"
    known_tables = [SHARED_TABLE, *services]
    findings: list[Finding] = [
        Finding(
            path,
            config.line("", key),
            "",
            key,
            f"{key} is outside any table: put it under [all] or [SERVICE]",
        )
        for key in config.top_level
    ]
    shared = _shared_kinds(services)
    for table, values in config.tables.items():
        if table == SHARED_TABLE:
            for key, value in values.items():
                if key not in shared:
                    hint = _suggest(key, sorted(shared))
                    message = f"unknown key {key!r} in [all]{hint}; [all] takes {', '.join(sorted(shared))}"
                    findings.append(Finding(path, config.line(table, key), table, key, message))
                    continue
                try:
                    shared[key].accept(value)
                except ValueError as exc:
                    findings.append(Finding(path, config.line(table, key), table, key, str(exc)))
            continue
        cls = services.get(table)
        if cls is None:
            message = (
                f"unknown table [{table}]{_suggest(table, known_tables)}; tables: {', '.join(known_tables)}"
            )
            findings.append(Finding(path, config.line(table), table, "", message))
            continue
        kinds = {item.name: item.info.kind for item in declared(cls)}
        good: dict[str, Any] = {}
        for key, value in values.items():
            if key == ENABLED_KEY:
                if not isinstance(value, bool):
                    findings.append(
                        Finding(path, config.line(table, key), table, key, "expected true or false")
                    )
                continue
            if key not in kinds:
                hint = _suggest(key, sorted(kinds))
                message = f"unknown key {key!r} for {table}{hint}"
                findings.append(Finding(path, config.line(table, key), table, key, message))
                continue
            try:
                good[key] = kinds[key].accept(value)
            except ValueError as exc:
                findings.append(Finding(path, config.line(table, key), table, key, str(exc)))
        try:
            cls(**good)
        except ValueError as exc:
            findings.append(Finding(path, config.line(table), table, "", str(exc)))
    return findings


@dataclass(frozen=True)
class Resolved:
    """A service's options and, for each, where its value came from: ``default``,
    ``FILE:LINE``, ``env NAME`` or ``flag``."""

    options: Any
    sources: Mapping[str, str]


def resolve(
    cls: type,
    table: str,
    *,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config: ConfigFile,
    base: Mapping[str, Any] | None = None,
) -> Resolved:
    """The options of the service in ``table``: each from its flag, else the
    environment, else the file, else ``base`` (a command's own defaults: ``serve
    all`` serves echo on UDP too), else the declaration.

    Raises:
        ConfigError: a value from the environment or the file is wrong (the message
            names the variable, or the file and line), or the options contradict each
            other.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    own = config.tables.get(table, {})
    shared = config.tables.get(SHARED_TABLE, {})
    for item in declared(cls):
        name = item.name
        kind = item.info.kind
        if name in flags:
            values[name], sources[name] = flags[name], "flag"
            continue
        found = False
        for env_table in (table, SHARED_TABLE):
            if env_table == SHARED_TABLE and name not in SHARED_KEYS:
                continue
            variable = env_name(env_table, name)
            if variable in env:
                try:
                    values[name] = kind.parse(env[variable])
                except ValueError as exc:
                    raise ConfigError(f"{variable}: {exc}") from None
                sources[name] = f"env {variable}"
                found = True
                break
        if found:
            continue
        for file_table, mapping in ((table, own), (SHARED_TABLE, shared)):
            if file_table == SHARED_TABLE and name not in SHARED_KEYS:
                continue
            if name in mapping:
                where = config.where(file_table, name)
                try:
                    values[name] = kind.accept(mapping[name])
                except ValueError as exc:
                    raise ConfigError(f"{where}: [{file_table}] {name}: {exc}") from None
                sources[name] = where
                found = True
                break
        if not found and base is not None and name in base:
            values[name], sources[name] = base[name], "serve all"
        elif not found:
            sources[name] = "default"
    try:
        options = cls(**values)
    except ValueError as exc:
        raise ConfigError(f"{table}: {exc}") from None
    return Resolved(options, sources)


def enabled(config: ConfigFile, table: str) -> bool:
    """Whether ``serve all`` runs the service (``enabled = false`` leaves it out)."""
    return config.tables.get(table, {}).get(ENABLED_KEY, True) is not False


def shared_value(config: ConfigFile, env: Mapping[str, str], key: str, default: Any) -> Any:
    """A value of ``[all]`` (``SOCKETKIT_ALL_KEY`` first), checked; ``default`` if unset.

    Raises:
        ConfigError: the value is wrong.
    """
    variable = env_name(SHARED_TABLE, key)
    kind = _OWN_SHARED_KINDS.get(key)
    if variable in env:
        text = env[variable]
        try:
            return kind.parse(text) if kind else text
        except ValueError as exc:
            raise ConfigError(f"{variable}: {exc}") from None
    table = config.tables.get(SHARED_TABLE, {})
    if key in table:
        try:
            return kind.accept(table[key]) if kind else table[key]
        except ValueError as exc:
            raise ConfigError(f"{config.where(SHARED_TABLE, key)}: [all] {key}: {exc}") from None
    return default


def load_config(path: str | None) -> ConfigFile:
    """The configuration file ``path`` or, when None, ``./socketkit.toml`` if it exists
    (none at all: an empty configuration).

    Raises:
        ConfigError: the file cannot be read, is too large, not UTF-8 or not TOML.
    """
    import os  # noqa: PLC0415 (the only I/O here)

    from socketkit._readfile import read_option_file  # noqa: PLC0415

    if path is None:
        if not os.path.exists(CONFIG_NAME):
            return ConfigFile()
        path = CONFIG_NAME
    data = read_option_file(path, "the configuration file", limit=MAX_CONFIG_SIZE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, path)
