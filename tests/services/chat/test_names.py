"""Names that would read as something else are refused (pure): channel names, nicks,
user names and keys holding controls, bidi overrides, line separators, zero-width or odd
space characters; and numbers a client gives are ASCII digits within bounds, never a
crash (``str.isdigit`` takes ``²``, which ``int`` refuses)."""

from __future__ import annotations

import pytest

from socketkit.services.chat import numerics as n
from tests.services.chat.harness import Net

TRICKS = [
    "\x01",  # C0
    "\x1b[31m",  # ESC: a terminal escape
    "\x7f",  # DEL
    "\x85",  # C1: NEL, a line break to some
    "\x9b",  # C1: CSI
    *(chr(c) for c in range(0x202A, 0x202F)),  # bidi embeddings and overrides
    *(chr(c) for c in range(0x2066, 0x206A)),  # bidi isolates
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u200f",  # right-to-left mark
    "\u2060",  # word joiner
    "\ufeff",  # BOM
    "\u00a0",  # no-break space
    "\u3000",  # ideographic space
    "\U000e0001",  # language tag (a format character)
]


@pytest.mark.parametrize("trick", TRICKS, ids=[f"U+{ord(t[0]):04X}" for t in TRICKS])
def test_names_with_controls_bidi_or_invisible_characters_are_refused(trick: str) -> None:
    net = Net()
    alice = net.register("alice")
    net.send(alice, f"JOIN #chat{trick}gnp.exe")
    assert net.codes(alice) == [n.ERR_NOSUCHCHANNEL]
    assert not net.state.channels
    net.send(alice, f"NICK ali{trick}ce")
    assert net.codes(alice) == [n.ERR_ERRONEUSNICKNAME]
    client = net.connect()
    net.send(client, "NICK bob")
    net.send(client, f"USER b{trick}ob 0 * :Bob")
    assert net.codes(client) == [n.ERR_INVALIDUSERNAME]
    assert not client.registered
    net.send(alice, "JOIN #room")
    net.take(alice)
    net.send(alice, f"MODE #room +k se{trick}same")
    assert net.codes(alice) == [n.ERR_INVALIDKEY]


@pytest.mark.parametrize("name", ["#café", "#日本語", "#chat😀", "#a-b_c.d", "#\ue000private"])
def test_names_in_any_script_are_fine(name: str) -> None:
    net = Net()
    alice = net.register("alice")
    net.send(alice, f"JOIN {name}")
    assert net.take(alice)[0].params == (name,)


def test_numbers_are_ascii_digits_within_bounds() -> None:
    net = Net()
    alice = net.register("alice", caps="batch draft/chathistory")
    net.send(alice, "JOIN #room")
    net.take(alice)
    for limit in ("²", "99999999999999999999", "0"):
        net.send(alice, f"MODE #room +l {limit}")
        assert net.codes(alice) == [n.ERR_INVALIDMODEPARAM], limit
    assert net.state.channels["#room"].limit is None
    net.send(alice, "MODE #room +l 0010")
    assert net.take(alice)[0].params[1:] == ("+l", "10")
    net.send(alice, "CHATHISTORY LATEST #room * ²")
    assert net.take(alice)[0].params[:2] == ("CHATHISTORY", "INVALID_PARAMS")
    net.send(alice, "CHATHISTORY BEFORE #room timestamp=99999-01-01T00:00:00Z 5")
    assert net.take(alice)[0].params[:2] == ("CHATHISTORY", "INVALID_PARAMS")
    net.send(alice, "CAP LS ³")
    assert net.take(alice)[0].params[1] == "LS"
