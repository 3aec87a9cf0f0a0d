"""Pure parts of exec: request validation, policy, exit statuses, auth handshake, throttle."""

from __future__ import annotations

import pytest

from socketkit.auth.handshake import ClientAuth, ServerAuth, client_mac, server_mac
from socketkit.auth.throttle import AuthThrottle
from socketkit.errors import PermissionDenied, RemoteProtocolError
from socketkit.services.rexec.policy import ExecPolicy
from socketkit.services.rexec.protocol import (
    MAX_ARGS,
    ExecExit,
    ExecRequest,
    exit_status_for_client,
    parse_exec_request,
    parse_signal_request,
)

TOKEN = "a" * 64
OTHER = "b" * 64


def req(**header: object) -> ExecRequest:
    return parse_exec_request({"op": "exec", **header})


def test_request_round_trip() -> None:
    request = ExecRequest(("ls", "-l"), {"LANG": "C"}, "sub", None, True, 3.0)
    assert parse_exec_request(request.to_header()) == request
    assert request.display() == "ls -l"
    assert ExecRequest(("echo", "a b")).display() == "echo 'a b'"


@pytest.mark.parametrize(
    "header",
    [
        {"argv": []},
        {"argv": "ls"},
        {"argv": ["ls", 3]},
        {"argv": ["ls\x00"]},
        {"argv": ["ls"], "shell": "ls"},
        {"argv": ["x"] * (MAX_ARGS + 1)},
        {"argv": ["x" * 200_000]},
        {"argv": ["ls"], "env": {"A=B": "c"}},
        {"argv": ["ls"], "env": {"A": 1}},
        {"argv": ["ls"], "timeout": -1},
        {"argv": ["ls"], "timeout": True},
        {"argv": ["ls"], "stdin": "yes"},
        {"argv": ["ls"], "cwd": 7},
    ],
)
def test_malformed_requests_are_refused(header: dict[str, object]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        req(**header)
    assert info.value.error_code == "bad-request"


def test_policy_allow_list_and_injection_attempts() -> None:
    policy = ExecPolicy(allow=frozenset({"echo", "ls"}))
    assert policy.decide(req(argv=["echo", "; rm -rf ~", "$(id)", "a\nb"])).argv == (
        "echo",
        "; rm -rf ~",
        "$(id)",
        "a\nb",
    )  # literal arguments: nothing is interpreted
    for program in ("rm", "ls; rm -rf /", "sh", "./ls", "../bin/ls", "/bin/ls"):
        with pytest.raises(PermissionDenied):
            policy.decide(req(argv=[program]))


def test_policy_paths_any_and_shell() -> None:
    assert ExecPolicy(allow=frozenset({"/bin/echo"})).decide(req(argv=["/bin/echo"])).program == "/bin/echo"
    anything = ExecPolicy(allow_any=True)
    assert anything.decide(req(argv=["whatever"])).argv == ("whatever",)
    with pytest.raises(PermissionDenied):
        anything.decide(req(argv=["./relative"]))
    with pytest.raises(PermissionDenied, match="--allow-shell"):
        ExecPolicy().decide(req(shell="ls | wc"))
    assert ExecPolicy(allow_shell=True).decide(req(shell="ls | wc")).argv == ("/bin/sh", "-c", "ls | wc")


def test_policy_environment_is_scrubbed() -> None:
    policy = ExecPolicy(allow=frozenset({"env"}), home="/srv")
    decision = policy.decide(req(argv=["env"], env={"LANG": "fr_FR.UTF-8", "LC_TIME": "C"}))
    assert decision.env["LANG"] == "fr_FR.UTF-8"
    assert decision.env["HOME"] == "/srv"
    assert "/usr/bin" in decision.env["PATH"]
    assert "." not in decision.env["PATH"].split(":")
    for name in ("LD_PRELOAD", "PATH", "PYTHONPATH"):
        with pytest.raises(PermissionDenied, match=name):
            policy.decide(req(argv=["env"], env={name: "x"}))


def test_policy_timeout_is_never_longer_than_the_servers() -> None:
    policy = ExecPolicy(allow=frozenset({"sleep"}), timeout=10)
    assert policy.decide(req(argv=["sleep"], timeout=3)).timeout == 3
    assert policy.decide(req(argv=["sleep"], timeout=60)).timeout == 10
    assert policy.decide(req(argv=["sleep"])).timeout == 10


def test_signal_requests() -> None:
    assert parse_signal_request({"op": "signal", "signal": "INT"}) == "INT"
    assert parse_signal_request({"op": "signal", "signal": "sigterm"}) == "TERM"
    for bad in ({"op": "signal", "signal": "STOP"}, {"op": "signal", "signal": 2}, {"op": "nope"}):
        with pytest.raises(RemoteProtocolError):
            parse_signal_request(bad)


def test_exit_statuses_like_ssh() -> None:
    assert exit_status_for_client(ExecExit(0)) == 0
    assert exit_status_for_client(ExecExit(3)) == 3
    assert exit_status_for_client(ExecExit(None, 15)) == 143
    assert exit_status_for_client(ExecExit(None, 15, "timeout")) == 124
    assert exit_status_for_client(ExecExit(None)) == 255


def handshake(client_token: str | None, server_token: str | None) -> None:
    server = ServerAuth(server_token, b"s" * 32)
    client = ClientAuth(client_token, b"c" * 32)
    response = client.respond(server.challenge())
    if response is None:
        return
    client.check_ok(server.verify(response))


def test_handshake_succeeds_with_the_same_token_only() -> None:
    handshake(TOKEN, TOKEN)
    handshake(None, None)  # an auth-less server
    with pytest.raises(PermissionDenied) as info:
        handshake(OTHER, TOKEN)
    assert info.value.code == "auth-failed"
    with pytest.raises(PermissionDenied) as info:
        handshake(None, TOKEN)
    assert info.value.code == "no-token"


def test_a_recorded_response_fails_on_a_new_connection() -> None:
    first = ServerAuth(TOKEN, b"1" * 32)
    recorded = ClientAuth(TOKEN, b"c" * 32).respond(first.challenge())
    assert recorded is not None
    first.verify(recorded)
    second = ServerAuth(TOKEN, b"2" * 32)  # fresh server nonce
    with pytest.raises(PermissionDenied):
        second.verify(recorded)


def test_an_impostor_server_is_detected_and_macs_do_not_reflect() -> None:
    client = ClientAuth(TOKEN, b"c" * 32)
    challenge = ServerAuth(OTHER, b"s" * 32).challenge()
    response = client.respond(challenge)
    assert response is not None
    impostor_ok = {"auth": "ok", "mac": server_mac(OTHER, b"s" * 32, b"c" * 32).hex()}
    with pytest.raises(PermissionDenied) as info:
        client.check_ok(impostor_ok)
    assert info.value.code == "server-auth-failed"
    # The client's own MAC sent back as the server's proof is refused (labels differ).
    reflected = {"auth": "ok", "mac": client_mac(TOKEN, b"s" * 32, b"c" * 32).hex()}
    with pytest.raises(PermissionDenied):
        client.check_ok(reflected)


@pytest.mark.parametrize(
    "response",
    [
        {"auth": "response"},
        {"auth": "response", "nonce": "zz" * 32, "mac": "00" * 32},
        {"auth": "response", "nonce": "00" * 31, "mac": "00" * 32},
        {"hello": 1},
    ],
)
def test_malformed_auth_messages(response: dict[str, object]) -> None:
    with pytest.raises(RemoteProtocolError):
        ServerAuth(TOKEN, b"s" * 32).verify(response)


def test_throttle_blocks_after_free_failures_and_forgets_on_success() -> None:
    throttle = AuthThrottle(free_failures=3, window_s=60, max_delay_s=8)
    now = 1000.0
    assert [throttle.failure("1.2.3.4", now) for _ in range(3)] == [0, 0, 0]
    assert throttle.failure("1.2.3.4", now) == 1
    assert throttle.failure("1.2.3.4", now) == 2
    assert throttle.failure("1.2.3.4", now) == 4
    assert throttle.failure("1.2.3.4", now) == 8
    assert throttle.failure("1.2.3.4", now) == 8  # capped
    assert throttle.wait_time("1.2.3.4", now + 3) == 5
    assert throttle.wait_time("5.6.7.8", now) == 0  # per address
    throttle.success("1.2.3.4")
    assert throttle.wait_time("1.2.3.4", now) == 0


def test_throttle_table_is_bounded() -> None:
    throttle = AuthThrottle(max_addresses=100)
    for i in range(1000):
        throttle.failure(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(throttle._records) == 100
