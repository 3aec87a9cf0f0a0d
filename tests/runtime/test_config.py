"""socketkit.toml and the environment: the precedence (flag > environment > file >
default) for every service, and each mistake ``config check`` names with its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from socketkit.errors import ConfigError
from socketkit.options import declared
from socketkit.runtime.config import ConfigFile, check, env_name, parse_config, resolve
from socketkit.runtime.services import SERVICES, option_classes
from tests.helpers import TIMEOUT

CLASSES = option_classes()


def _default(name: str, option: str) -> object:
    return next(i.default for i in declared(CLASSES[name]) if i.name == option)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_precedence_flag_env_file_default(name: str) -> None:
    cls = CLASSES[name]
    file = parse_config(f"[{name}]\nmax_connections = 11\nshutdown_grace = 2.5\n", "f.toml")
    env = {env_name(name, "max_connections"): "12", env_name(name, "max_per_address"): "7"}
    got = resolve(cls, name, flags={"max_connections": 13}, env=env, config=file)
    assert got.options.max_connections == 13
    assert got.sources["max_connections"] == "flag"
    got = resolve(cls, name, flags={}, env=env, config=file)
    assert got.options.max_connections == 12
    assert got.sources["max_connections"] == "env SOCKETKIT_" + name.upper() + "_MAX_CONNECTIONS"
    assert got.options.shutdown_grace == 2.5
    assert got.sources["shutdown_grace"] == "f.toml:3"
    assert got.options.max_per_address == 7
    got = resolve(cls, name, flags={}, env={}, config=file)
    assert got.options.max_connections == 11
    assert got.sources["max_connections"] == "f.toml:2"
    got = resolve(cls, name, flags={}, env={}, config=ConfigFile())
    assert got.options.max_connections == _default(name, "max_connections")
    assert set(got.sources.values()) == {"default"}


def test_all_applies_to_every_service_and_a_service_table_wins() -> None:
    file = parse_config('[all]\nhost = "::1"\nstate_dir = "st"\n[chat]\nhost = "127.0.0.2"\n', "f.toml")
    echo = resolve(CLASSES["echo"], "echo", flags={}, env={}, config=file)
    assert echo.options.host == "::1"
    assert echo.sources["host"] == "f.toml:2"
    assert not hasattr(echo.options, "state_dir")  # echo keeps no state: not given it
    chat = resolve(CLASSES["chat"], "chat", flags={}, env={}, config=file)
    assert (chat.options.host, chat.options.state_dir) == ("127.0.0.2", "st")
    shared = resolve(CLASSES["chat"], "chat", flags={}, env={"SOCKETKIT_ALL_HOST": "::"}, config=file)
    assert shared.options.host == "::"  # the environment beats the file, [all]'s too


def test_lists_from_the_file_and_the_environment() -> None:
    file = parse_config('[exec]\nallow = ["ls", "cat"]\n', "f.toml")
    got = resolve(CLASSES["exec"], "exec", flags={}, env={}, config=file)
    assert got.options.allow == ("ls", "cat")
    got = resolve(CLASSES["exec"], "exec", flags={}, env={"SOCKETKIT_EXEC_ALLOW": "id, wc"}, config=file)
    assert got.options.allow == ("id", "wc")
    for text, value in (("yes", True), ("1", True), ("true", True), ("no", False), ("0", False)):
        echo = resolve(CLASSES["echo"], "echo", flags={}, env={"SOCKETKIT_ECHO_UDP": text}, config=file)
        assert echo.options.udp is value
    sizes = parse_config('[files]\nquota = "10G"\nmax_file_size = 1024\n', "s.toml")
    files = resolve(CLASSES["files"], "files", flags={}, env={}, config=sizes)
    assert (files.options.quota, files.options.max_file_size) == (10 << 30, 1024)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SOCKETKIT_ECHO_PORT": "seven"}, "SOCKETKIT_ECHO_PORT: "),
        ({"SOCKETKIT_ECHO_IDLE_TIMEOUT": "inf"}, "SOCKETKIT_ECHO_IDLE_TIMEOUT: expected a number of seconds"),
        ({"SOCKETKIT_ECHO_TCP": "maybe"}, "SOCKETKIT_ECHO_TCP: expected true or false"),
    ],
)
def test_a_bad_environment_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(CLASSES["echo"], "echo", flags={}, env=env, config=ConfigFile())


BAD = """\
[echo]
port = 7100
max_conections = 5

[chat]
port = "6667"
idle_timeout = -3

[files]
workers = 100000

[exce]
port = 1

[exec]
tls_key = "k.pem"
enabled = "no"

[all]
colour = "blue"
"""


def test_check_names_line_table_and_key_of_each_mistake() -> None:
    findings = [str(f) for f in check(parse_config(BAD, "bad.toml"), CLASSES)]
    assert findings == [
        "bad.toml:3: [echo] max_conections: unknown key 'max_conections' for echo "
        "(did you mean max_connections?)",
        "bad.toml:6: [chat] port: expected a port number, not a string",
        "bad.toml:7: [chat] idle_timeout: expected a number of seconds more than 0 and at most a year "
        "(31622400), not -3",
        f"bad.toml:10: [files] workers: {_workers_message(100000)}",
        "bad.toml:12: [exce]: unknown table [exce] (did you mean exec?); "
        "tables: all, echo, talk, chat, files, exec, admin",
        "bad.toml:17: [exec] enabled: expected true or false",
        "bad.toml:15: [exec]: tls_key needs tls_cert",
        "bad.toml:20: [all] colour: unknown key 'colour' in [all]; "
        "[all] takes host, log_format, root, state_dir",
    ]


def _workers_message(count: int) -> str:
    from socketkit.options import WORKERS

    with pytest.raises(ValueError, match="at most") as caught:
        WORKERS.accept(count)
    return str(caught.value)


def test_a_good_file_has_no_findings_and_a_key_outside_tables_is_one() -> None:
    good = (
        '[all]\nstate_dir = "s"\nlog_format = "json"\n[echo]\nport = 0\nudp = true\n[chat]\nenabled = false\n'
    )
    assert check(parse_config(good, "g.toml"), CLASSES) == []
    assert [str(f) for f in check(parse_config("port = 1\n", "t.toml"), CLASSES)] == [
        "t.toml:1: [] port: port is outside any table: put it under [all] or [SERVICE]"
    ]


def test_not_toml_names_the_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"x\.toml: not valid TOML: .*line 2"):
        parse_config("[echo]\nport = = 1\n", "x.toml")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "socketkit", *args]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def test_config_check_exit_status_and_lines(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(BAD)
    (tmp_path / "good.toml").write_text("[echo]\nport = 7100\n")
    bad = _cli("config", "check", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 1
    lines = bad.stderr.splitlines()
    assert lines[0].startswith("bad.toml:3: [echo] max_conections: unknown key")
    assert lines[-1] == "bad.toml: 8 mistakes"
    good = _cli("config", "check", "good.toml", cwd=tmp_path)
    assert (good.returncode, good.stdout, good.stderr) == (0, "good.toml: good\n", "")
    missing = _cli("config", "check", "none.toml", cwd=tmp_path)
    assert missing.returncode == 1
    assert "none.toml" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_config_show_says_where_each_value_comes_from(tmp_path: Path) -> None:
    (tmp_path / "socketkit.toml").write_text("[echo]\nport = 7100\n")
    env_cli = [sys.executable, "-m", "socketkit", "config", "show", "echo"]
    import os

    shown = subprocess.run(
        env_cli,
        check=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        env={**os.environ, "SOCKETKIT_ECHO_MAX_CONNECTIONS": "9"},
    ).stdout.splitlines()
    assert shown[0] == "[echo]"
    assert "port = 7100  # socketkit.toml:2" in shown
    assert "max_connections = 9  # env SOCKETKIT_ECHO_MAX_CONNECTIONS" in shown
    assert 'host = "127.0.0.1"  # default' in shown
