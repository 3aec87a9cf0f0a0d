"""The unauthenticated phase of wire-v1 services (WireGate) and the client's opening, over
loopback: deadlines, the per-address cap, the throttle's delayed verdicts with the
documented defaults, service names, and logs that never hold a secret."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.aio.client import open_connection
from socketkit.aio.connection import Connection, ConnectionLimits
from socketkit.aio.listeners import Listener
from socketkit.aio.server import AsyncServer
from socketkit.auth.handshake import client_mac
from socketkit.auth.session import WireGate, authenticate_client, receive_control
from socketkit.auth.throttle import AuthThrottle
from socketkit.codec.wire import (
    Control,
    ErrorFrame,
    Hello,
    WireDecoder,
    WireEvent,
    encode_control,
    encode_hello,
)
from socketkit.errors import HandshakeError, PermissionDenied, ServiceError
from socketkit.limits import (
    AUTH_FAILURE_WINDOW_S,
    AUTH_FREE_FAILURES,
    AUTH_MAX_ADDRESSES,
    AUTH_MAX_DELAY_S,
    DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
)
from socketkit.services.echo.server import make_echo_server
from socketkit.testing import aio_serving
from tests.helpers import TIMEOUT
from tests.other_user import NOBODY, OtherUser

TOKEN = "5ec7e7" * 11
LOCAL = Address("127.0.0.1", 0)
ME = f"uid:{os.geteuid()}"  # how the gate knows a local peer: by its user


def gated_server(gate: WireGate) -> AsyncServer:
    """A minimal authenticated service: after the gate, one "hi" and close."""

    async def handler(conn: Connection[WireEvent]) -> None:
        if await gate.open(conn):
            await conn.send_all(encode_control({"event": "hi"}))

    return AsyncServer(
        handler=handler,
        decoder_factory=WireDecoder,
        limits=ConnectionLimits(handshake_timeout=None, idle_timeout=None),
    )


async def raw(address: Address) -> Connection[WireEvent]:
    return await open_connection(address, WireDecoder())


async def from_address(address: Address, source: str) -> Connection[WireEvent]:
    """A connection to ``address`` from the loopback address ``source``."""
    conn: Connection[WireEvent] = Connection(
        decoder=WireDecoder(), limits=ConnectionLimits(None, None, None, None)
    )
    await asyncio.get_running_loop().create_connection(
        lambda: conn, address.host, address.port, local_addr=(source, 0)
    )
    return conn


async def events_until_closed(conn: Connection[WireEvent]) -> list[Any]:
    events: list[Any] = []
    try:
        async with asyncio.timeout(10):
            async for event in conn:
                events.append(event)
    except Exception as exc:  # a reset after the error frame counts as closed
        events.append(exc)
    return events


def test_hello_then_silence_is_cut_at_the_deadline() -> None:
    async def main() -> None:
        gate = WireGate("test", TOKEN, timeout=0.3)
        async with aio_serving(gated_server(gate)) as (address,):
            conn = await raw(address)
            conn.send(encode_hello())  # and then nothing, ever
            events = await events_until_closed(conn)
            conn.abort()
            assert isinstance(events[0], Hello)
            assert isinstance(events[1], Control)  # the challenge
            assert events[2] == ErrorFrame("handshake-timeout", "authentication did not finish within 0.3 s")
            # No hello at all: the same deadline.
            silent = await raw(address)
            events = await events_until_closed(silent)
            silent.abort()
            assert any(isinstance(e, ErrorFrame) and e.code == "handshake-timeout" for e in events)
            assert gate.unauthenticated() == 0

    asyncio.run(main())


async def challenged(address: Address, source: str = "127.0.0.1") -> Connection[WireEvent]:
    """A connection that said hello and got its challenge: in the unauthenticated phase."""
    conn = await from_address(address, source)
    conn.send(encode_hello())
    assert isinstance(await conn.receive(), Hello)
    assert isinstance(await conn.receive(), Control)
    return conn


EVICTED = ErrorFrame("busy", "a newer connection took this one's place; authenticate sooner")


def test_over_the_per_peer_cap_the_oldest_unauthenticated_connection_makes_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Here 127.0.0.2 stands for another peer (off loopback, each IPv4 address is one);
    # that every 127.x address of one user is one peer is the next test.
    monkeypatch.setattr("socketkit.peercred.limit_key", lambda host: host)

    async def main() -> None:
        cap = DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
        gate = WireGate("test", TOKEN, timeout=30)
        async with aio_serving(gated_server(gate)) as (address,):
            silent = [await challenged(address) for _ in range(cap)]
            assert gate.unauthenticated() == cap
            # One more from that peer gets in; the oldest is told why and closed.
            newer = await raw(address)
            await authenticate_client(newer, TOKEN, service="test")
            assert (await receive_control(newer)).header == {"event": "hi"}
            newer.abort()
            oldest = await events_until_closed(silent[0])
            assert EVICTED in oldest
            assert gate.unauthenticated() == cap - 1
            # Another peer's connections evict none of them (nor count for them).
            silent.append(await challenged(address))
            others = [await challenged(address, "127.0.0.2") for _ in range(cap)]
            assert gate.unauthenticated() == 2 * cap
            for conn in silent + others:
                conn.abort()

    asyncio.run(main())


def test_rotating_loopback_addresses_does_not_get_round_the_cap() -> None:
    # Any local user can connect from any 127.x.y.z: all of them are that user.
    async def main() -> None:
        cap = DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
        gate = WireGate("test", TOKEN, timeout=30)
        async with aio_serving(gated_server(gate)) as (address,):
            silent = [await challenged(address, f"127.0.{index}.9") for index in range(cap)]
            silent.append(await challenged(address, "127.200.0.1"))
            assert gate.unauthenticated() == cap
            assert EVICTED in await events_until_closed(silent[0])
            for conn in silent:
                conn.abort()

    asyncio.run(main())


def test_hello_only_connections_held_open_cannot_keep_the_token_holder_out() -> None:
    # Red-team round 2, finding 1: eight hello-only connections, each re-opened as soon
    # as it is cut, used to refuse the token's holder (`busy`) for as long as they ran.
    async def main() -> None:
        cap = DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
        gate = WireGate("test", TOKEN, timeout=30)
        async with aio_serving(gated_server(gate)) as (address,):
            held = [await challenged(address, f"127.0.{index}.9") for index in range(cap)]
            for attempt in range(3):
                conn = await raw(address)
                await authenticate_client(conn, TOKEN, service="test")
                assert (await receive_control(conn)).header == {"event": "hi"}
                conn.abort()
                # The attacker re-opens the one that was cut, at once: every slot is taken again.
                held.append(await challenged(address, f"127.1.{attempt}.9"))
                assert gate.unauthenticated() == cap
            for conn in held[:3]:  # the oldest three made room
                assert EVICTED in await events_until_closed(conn)
            for conn in held:
                conn.abort()

    asyncio.run(main())


def test_two_local_users_have_separate_unauthenticated_budgets() -> None:
    # Red-team round 2, finding 5: with all of loopback one peer, one local user's
    # connections took every other local user's slots.
    async def main() -> None:
        cap = DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
        gate = WireGate("test", TOKEN, timeout=30)
        async with aio_serving(gated_server(gate)) as (address,):
            mine = [await challenged(address, f"127.0.{index}.9") for index in range(cap)]

            def hello_as_nobody(hold: list[object]) -> str:
                sock = socket.create_connection((address.host, address.port), TIMEOUT)
                hold.append(sock)
                sock.sendall(encode_hello())
                decoder, events = WireDecoder(), []
                while len(events) < 2:
                    data = sock.recv(65536)
                    if not data:
                        break
                    decoder.feed(data)
                    events.extend(decoder)
                return " ".join(type(event).__name__ for event in events)

            with OtherUser(hello_as_nobody) as other:
                assert await other.report() == "Hello Control"  # challenged, not refused
                # Nobody's connection evicted none of ours: two budgets of `cap`.
                assert gate.unauthenticated() == cap + 1
                assert sorted(gate._pending) == sorted([ME, f"uid:{NOBODY.pw_uid}"])
            for conn in mine:
                conn.abort()

    asyncio.run(main())


def test_another_local_users_failures_do_not_delay_my_verdicts() -> None:
    # The throttle keys on the peer too: before, one local user's wrong guesses
    # delayed every local user's logins (all of loopback was one address).
    async def main() -> None:
        throttle = AuthThrottle(free_failures=0)
        gate = WireGate("test", TOKEN, throttle)
        async with aio_serving(gated_server(gate)) as (address,):

            def guess_as_nobody(hold: list[object]) -> str:
                sock = socket.create_connection((address.host, address.port), TIMEOUT)
                hold.append(sock)
                sock.sendall(encode_hello())
                decoder: WireDecoder = WireDecoder()
                events: list[Any] = []
                while not any(isinstance(e, ErrorFrame) for e in events):
                    data = sock.recv(65536)
                    if not data:
                        break
                    decoder.feed(data)
                    events.extend(decoder)
                    if len(events) == 2:  # hello, challenge: answer with a wrong token
                        nonce = os.urandom(32)
                        mac = client_mac("0" * 64, bytes.fromhex(events[1].header["nonce"]), nonce)
                        sock.sendall(
                            encode_control({"auth": "response", "nonce": nonce.hex(), "mac": mac.hex()})
                        )
                return " ".join(e.code for e in events if isinstance(e, ErrorFrame))

            with OtherUser(guess_as_nobody) as other:
                assert await other.report() == "auth-failed"
            loop = asyncio.get_running_loop()
            assert throttle.wait_time(f"uid:{NOBODY.pw_uid}", loop.time()) > 0  # nobody is delayed
            challenge, _, verdict = await attempt(address, TOKEN)
            assert "delay" not in challenge  # I am not
            assert verdict["auth"] == "ok"

    asyncio.run(main())


def respond(conn: Connection[WireEvent], challenge: dict[str, Any], token: str) -> None:
    """Send the response to ``challenge`` by hand."""
    nonce = os.urandom(32)
    mac = client_mac(token, bytes.fromhex(challenge["nonce"]), nonce)
    SENT_MACS.append(mac.hex())
    conn.send(encode_control({"auth": "response", "nonce": nonce.hex(), "mac": mac.hex()}))


def test_a_client_waiting_out_its_delay_is_evicted_after_those_that_have_not_answered() -> None:
    # The throttle delays the verdicts of a peer that failed; its connections that have
    # answered wait out the delay in the unauthenticated phase. Silent ones go first.
    async def main() -> None:
        throttle = AuthThrottle(free_failures=0)
        gate = WireGate("test", TOKEN, throttle, timeout=30, max_unauthenticated=2)
        async with aio_serving(gated_server(gate)) as (address,):
            throttle.failure(ME, asyncio.get_running_loop().time())  # delayed 1 s
            patient = await raw(address)
            patient.send(encode_hello())
            assert isinstance(await patient.receive(), Hello)
            challenge = dict((await receive_control(patient)).header)
            assert challenge["delay"] > 0
            respond(patient, challenge, TOKEN)
            # Two silent ones: the second is over the cap of 2 and evicts the first,
            # which has not answered, rather than the older one waiting for its verdict.
            first = await challenged(address)
            second = await challenged(address)
            assert EVICTED in await events_until_closed(first)
            assert (await receive_control(patient)).header["auth"] == "ok"
            assert (await receive_control(patient)).header == {"event": "hi"}
            for conn in (patient, first, second):
                conn.abort()

    asyncio.run(main())


SENT_MACS: list[str] = []  # every client MAC the tests sent (none may reach a log)


async def attempt(address: Address, token: str) -> tuple[dict[str, Any], float, Any]:
    """One login by hand: the challenge, and the verdict with the loop time it took."""
    loop = asyncio.get_running_loop()
    conn = await raw(address)
    try:
        conn.send(encode_hello())
        assert isinstance(await conn.receive(), Hello)
        challenge = dict((await receive_control(conn)).header)
        nonce = os.urandom(32)
        mac = client_mac(token, bytes.fromhex(challenge["nonce"]), nonce)
        SENT_MACS.append(mac.hex())
        sent = loop.time()
        conn.send(encode_control({"auth": "response", "nonce": nonce.hex(), "mac": mac.hex()}))
        try:
            verdict: Any = (await receive_control(conn)).header
        except ServiceError as exc:
            verdict = exc
        return challenge, loop.time() - sent, verdict
    finally:
        conn.abort()


def test_throttle_over_the_wire_delays_verdicts_and_lets_the_token_through() -> None:
    # The documented defaults: 5 free failures a minute, then 1 s, 2 s, 4 s... up to 5 min.
    assert (AUTH_FREE_FAILURES, AUTH_FAILURE_WINDOW_S, AUTH_MAX_DELAY_S, AUTH_MAX_ADDRESSES) == (
        5,
        60.0,
        300.0,
        10_000,
    )

    async def main() -> None:
        gate = WireGate("test", TOKEN, AuthThrottle())
        async with aio_serving(gated_server(gate)) as (address,):
            wrong = "0" * 64
            for _ in range(AUTH_FREE_FAILURES):
                challenge, _, verdict = await attempt(address, wrong)
                assert "delay" not in challenge
                assert isinstance(verdict, ServiceError)
                assert verdict.code == "auth-failed"
            # The sixth failure: the address is delayed 1 s from now on.
            challenge, _, verdict = await attempt(address, wrong)
            assert "delay" not in challenge
            assert verdict.code == "auth-failed"
            # The next attempt is announced as delayed, and the right token gets in after it.
            challenge, took, verdict = await attempt(address, TOKEN)
            assert 0 < challenge["delay"] <= 1.0
            assert took >= challenge["delay"] - 0.05  # the verdict waited out the delay
            assert verdict["auth"] == "ok"
            # The success cleared the record: the next attempt is answered at once.
            challenge, _, verdict = await attempt(address, TOKEN)
            assert "delay" not in challenge
            assert verdict["auth"] == "ok"

    asyncio.run(main())


def test_a_delayed_client_waits_instead_of_giving_up() -> None:
    async def main() -> None:
        throttle = AuthThrottle(free_failures=0)
        gate = WireGate("test", TOKEN, throttle)
        async with aio_serving(gated_server(gate)) as (address,):
            throttle.failure(ME, asyncio.get_running_loop().time())  # delayed 1 s
            conn = await raw(address)
            # Its own handshake timeout is shorter than the delay: the announced delay
            # extends it, so the real client still gets in.
            await authenticate_client(conn, TOKEN, service="test", timeout=0.5)
            assert (await receive_control(conn)).header == {"event": "hi"}
            conn.abort()

    asyncio.run(main())


def test_the_client_says_when_an_address_does_not_speak_the_protocol() -> None:
    async def main() -> None:
        # An echo port sends our hello back and then nothing that answers it.
        async with aio_serving(make_echo_server()) as (address,):
            conn = await raw(address)
            with pytest.raises(HandshakeError, match="does not speak the socketkit files protocol"):
                await authenticate_client(conn, TOKEN, service="files", timeout=0.3)
            conn.abort()

    asyncio.run(main())


def test_the_client_names_the_service_it_reached() -> None:
    async def main() -> None:
        async with aio_serving(gated_server(WireGate("files", TOKEN))) as (address,):
            conn = await raw(address)
            with pytest.raises(HandshakeError, match="socketkit 'files' server, not exec") as info:
                await authenticate_client(conn, TOKEN, service="exec")
            assert info.value.error_code == "wrong-service"
            conn.abort()

    asyncio.run(main())


def test_a_client_without_a_token_is_told_so() -> None:
    async def main() -> None:
        async with aio_serving(gated_server(WireGate("files", TOKEN))) as (address,):
            conn = await raw(address)
            with pytest.raises(PermissionDenied, match="requires a token"):
                await authenticate_client(conn, None, service="files")
            conn.abort()

    asyncio.run(main())


def test_unix_socket_peers_are_told_apart_by_user(tmp_path: Path) -> None:
    async def main() -> None:
        throttle = AuthThrottle(free_failures=0)
        gate = WireGate("test", TOKEN, throttle)
        path = str(tmp_path / "gate.sock")
        async with aio_serving(gated_server(gate), [Listener(Address(path=path))]) as (address,):
            _, _, verdict = await attempt(address, "1" * 64)
            assert isinstance(verdict, ServiceError)
            assert throttle.wait_time(f"uid:{os.geteuid()}", asyncio.get_running_loop().time()) > 0

    asyncio.run(main())


def test_no_token_or_mac_is_ever_logged(caplog: pytest.LogCaptureFixture) -> None:
    macs: list[str] = []

    async def main() -> None:
        gate = WireGate("test", TOKEN, AuthThrottle(free_failures=1))
        async with aio_serving(gated_server(gate)) as (address,):
            for token in (TOKEN, "2" * 64, "3" * 64, TOKEN):
                challenge, _, verdict = await attempt(address, token)
                macs.append(verdict["mac"] if isinstance(verdict, dict) else "")
                macs.append(challenge["nonce"])
            conn = await raw(address)
            await authenticate_client(conn, TOKEN, service="test")
            conn.abort()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "authentication failed" in text
    assert "authenticated" in text
    for secret in [TOKEN, "2" * 64, "3" * 64, *filter(None, macs), *SENT_MACS]:
        assert secret not in text


@pytest.mark.parametrize("service", ["exec", "files"])
def test_both_services_open_through_the_gate(service: str, tmp_path: Path) -> None:
    from socketkit.services.filexfer.server import FileServer, FileSettings
    from socketkit.services.filexfer.store import FileStore
    from socketkit.services.rexec.policy import ExecPolicy
    from socketkit.services.rexec.server import ExecServer, ExecSettings

    server: Any
    if service == "exec":
        server = ExecServer(ExecSettings(root=str(tmp_path), policy=ExecPolicy(), token=TOKEN))
    else:
        server = FileServer(FileSettings(store=FileStore(str(tmp_path), None), token=TOKEN))
    server.gate.timeout = 0.3

    async def main() -> None:
        async with aio_serving(server.make_server()) as (address,):
            conn = await raw(address)
            conn.send(encode_hello())  # then silence: exec has no idle timeout at all
            events = await events_until_closed(conn)
            conn.abort()
            assert events[1].header["service"] == service
            assert any(isinstance(e, ErrorFrame) and e.code == "handshake-timeout" for e in events)

    asyncio.run(main())


def test_over_the_total_cap_the_peer_with_the_most_gives_up_its_oldest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Peers with many addresses (an IPv6 /48 holds 65,536 /64s) cannot hold every slot,
    # nor push out a peer that has only one connection waiting.
    monkeypatch.setattr("socketkit.peercred.limit_key", lambda host: host)  # each source a peer

    async def main() -> None:
        gate = WireGate("test", TOKEN, timeout=30, max_unauthenticated_total=3)
        async with aio_serving(gated_server(gate)) as (address,):
            lone = await challenged(address, "127.0.1.1")
            crowd = [await challenged(address, "127.0.1.2") for _ in range(2)]
            newcomer = await from_address(address, "127.0.2.1")
            await authenticate_client(newcomer, TOKEN, service="test")
            assert (await receive_control(newcomer)).header == {"event": "hi"}
            assert EVICTED in await events_until_closed(crowd[0])
            assert gate.unauthenticated() == 2
            assert sorted(gate._pending) == ["127.0.1.1", "127.0.1.2"]
            for conn in [lone, newcomer, *crowd]:
                conn.abort()

    asyncio.run(main())


def test_a_flood_of_evictions_is_a_few_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    # 20 connections, each evicting the one before: logged the 1st, 2nd, 4th, 8th and
    # 16th time, with counts.
    async def main() -> None:
        gate = WireGate("flood", TOKEN, timeout=30, max_unauthenticated=1)
        async with aio_serving(gated_server(gate)) as (address,):
            conns = [await challenged(address) for _ in range(21)]
            assert gate.unauthenticated() == 1
            for conn in conns:
                conn.abort()

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records if r.name == "socketkit.auth.session"]
    lines = [m for m in messages if "flood: evicted" in m]
    assert [line.rsplit("(", 1)[1] for line in lines] == [f"{n} so far)" for n in (1, 2, 4, 8, 16)]
    # The evicted said nothing more (only the last one, never evicted, leaves).
    assert len([m for m in messages if "left before authenticating" in m]) <= 1


def test_both_services_divide_the_gate_among_workers(tmp_path: Path) -> None:
    from socketkit.services.filexfer.server import FileServer, FileSettings
    from socketkit.services.filexfer.store import FileStore

    with FileStore(str(tmp_path), None) as store:
        one = FileServer(FileSettings(store=store, token=TOKEN)).gate
        four = FileServer(FileSettings(store=store, token=TOKEN, workers=4)).gate
    assert (one.max_unauthenticated, one.max_unauthenticated_total, one.throttle.free_failures) == (
        DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
        512,
        AUTH_FREE_FAILURES,
    )
    assert (four.max_unauthenticated, four.max_unauthenticated_total, four.throttle.free_failures) == (
        DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS // 4,
        512 // 4,
        max(1, AUTH_FREE_FAILURES // 4),
    )
    many = WireGate.for_workers("x", TOKEN, AuthThrottle(), workers=64)
    assert (many.max_unauthenticated, many.throttle.free_failures) == (1, 1)  # at least one each
