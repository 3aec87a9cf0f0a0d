"""The pure wire-v1 session, both roles: the exact bytes of docs/protocol.md, every
opening out of order refused with a reason, limits, bad MACs, replays, deadlines, the
throttle's held verdicts, and the same events however the bytes are split."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketkit.auth.handshake import ServerAuth, client_mac
from socketkit.auth.wiresession import (
    Authenticated,
    ChallengeIssued,
    ChallengeReceived,
    ClientSession,
    HelloReceived,
    Refused,
    ServerSession,
    State,
    WireSession,
    opening_refusal,
)
from socketkit.codec.base import END_OF_STREAM, NEED_DATA
from socketkit.codec.wire import (
    BodyEnd,
    BodyStart,
    Control,
    Data,
    ErrorFrame,
    Hello,
    WireDecoder,
    encode,
    encode_control,
    encode_data,
    encode_error,
    encode_hello,
)
from socketkit.errors import (
    BrokenResourceError,
    FrameTooLarge,
    HandshakeError,
    LocalProtocolError,
    PermissionDenied,
    RemoteProtocolError,
    ServiceError,
)
from tests.auth.test_protocol_doc import documented

TOKEN = "0" * 64  # the token of the byte example in docs/protocol.md section 4
SERVER_NONCE = bytes(range(32))
CLIENT_NONCE = bytes(range(32, 64))
HELLO = encode_hello()
T0 = 1000.0  # the engine's clock when the connection opened


def server(token: str | None = TOKEN, **options: Any) -> ServerSession:
    return ServerSession(token, SERVER_NONCE, "exec", now=T0, **options)


def client(token: str | None = TOKEN, **options: Any) -> ClientSession:
    return ClientSession(token, CLIENT_NONCE, "exec", now=T0, **options)


def drain(session: WireSession) -> list[object]:
    """Every event available now, up to NEED_DATA / END_OF_STREAM / Refused."""
    return list(session)


def response(token: str = TOKEN, nonce: bytes = CLIENT_NONCE) -> bytes:
    mac = client_mac(token, SERVER_NONCE, nonce)
    return encode_control({"auth": "response", "nonce": nonce.hex(), "mac": mac.hex()})


def refusal_of(session: WireSession, wire: bytes) -> Refused:
    session.feed(wire)
    events = drain(session)
    assert isinstance(events[-1], Refused), events
    assert session.state is State.REFUSED
    return events[-1]


def pump(a: WireSession, b: WireSession) -> tuple[list[object], list[object], bytes, bytes]:
    """Run two sessions against each other until neither has anything to say; return
    each one's events and everything each sent."""
    events_a: list[object] = []
    events_b: list[object] = []
    sent_a = sent_b = b""
    while True:
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            return events_a, events_b, sent_a, sent_b
        sent_a, sent_b = sent_a + out_a, sent_b + out_b
        if out_a:  # feeding b"" would mean the end of the stream
            b.feed(out_a)
        if out_b:
            a.feed(out_b)
        events_a += drain(a)
        events_b += drain(b)


# --- the exchange, byte for byte ------------------------------------------------------


def test_a_whole_exchange_is_the_documented_bytes_and_events() -> None:
    srv = server()
    cli = client(pipelined={"op": "exec", "argv": ["true"]})
    server_events, client_events, server_sent, client_sent = pump(srv, cli)
    assert server_events == [
        HelloReceived(1),
        ChallengeIssued(0.0, True),
        Authenticated(verified=True, not_before=T0),
        Control({"op": "exec", "argv": ["true"]}),  # the pipelined request, untouched
    ]
    assert client_events == [HelloReceived(1), ChallengeReceived("exec", 0.0), Authenticated(verified=True)]
    # The normative byte example of docs/protocol.md section 4, both directions.
    assert server_sent == HELLO + documented("server", "challenge") + documented("server", "ok")
    assert client_sent == HELLO + documented("client", "response") + encode_control(
        {"op": "exec", "argv": ["true"]}
    )
    assert srv.is_open
    assert cli.is_open
    assert srv.version == cli.version == 1


def test_frames_from_the_engines_decoder_give_the_same_events_as_bytes() -> None:
    # The asyncio engine's connections decode frames themselves and hand them over.
    wire = HELLO + response() + encode_data(b"after")
    by_bytes = server()
    by_bytes.feed(wire)
    by_frames = server()
    decoder = WireDecoder()
    decoder.feed(wire)
    for frame in decoder:
        by_frames.receive_frame(frame)
    assert drain(by_frames) == drain(by_bytes)
    assert by_frames.data_to_send() == by_bytes.data_to_send()


def test_a_server_without_a_token_says_none_and_opens_at_the_hello() -> None:
    srv = server(token=None, delay=5.0)
    srv.feed(HELLO)
    assert drain(srv) == [HelloReceived(1), ChallengeIssued(0.0, False), Authenticated(verified=False)]
    assert srv.data_to_send() == HELLO + encode_control({"auth": "none", "service": "exec"})
    # A client with a token still gets in, its pipelined request right behind the hello.
    cli = client(pipelined={"op": "x"})
    cli.feed(HELLO + encode_control({"auth": "none", "service": "exec"}))
    assert drain(cli) == [HelloReceived(1), ChallengeReceived("exec", 0.0), Authenticated(verified=False)]
    assert cli.data_to_send() == HELLO + encode_control({"op": "x"})


def test_the_hello_only_session_opens_and_passes_frames_through() -> None:
    session = WireSession()
    assert session.data_to_send() == HELLO
    session.feed(HELLO + encode_data(b"one") + encode(BodyStart(0)))
    assert drain(session) == [HelloReceived(1), Data(b"one"), BodyStart(0), BodyEnd()]
    assert session.is_open
    session.feed(b"")
    assert session.next_event() is END_OF_STREAM


# --- the server refuses every opening out of order, with a reason -------------------


def _control(payload: bytes) -> bytes:
    return struct.pack(">IBB", len(payload), 1, 0) + payload


SERVER_REFUSALS = [
    # (what the client sends, the code, the reason's words)
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", "bad-magic", "not speaking socketkit wire v1", id="not-wire-v1"),
    pytest.param(bytes.fromhex("89534b57 02 03 0000"), "version-mismatch", "we speak 1..1", id="version"),
    pytest.param(
        bytes.fromhex("89534b57 03 02 0000"), "handshake-failed", "bad version range", id="bad-hello"
    ),
    pytest.param(
        HELLO + encode_data(b"x"), "protocol-error", "expected the authentication, got Data", id="data"
    ),
    pytest.param(HELLO + encode(BodyStart(3)), "protocol-error", "got BodyStart", id="body"),
    pytest.param(
        HELLO + encode_control({"op": "exec"}), "bad-auth", "auth response first", id="request-first"
    ),
    pytest.param(
        HELLO + encode_control({"auth": "response", "nonce": "zz" * 32, "mac": "00" * 32}),
        "bad-auth",
        "not hex",
        id="bad-nonce",
    ),
    pytest.param(
        HELLO + encode_control({"auth": "response", "nonce": CLIENT_NONCE.hex()}),
        "bad-auth",
        "32-byte hex 'mac'",
        id="no-mac",
    ),
    pytest.param(HELLO + _control(b"{not json"), "bad-json", "", id="bad-json"),
    pytest.param(HELLO + HELLO, "frame-too-large", "exceeds", id="second-hello"),
    pytest.param(
        HELLO + bytes.fromhex("00000001 7f 00 00"), "bad-frame-type", "unknown frame type", id="type"
    ),
]


@pytest.mark.parametrize(("wire", "code", "words"), SERVER_REFUSALS)
def test_the_server_refuses_an_opening_out_of_order(wire: bytes, code: str, words: str) -> None:
    srv = server()
    refused = refusal_of(srv, wire)
    assert refused.code == code
    assert words in str(refused.error)
    assert refused.reported
    assert not refused.by_peer
    # The peer is told, in an ERROR frame after our hello (and the challenge, if sent).
    decoder = WireDecoder()
    decoder.feed(srv.data_to_send())
    frames = list(decoder)
    assert frames[0] == Hello(1, 1)
    assert frames[-1] == ErrorFrame(code, str(refused.error))


def test_an_oversize_frame_is_refused_from_its_header_alone() -> None:
    srv = server(decoder=WireDecoder(max_frame_size=16, max_control_size=64))
    # Only the 6-byte header of a 1 GiB DATA frame: refused before any payload.
    refused = refusal_of(srv, HELLO + bytes.fromhex("40000000 02 00"))
    assert isinstance(refused.error, FrameTooLarge)
    assert refused.code == "frame-too-large"
    srv = server(decoder=WireDecoder(max_frame_size=16, max_control_size=64))
    refused = refusal_of(srv, HELLO + struct.pack(">IBB", 65, 1, 0))
    assert refused.code == "frame-too-large"
    # The client's limits hold as well.
    cli = client(decoder=WireDecoder(max_control_size=64))
    refused = refusal_of(cli, HELLO + struct.pack(">IBB", 65, 1, 0))
    assert refused.code == "frame-too-large"


def test_a_wrong_token_is_refused_and_its_verdict_held_for_the_delay() -> None:
    srv = server(delay=4.0)
    srv.feed(HELLO)
    assert drain(srv) == [HelloReceived(1), ChallengeIssued(4.0, True)]
    assert srv.data_to_send() == HELLO + encode_control(
        ServerAuth(TOKEN, SERVER_NONCE, "exec").challenge(4.0)
    )
    refused = refusal_of(srv, response(token="1" * 64))
    assert isinstance(refused.error, PermissionDenied)
    assert refused.code == "auth-failed"
    assert refused.not_before == T0 + 4.0  # sent no sooner than the announced delay
    assert srv.data_to_send() == encode_error("auth-failed", "authentication failed: wrong token")
    # A right one waits just as long: the delay tells a guesser nothing.
    srv = server(delay=4.0)
    srv.feed(HELLO + response())
    assert drain(srv)[-1] == Authenticated(verified=True, not_before=T0 + 4.0)
    # A refusal that is not a verdict on a response is not held.
    srv = server(delay=4.0)
    assert refusal_of(srv, HELLO + encode_data(b"x")).not_before == 0.0


def test_a_recorded_response_is_refused_on_a_new_connection() -> None:
    recorded = response()  # a response that let someone in, captured off the wire
    replayed = ServerSession(TOKEN, bytes(32), "exec", now=T0)  # a new connection: a new nonce
    refused = refusal_of(replayed, HELLO + recorded)
    assert refused.code == "auth-failed"


def test_a_client_giving_up_or_leaving_is_not_answered() -> None:
    srv = server()
    refused = refusal_of(srv, HELLO + encode_error("bye", "x" * 1000))
    assert isinstance(refused.error, BrokenResourceError)
    assert refused.by_peer
    assert not refused.reported
    assert "gave up with an error frame ('bye'" in str(refused.error)
    assert len(str(refused.error)) < 300  # its words are quoted cut short
    assert srv.data_to_send() == HELLO + encode_control(ServerAuth(TOKEN, SERVER_NONCE, "exec").challenge())
    for wire in (b"", HELLO):  # the stream ends before the hello, or before the response
        srv = server()
        srv.feed(wire)
        refused = refusal_of(srv, b"")  # b"": the end of the stream
        assert isinstance(refused.error, EOFError)
        assert refused.by_peer
        assert not refused.reported
        assert refused.code == "closed"
    # Mid-frame, it is a protocol error, reported.
    srv = server()
    srv.feed(HELLO + response()[:10])
    srv.feed(b"")
    refused = drain(srv)[-1]
    assert isinstance(refused, Refused)
    assert refused.code == "incomplete-frame"


def test_the_engine_reports_what_broke_its_connection() -> None:
    srv = server()
    srv.receive_frame(Hello(1, 1))
    srv.receive_error(BrokenResourceError("reset"))
    events = drain(srv)
    assert isinstance(events[-1], Refused)
    assert events[-1].by_peer
    assert not events[-1].reported
    srv = server()
    srv.receive_error(HandshakeError("bad", error_code="bad-magic"))
    assert drain(srv)[-1].reported  # type: ignore[union-attr]
    # Frames out of order from the engine's decoder are refused like bytes are.
    srv = server()
    srv.receive_frame(Control({"auth": "response"}))
    refused = drain(srv)[-1]
    assert isinstance(refused, Refused)
    assert "expected a hello, got Control" in str(refused.error)
    srv = server()
    srv.receive_frame(Hello(1, 1))
    srv.receive_frame(Hello(1, 1))
    refused = drain(srv)[-1]
    assert isinstance(refused, Refused)
    assert "got Hello" in str(refused.error)


def test_the_server_deadline_includes_the_delay_and_is_reported() -> None:
    srv = server(timeout=5.0, delay=2.0)
    assert srv.deadline == T0 + 7.0
    assert not srv.check_deadline(T0 + 6.9)
    assert drain(srv) == []
    assert srv.check_deadline(T0 + 7.0)
    refused = drain(srv)[-1]
    assert isinstance(refused, Refused)
    assert refused.code == "handshake-timeout"
    assert srv.data_to_send() == HELLO + encode_error(
        "handshake-timeout", "authentication did not finish within 5 s"
    )
    opened = server()
    opened.feed(HELLO + response())
    drain(opened)
    assert not opened.check_deadline(T0 + 100)  # an open session has no deadline left


def test_a_refused_session_is_over() -> None:
    srv = server()
    refusal_of(srv, b"nope")
    srv.data_to_send()
    srv.feed(HELLO + response())
    srv.receive_frame(Hello(1, 1))
    assert srv.data_to_send() == b""
    assert not srv.check_deadline(T0 + 100)
    with pytest.raises(LocalProtocolError, match="refused"):
        srv.next_event()


def test_after_the_opening_bad_input_is_the_services_to_report() -> None:
    srv = server(decoder=WireDecoder(max_frame_size=4))
    srv.feed(HELLO + response() + encode_data(b"12345"))
    assert drain_until_error(srv) == [HelloReceived(1), ChallengeIssued(0.0, True), Authenticated(True, T0)]


def drain_until_error(session: WireSession) -> list[object]:
    events: list[object] = []
    with pytest.raises(FrameTooLarge):
        while True:
            event = session.next_event()
            assert event is not NEED_DATA
            events.append(event)
    return events


# --- the client ------------------------------------------------------------------------


def challenge_bytes(delay: float = 0.0, service: str = "exec") -> bytes:
    return encode_control(ServerAuth(TOKEN, SERVER_NONCE, service).challenge(delay))


def ok_bytes(nonce: bytes = CLIENT_NONCE) -> bytes:
    """The "ok" a real server sends to a client whose nonce was ``nonce``."""
    mac = client_mac(TOKEN, SERVER_NONCE, nonce)
    header = {"auth": "response", "nonce": nonce.hex(), "mac": mac.hex()}
    return encode_control(ServerAuth(TOKEN, SERVER_NONCE, "exec").verify(header))


CLIENT_REFUSALS = [
    # (what the server sends, the error type, the code)
    pytest.param(HELLO + encode_data(b"x"), RemoteProtocolError, "protocol-error", id="data-first"),
    pytest.param(HELLO + ok_bytes(), RemoteProtocolError, "bad-auth", id="ok-without-challenge"),
    pytest.param(
        HELLO + encode_error("busy", "too many unauthenticated connections"), ServiceError, "busy", id="busy"
    ),
    pytest.param(
        HELLO + challenge_bytes(service="files"), HandshakeError, "wrong-service", id="wrong-service"
    ),
    pytest.param(
        HELLO + challenge_bytes() + challenge_bytes(),
        RemoteProtocolError,
        "bad-auth",
        id="challenge-replayed",
    ),
    pytest.param(
        HELLO + challenge_bytes() + encode_data(b"output"),
        RemoteProtocolError,
        "protocol-error",
        id="data-before-ok",
    ),
    pytest.param(
        HELLO + challenge_bytes() + encode_error("auth-failed", "wrong token"),
        ServiceError,
        "auth-failed",
        id="wrong-token",
    ),
]


@pytest.mark.parametrize(("wire", "error", "code"), CLIENT_REFUSALS)
def test_the_client_refuses_a_server_out_of_order(wire: bytes, error: type[Exception], code: str) -> None:
    cli = client()
    refused = refusal_of(cli, wire)
    assert isinstance(refused.error, error)
    assert refused.code == code
    # A server that fails after the hello is not answered.
    assert not refused.reported
    assert cli.data_to_send() in (HELLO, HELLO + documented("client", "response"))


def test_an_impostor_without_the_token_is_caught_by_its_proof() -> None:
    cli = client(pipelined={"op": "exec"})
    cli.feed(HELLO + challenge_bytes())
    assert drain(cli) == [HelloReceived(1), ChallengeReceived("exec", 0.0)]
    # The impostor replays the "ok" a real server once sent to another client.
    refused = refusal_of(cli, ok_bytes(nonce=bytes(32)))
    assert isinstance(refused.error, PermissionDenied)
    assert refused.code == "server-auth-failed"
    cli = client()
    cli.feed(HELLO + challenge_bytes())
    refused = refusal_of(cli, encode_control({"auth": "ok", "mac": "00" * 32}))
    assert refused.code == "server-auth-failed"


def test_a_client_without_a_token_is_told_so_before_sending_anything() -> None:
    cli = client(token=None, pipelined={"op": "exec"})
    refused = refusal_of(cli, HELLO + challenge_bytes())
    assert isinstance(refused.error, PermissionDenied)
    assert refused.code == "no-token"
    assert cli.data_to_send() == HELLO  # neither a response nor the request


def test_the_client_tells_a_peer_that_fails_the_hello() -> None:
    cli = client()
    refused = refusal_of(cli, b"SSH-2.0-OpenSSH_9.6\r\n")
    assert refused.code == "bad-magic"
    assert refused.reported
    cli = client()
    refused = refusal_of(cli, bytes.fromhex("89534b57 02 02 0000"))
    assert refused.code == "version-mismatch"
    assert cli.data_to_send() == HELLO + encode_error(
        "version-mismatch", "no common protocol version: we speak 1..1, the peer speaks 2..2"
    )


def test_an_announced_delay_moves_the_clients_deadline_up_to_its_cap() -> None:
    cli = client(timeout=5.0, max_delay=30.0)
    assert cli.deadline == T0 + 5.0
    cli.feed(HELLO + challenge_bytes(delay=12.5))
    assert drain(cli)[-1] == ChallengeReceived("exec", 12.5)
    assert cli.deadline == T0 + 17.5
    capped = client(timeout=5.0, max_delay=30.0)
    capped.feed(HELLO + challenge_bytes(delay=10_000))
    drain(capped)
    assert capped.deadline == T0 + 35.0
    assert capped.check_deadline(T0 + 35.0)
    refused = drain(capped)[-1]
    assert isinstance(refused, Refused)
    assert isinstance(refused.error, HandshakeError)
    assert str(refused.error) == "no answer within 5 s"
    assert not refused.reported
    assert capped.data_to_send() == HELLO + documented("client", "response")


def test_nonces_must_have_their_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ServerSession(TOKEN, b"short", now=T0)
    with pytest.raises(ValueError, match="32 bytes"):
        ClientSession(TOKEN, b"short", now=T0)
    with pytest.raises(ValueError, match="negative"):
        ServerSession(TOKEN, SERVER_NONCE, now=T0, delay=-1)
    with pytest.raises(LocalProtocolError):
        ClientSession(TOKEN, CLIENT_NONCE, now=T0, pipelined={"x": object()})


def test_opening_refusal_is_a_hello_then_the_error() -> None:
    assert opening_refusal("busy", "try later") == HELLO + encode_error("busy", "try later")


# --- any split of the bytes gives the same events ----------------------------------


def split(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(cuts)
    return [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True) if a < b]


def feed_in_chunks(session: WireSession, chunks: list[bytes]) -> tuple[list[object], bytes]:
    events: list[object] = []
    sent = session.data_to_send()
    for chunk in chunks:
        session.feed(chunk)
        events += drain(session)
        sent += session.data_to_send()
    return events, sent


after_opening = st.lists(
    st.one_of(
        st.builds(Data, st.binary(max_size=40), st.integers(0, 3)),
        st.builds(
            Control, st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=6), max_size=3)
        ),
    ),
    max_size=5,
)


@given(
    token=st.sampled_from([TOKEN, None, "s3cret" * 8]),
    delay=st.sampled_from([0.0, 1.5]),
    request=st.none() | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    frames=after_opening,
    data=st.data(),
)
def test_any_split_of_a_valid_exchange_gives_the_same_events(
    token: str | None, delay: float, request: dict[str, int] | None, frames: list[Any], data: st.DataObject
) -> None:
    def pair() -> tuple[ServerSession, ClientSession]:
        return (
            ServerSession(token, SERVER_NONCE, "exec", now=T0, delay=delay),
            ClientSession(token, CLIENT_NONCE, "exec", now=T0, pipelined=request),
        )

    srv, cli = pair()
    server_events, client_events, server_sent, client_sent = pump(srv, cli)
    assert isinstance(server_events[-1 - (request is not None)], Authenticated)
    assert isinstance(client_events[-1], Authenticated)
    client_wire = client_sent + b"".join(encode(f) for f in frames)
    server_wire = server_sent + b"".join(encode(f) for f in frames)
    whole_server = server_events + list(frames)
    whole_client = [*client_events, *frames]
    client_cuts = data.draw(st.lists(st.integers(0, len(client_wire)), max_size=10))
    server_cuts = data.draw(st.lists(st.integers(0, len(server_wire)), max_size=10))
    fresh_server, fresh_client = pair()
    got, sent = feed_in_chunks(fresh_server, split(client_wire, client_cuts))
    assert got == whole_server
    assert sent == server_sent
    got, sent = feed_in_chunks(fresh_client, split(server_wire, server_cuts))
    assert got == whole_client
    assert sent == client_sent
