"""serve talk and talk with peers that are not each other: the tutorial's own story-2
client and server (plain sockets, UTF-8 text), a text server, a dead server; and the
keepalive and reasons that make every disconnect explained."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator

from socketkit.codec.wire import Control, WireDecoder, encode_hello
from socketkit.services.talk.protocol import encode_welcome
from tests.cli.procs import Proc
from tests.helpers import TIMEOUT, connect, recv_exactly, recv_line, recv_until_closed


def _port(server: Proc) -> int:
    return int(server.expect(r"talk listening on 127\.0\.0\.1:(\d+)").group(1))


def test_the_tutorials_story_2_client_talks_with_serve_talk() -> None:
    with Proc("serve", "talk", "--port", "0") as server:
        ip_port = ("127.0.0.1", _port(server))
        # The tutorial's story-2 client, as it is (but for the test's timeout and inputs).
        sk = socket.socket()
        sk.settimeout(TIMEOUT)
        sk.connect(ip_port)
        with sk:
            for inp, answer in (("俺喜欢你", "滚蛋!"), ("再想想?", "不")):
                sk.sendall(bytes(inp, "utf8"))
                server.expect(rf"\[#1 127\.0\.0\.1:\d+\] {re.escape(inp)}$")  # the operator reads it...
                server.write(f"@1 {answer}\n".encode())  # ...and answers
                server_response = sk.recv(1024)
                assert str(server_response, "utf8") == answer + "\n"
            sk.sendall(bytes("exit", "utf8"))
        assert any(line.endswith("joined (plain text)") for line in server.seen["out"])
        server.expect(r"\* #1 127\.0\.0\.1:\d+ left")
        server.write(b"/quit\n")
        assert server.wait() == 0
        assert not [line for line in server.seen["err"] if "Traceback" in line or "Error" in line]


def test_a_plain_client_gets_a_line_for_bad_input_and_goes_on() -> None:
    with Proc("serve", "talk", "--port", "0") as server:
        with connect(("127.0.0.1", _port(server))) as sock:
            sock.sendall(b"caf\xe9 au lait\n")  # Latin-1, not UTF-8
            server.expect(r"\[#1 [^\]]+\] caf\ufffd au lait$")
            sock.sendall(b"y" * 70_000 + b"\n")
            server.expect(r"! #1 127\.0\.0\.1:\d+ sent a line over 65536 bytes: dropped")
            assert recv_line(sock) == b"* your line was over 65536 bytes: dropped\n"
            sock.sendall(b"still here\n")
            server.expect(r"\[#1 [^\]]+\] still here$")
            server.write(b"/kick 1\n")
            assert recv_until_closed(sock) == b"* disconnected: kicked by the operator\n"
        server.expect(r"#1 .* was disconnected \(kicked by the operator\)")
    assert not [line for line in server.seen["err"] if "Traceback" in line]


@contextlib.contextmanager
def _tutorial_server(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A one-connection plain socket server on a thread; yields its address."""
    sk = socket.socket()
    sk.bind(("127.0.0.1", 0))
    sk.listen(2)
    sk.settimeout(TIMEOUT)

    def run() -> None:
        with contextlib.suppress(OSError):
            conn, _ = sk.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                serve(conn)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield f"127.0.0.1:{sk.getsockname()[1]}"
    finally:
        thread.join(TIMEOUT)
        sk.close()


def test_talk_says_when_the_peer_is_the_tutorials_server() -> None:
    crashed: list[Exception] = []

    def story_2_server(conn: socket.socket) -> None:
        try:
            while True:
                client_data = conn.recv(1024)
                if str(client_data, "utf8") == "exit":  # our hello is not UTF-8: it dies here
                    break
                print(str(client_data, "utf8"))
                conn.sendall(bytes("(the operator's input())", "utf8"))
        except UnicodeDecodeError as exc:
            crashed.append(exc)  # the tutorial's process ends: its socket closes

    with _tutorial_server(story_2_server) as address, Proc("talk", address) as client:
        client.expect(
            rf"^HandshakeError: {address} is not a socketkit talk server: it closed the connection "
            r"without a word \(a plain-text server takes `socketkit send ADDR MESSAGE`\)$",
            "err",
        )
        assert client.wait() == 1
    assert crashed
    assert not [line for line in client.seen["err"] if "Traceback" in line or "EOFError" in line]


def test_talk_says_when_the_peer_answers_in_plain_text() -> None:
    def banner_server(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.example ESMTP ready\r\n")
        recv_exactly(conn, 8)  # our hello
        conn.recv(1024)  # until the client gives up and closes

    with _tutorial_server(banner_server) as address, Proc("talk", address) as client:
        client.expect(
            r"is not a socketkit talk server: it answered in plain text \('220 mail\.example", "err"
        )
        assert client.wait() == 1


def test_an_idle_talk_client_is_kept_alive_and_silent_ones_are_told_why_they_go() -> None:
    with Proc("serve", "talk", "--port", "0", "--idle-timeout", "2") as server:
        port = _port(server)
        with Proc("talk", f"127.0.0.1:{port}") as alive:
            alive.expect(r"connected to .* as #1")
            # Two clients without keepalive, connected after #1: a wire one and a plain one.
            wire = connect(("127.0.0.1", port))
            plain = connect(("127.0.0.1", port))
            with wire, plain:
                wire.sendall(encode_hello())
                server.expect(r"\* #2 .* joined$")
                plain.sendall(b"hello\n")
                server.expect(r"\[#3 [^\]]+\] hello$")
                decoder = WireDecoder()
                decoder.feed(recv_until_closed(wire))
                controls = [e.header for e in decoder if isinstance(e, Control)]
                assert controls == [
                    {"event": "welcome", "id": 2, "idle_timeout": 2.0},
                    {"event": "bye", "reason": "idle for 2 s"},
                ]
                assert recv_until_closed(plain) == b"* disconnected: idle for 2 s\n"
            server.expect(r"\* #2 .* was disconnected \(idle for 2 s\)")
            server.expect(r"\* #3 .* was disconnected \(idle for 2 s\)")
            # #1 has said nothing for longer than #2 and #3, and is still here: its pings.
            server.write(b"@1 still there?\n")
            alive.expect(r"^server> still there\?$")
            server.signal()
            alive.expect(r"^\* disconnected: the server is shutting down$")
            assert alive.wait() == 0
        assert server.wait() == 0


def test_talk_notices_a_server_that_stops_answering() -> None:
    def frozen_server(conn: socket.socket) -> None:
        recv_exactly(conn, 8)  # the client's hello
        conn.sendall(encode_hello() + encode_welcome(1, 0.3))
        recv_until_closed(conn)  # the pings, never answered, until the client gives up

    with _tutorial_server(frozen_server) as address, Proc("talk", address) as client:
        client.expect(r"connected to .* as #1")
        client.expect(r"^\* the server stopped answering \(nothing for 0\.3\d* s\): disconnecting$", "err")
        assert client.wait() == 1


def test_talk_says_when_the_connection_is_lost() -> None:
    def vanishing_server(conn: socket.socket) -> None:
        recv_exactly(conn, 8)
        conn.sendall(encode_hello() + encode_welcome(1, None))
        conn.recv(1024)  # the client's first line: then the server vanishes (RST)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with _tutorial_server(vanishing_server) as address, Proc("talk", address) as client:
        client.expect(r"connected to .* as #1")
        client.write(b"hello?\n")
        client.expect(r"^\* connection lost: ", "err")
        assert client.wait() == 1


def test_a_talk_line_over_64_kib_is_one_line_of_error_and_the_talk_goes_on() -> None:
    with Proc("serve", "talk", "--port", "0") as server:
        with Proc("talk", f"127.0.0.1:{_port(server)}") as client:
            client.expect("as #1")
            client.write(b"z" * 70_000 + b"\nafter the long one\n")
            client.expect(r"^! a line over 65536 bytes was not sent \(that is the limit\)$", "err")
            server.expect(r"\[#1 [^\]]+\] after the long one$")
            client.write("é".encode() * 30_000 + b"\n")  # 60,000 bytes typed, fine
            server.expect(r"\[#1 [^\]]+\] (é+)$")
            client.close_stdin()
            assert client.wait() == 0
        assert not [line for line in client.seen["err"] if "Traceback" in line]
        server.expect(r"#1 .* left")
        # The operator's side: a message over the limit is refused in one line.
        server.write(b"x" * 70_000 + b"\n")
        server.expect(r"^! a line over 65536 bytes was not sent \(that is the limit\)$", "err")
        server.write(b"/quit\n")
        assert server.wait() == 0


def test_a_full_talk_server_says_busy() -> None:
    with Proc("serve", "talk", "--port", "0", "--max-connections", "1") as server:
        address = f"127.0.0.1:{_port(server)}"
        with Proc("talk", address) as first:
            first.expect("as #1")
            with Proc("talk", address) as second:
                second.expect(r"^ServiceError: busy: server full", "err")
                assert second.wait() == 1
