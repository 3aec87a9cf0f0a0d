"""Mask matching (WHO, bans): the same answers as a regex would give, without a regex's
backtracking, which a mask like ``*a*a*a...*b`` turned into a frozen server."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from socketkit.codec.irc import casefold
from socketkit.services.chat import numerics as n
from socketkit.services.chat.names import mask_matches
from tests.services.chat.harness import Net


def _by_regex(mask: str, hostmask: str) -> bool:
    """The reference: the mask as a regex (fine for the small inputs drawn here)."""
    pattern = re.escape(casefold(mask)).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(pattern, casefold(hostmask), re.DOTALL) is not None


@given(mask=st.text(alphabet="aAb*?![]", max_size=10), hostmask=st.text(alphabet="aAb![]{}", max_size=10))
def test_masks_match_as_globs(mask: str, hostmask: str) -> None:
    assert mask_matches(mask, hostmask) == _by_regex(mask, hostmask)


def test_examples() -> None:
    assert mask_matches("*!*@127.*", "Nick!~u@127.0.0.1")
    assert mask_matches("NICK[a]!*@*", "nick{A}!u@h")  # RFC 1459 case mapping
    assert mask_matches("a?c*", "abcdef")
    assert not mask_matches("a?c", "abcd")
    assert not mask_matches("*.example", "x!y@example")
    assert mask_matches("**", "")


def test_a_mask_made_to_backtrack_is_answered_at_once() -> None:
    net = Net()
    asker = net.register("asker")
    for i in range(20):  # nicks the mask almost matches, the worst case for a backtracker
        net.register("a" * 28 + chr(ord("c") + i) * 2)  # no b: no match, after trying hard
    # As a regex, this mask tries every way of placing 12 of the a's: C(51, 12) for each
    # user's nick!user@host, hours of work for one line.
    net.send(asker, "WHO " + "*a" * 12 + "*b")
    assert net.codes(asker) == [n.RPL_ENDOFWHO]
    net.send(asker, "JOIN #x")
    net.send(asker, "MODE #x +b " + "*a" * 12 + "*b")
    someone = net.register("a" * 28 + "zz")
    net.send(someone, "JOIN #x")  # the ban is checked on the way in: quickly, and it does not match
    assert n.RPL_ENDOFNAMES in net.codes(someone)
