"""SIGHUP's reload, service by service: each live option reaches the running service;
an option that needs a restart is named and kept; a refused value changes nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from socketkit.errors import ConfigError
from socketkit.runtime.reload import prepare_options
from socketkit.runtime.services import SERVICES
from socketkit.service import Service


def _running(name: str, **options: Any) -> Service:
    service = SERVICES[name].build(SERVICES[name].options(**options))
    service.servers.append(service.make_server())  # made, not started: its settings are what count
    return service


def _reload(service: Service, **changes: Any) -> tuple[list[str], list[str]]:
    commit, applied, restart = prepare_options(service, replace(service.options, **changes))
    if commit is not None:
        commit()
    return applied, restart


def test_engine_caps_and_idle_timeout_change_live() -> None:
    service = _running("echo", port=0)
    try:
        applied, restart = _reload(service, max_connections=7, max_per_address=3, idle_timeout=9.0, port=99)
        server = service.servers[0]
        assert (server.max_connections, server.max_connections_per_address) == (7, 3)
        assert server.limits.idle_timeout == 9.0
        assert restart == ["port"]
        assert service.options.port == 0
        assert service.options.max_connections == 7
        assert len(applied) == 3
    finally:
        service.close()


def test_echo_policy_changes_live() -> None:
    service = _running("echo", port=0, udp=True)
    try:
        _reload(service, udp_rate=2.0, udp_burst=3)
        policy = service.servers[0].echo_policy  # type: ignore[attr-defined]
        assert (policy.rate, policy.burst) == (2.0, 3)
    finally:
        service.close()


def test_chat_rereads_its_operator_file_and_flood_limits(tmp_path: Path) -> None:
    opers = tmp_path / "opers"
    opers.write_text("alice secret\n")
    opers.chmod(0o600)
    motd, password = tmp_path / "motd", tmp_path / "password"
    motd.write_text("first\n")
    password.write_text("one\n")
    password.chmod(0o600)
    files = {"oper_file": str(opers), "motd_file": str(motd), "password_file": str(password)}
    service = _running("chat", port=0, state_dir=str(tmp_path / "s"), **files)
    try:
        assert dict(service.app.state.config.opers) == {"alice": "secret"}
        opers.write_text("bob other\n")
        motd.write_text("second\n")
        password.write_text("two\n")
        # Same path: the reload reads the file again when anything live changed.
        _reload(service, flood_burst=3, oper_file=str(opers) + "")
        assert service.app.state.config.flood_burst == 3
        assert dict(service.app.state.config.opers) == {"bob": "other"}
        assert service.app.state.config.motd == ("second",)
        assert service.app.state.config.password == "two"
    finally:
        service.close()


def test_files_store_limits_change_live(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    service = _running("files", port=0, state_dir=str(tmp_path / "s"), root=str(root))
    try:
        _reload(service, quota=1 << 20, read_only=True, max_transfers=2, max_entries=10)
        store = service.app.settings.store
        assert service.app.settings.max_transfers == 2
        assert store.limits.read_only
        assert store.limits.quota == 1 << 20
        assert (store.usage.quota, store.usage.max_entries) == (1 << 20, 10)
    finally:
        service.close()


def test_exec_refuses_a_bad_allow_list_and_keeps_the_old(tmp_path: Path) -> None:
    service = _running("exec", port=0, state_dir=str(tmp_path / "s"), no_sandbox=True)
    try:
        with pytest.raises(ConfigError, match="no such program"):
            _reload(service, allow=("no-such-program-here",))
        assert "no-such-program-here" not in service.options.allow
        assert "no-such-program-here" not in service.app.settings.policy.allow
        applied, _ = _reload(service, allow=("id",), timeout=5.0)
        assert service.options.allow == ("id",)
        assert len(applied) == 2
        assert service.app.settings.policy.allow == frozenset({"id"})
        assert service.app.settings.policy.timeout == 5.0
    finally:
        service.close()
