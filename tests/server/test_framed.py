"""FramedRequestHandler: codecs over the blocking engine; bad input never stops the server."""

from __future__ import annotations

import socket

import pytest

import socketkit.server as ss
from socketkit.codec import (
    END_OF_STREAM,
    NEED_DATA,
    Data,
    ErrorFrame,
    Hello,
    LineDecoder,
    WireDecoder,
    WireEvent,
    encode,
    encode_data,
    encode_error,
    encode_hello,
    encode_line,
    negotiate_version,
)
from socketkit.errors import RemoteProtocolError
from socketkit.testing import serving
from tests.helpers import connect, recv_exactly, recv_line, recv_until_closed


class WireEcho(ss.FramedRequestHandler[WireEvent]):
    def make_decoder(self) -> WireDecoder:
        return WireDecoder(max_frame_size=1024)

    def setup(self) -> None:
        super().setup()
        self.send(encode_hello())

    def handle_message(self, message: WireEvent) -> None:
        if isinstance(message, Hello):
            negotiate_version(message)
        elif isinstance(message, Data):
            self.send(encode(message))

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        self.send(encode_error(exc.error_code, str(exc)))


def wire_client(address: tuple[str, int]) -> tuple[socket.socket, WireDecoder]:
    sock = connect(address)
    sock.sendall(encode_hello())
    return sock, WireDecoder()


def read_events(sock: socket.socket, decoder: WireDecoder, count: int) -> list[object]:
    events: list[object] = []
    while len(events) < count:
        event = decoder.next_event()
        if event is NEED_DATA:
            decoder.feed(sock.recv(65536))
        elif event is END_OF_STREAM:
            break
        else:
            events.append(event)
    return events


def assert_still_serving(address: tuple[str, int]) -> None:
    sock, decoder = wire_client(address)
    with sock:
        sock.sendall(encode_data(b"x" * 1024))
        assert read_events(sock, decoder, 2) == [Hello(1, 1), Data(b"x" * 1024)]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "bad-magic"),
        (encode_hello() + bytes.fromhex("ffffffff 02 00"), "frame-too-large"),
        (encode_hello() + bytes.fromhex("00000001 7f 00 00"), "bad-frame-type"),
        (bytes.fromhex("89534b57 05 09 0000"), "version-mismatch"),
    ],
)
def test_bad_input_gets_an_error_frame_and_the_next_client_is_served(
    bad: bytes, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), WireEcho)
    with serving(server):
        sock = connect(server.server_address)
        with sock:
            sock.sendall(bad)
            decoder = WireDecoder()
            decoder.feed(recv_until_closed(sock))
            decoder.feed(b"")
            events = list(decoder)
        assert events[0] == Hello(1, 1)
        assert isinstance(events[1], ErrorFrame)
        assert events[1].code == code
        assert_still_serving(server.server_address)
    assert "protocol error from 127.0.0.1:" in caplog.text


def test_a_client_vanishing_mid_frame_is_logged_and_harmless(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), WireEcho)
    with serving(server):
        sock = connect(server.server_address)
        sock.sendall(encode_hello() + encode_data(b"abcdef")[:-3])
        assert recv_exactly(sock, 8) == encode_hello()  # unread data would make close() a RST
        sock.close()
        assert_still_serving(server.server_address)
    assert "stream ended inside a frame" in caplog.text


class LineUpper(ss.FramedRequestHandler[bytes]):
    def make_decoder(self) -> LineDecoder:
        return LineDecoder(max_line_length=16)

    def handle_message(self, message: bytes) -> None:
        self.send(encode_line(message.upper()))

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        self.send(b"ERROR " + exc.error_code.encode() + b"\n")


def test_line_protocol_over_framed_handler() -> None:
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), LineUpper)
    with serving(server):
        sock = connect(server.server_address)
        with sock:
            # Two messages in one segment, then one split over three: framing handles both.
            sock.sendall(b"one\ntwo\nth")
            sock.sendall(b"r")
            sock.sendall(b"ee\r\n")
            assert [recv_line(sock) for _ in range(3)] == [b"ONE\n", b"TWO\n", b"THREE\n"]
            sock.sendall(b"x" * 100)
            assert recv_until_closed(sock) == b"ERROR frame-too-large\n"


def test_idle_timeout_closes_a_silent_connection(caplog: pytest.LogCaptureFixture) -> None:
    class Quick(LineUpper):
        timeout = 0.1

    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Quick)
    with serving(server):
        sock = connect(server.server_address)
        with sock:
            assert recv_until_closed(sock) == b""
    assert "TimeoutError" in caplog.text
