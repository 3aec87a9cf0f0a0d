"""serve talk and talk: an operator with three clients, one of which vanishes."""

from __future__ import annotations

import socket
import struct

from socketkit.codec.wire import Control, Data, WireDecoder, encode_data, encode_hello
from socketkit.services.talk.protocol import (
    Broadcast,
    Kick,
    ListClients,
    Quit,
    Say,
    parse_command,
)
from tests.cli.procs import Proc
from tests.helpers import connect


def test_operator_and_three_clients() -> None:
    with Proc("serve", "talk", "--port", "0") as server:
        port = int(server.expect(r"talk listening on 127\.0\.0\.1:(\d+)").group(1))
        address = f"127.0.0.1:{port}"
        alice = Proc("talk", address)
        alice.expect(r"connected to .* as #1")
        with alice, Proc("talk", address) as bob:
            server.expect(r"\* #1 127\.0\.0\.1:\d+ joined")
            bob.expect(r"connected to .* as #2")
            server.expect(r"\* #2 .* joined")

            # A third client: handshakes, talks, then vanishes (RST, no goodbye).
            carol = connect(("127.0.0.1", port))
            carol.sendall(encode_hello() + encode_data("我是 carol".encode()))
            server.expect(r"\* #3 .* joined")
            server.expect(r"\[#3 127\.0\.0\.1:\d+\] 我是 carol")
            carol.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            carol.close()
            server.expect(r"\* #3 .* vanished")

            alice.write(b"hello from alice\n")
            server.expect(r"\[#1 127\.0\.0\.1:\d+\] hello from alice")

            # A long message arrives whole (the tutorial's recv(1024) cut it).
            long_text = "x" * 50_000
            bob.write(long_text.encode() + b"\n")
            match = server.expect(r"\[#2 [^\]]+\] (x+)$")
            assert len(match.group(1)) == 50_000

            server.write(b"@1 just for alice\n")
            alice.expect("^server> just for alice$")
            server.write(b"for everyone\n")
            alice.expect("^server> for everyone$")
            bob.expect("^server> for everyone$")
            assert not any("just for alice" in line for line in bob.seen["out"])

            server.write(b"/list\n")
            server.expect(r"^#1 127\.0\.0\.1:\d+ connected")
            server.write(b"@9 nobody\n")
            server.expect("no client #9")

            alice.write(b"exit\n")
            server.expect(r"\* #1 .* left")
            assert alice.wait() == 0

            server.write(b"/kick 2\n")
            bob.expect(r"^\* disconnected: kicked by the operator$")
            assert bob.wait() == 0
            server.expect(r"\* #2 .* was disconnected \(kicked by the operator\)")

        server.write(b"/quit\n")
        assert server.wait() == 0


def test_clients_are_told_the_server_is_shutting_down() -> None:
    with Proc("serve", "talk", "--port", "0") as server:
        port = int(server.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        sock = connect(("127.0.0.1", port))
        with sock:
            sock.sendall(encode_hello())
            server.expect("joined")
            server.signal()
            decoder = WireDecoder()
            events: list[object] = []
            while True:
                chunk = sock.recv(65536)
                decoder.feed(chunk)
                events.extend(decoder)
                if not chunk:
                    break
        assert server.wait() == 0
    byes = [e.header for e in events if isinstance(e, Control) and e.header.get("event") == "bye"]
    assert byes == [{"event": "bye", "reason": "the server is shutting down"}]
    assert not [e for e in events if isinstance(e, Data)]


def test_a_client_that_begins_like_wire_v1_and_is_not_gets_an_error_frame() -> None:
    with Proc("serve", "talk", "--port", "0") as server:
        port = int(server.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        sock = connect(("127.0.0.1", port))
        with sock:
            sock.sendall(b"\x89PNG\r\n\x1a\n")  # 0x89 (not text): a binary peer, not ours
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert b'"code":"bad-magic"' in data
        with Proc("talk", f"127.0.0.1:{port}") as client:  # the next client is fine
            client.expect("as #1")


def test_operator_commands_parse() -> None:
    assert parse_command("@3 hi there") == Say((3,), "hi there")
    assert parse_command("@1,2 both") == Say((1, 2), "both")
    assert parse_command("@all everyone") == Broadcast("everyone")
    assert parse_command("plain") == Broadcast("plain")
    assert parse_command("/list") == ListClients()
    assert parse_command("/kick 4") == Kick(4)
    assert parse_command("/quit") == Quit()
    assert parse_command("   ") is None
    for bad in ("/kick x", "/nope", "@x hi", "@1,x hi"):
        try:
            parse_command(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} should be refused")
