"""Chat's per-peer rules tell local users apart (red-team round 2, finding 5): each local
user has its own budget of connections and of channels, whichever 127.x address it
connects from."""

from __future__ import annotations

import os

from socketkit.services.chat import numerics as n
from tests.other_user import OtherUser
from tests.services.chat.ircclient import Irc
from tests.services.chat.servers import chat_server

ME = f"uid:{os.geteuid()}"


def test_one_local_user_at_its_connection_cap_does_not_keep_another_out() -> None:
    # Before: all of loopback was one peer, so 256 connections of one user shut every
    # other local user out (`too many connections from loopback`).
    with (
        chat_server(server_options={"max_connections_per_address": 2}) as (address,),
        Irc(address, "one"),
        Irc(address, "two"),
    ):
        with Irc(address) as third:
            assert third.closed_reason() == f"Closing link: too many connections from {ME} (2)"

        def register_as_nobody(hold: list[object]) -> str:
            irc = Irc(address)
            hold.append(irc)
            irc.send("NICK other", "USER other 0 * :Other")
            return irc.next().command  # 001, or ERROR when refused

        with OtherUser(register_as_nobody) as other:
            assert other.report_blocking() == n.RPL_WELCOME


def test_the_channel_quota_of_one_local_user_is_not_another_users() -> None:
    # Chat's own per-peer rules key on the engine's key too (Client.key).
    with chat_server(max_channels_per_address=1) as (address,), Irc(address, "alice") as alice:
        alice.send("JOIN #first", "JOIN #second")
        assert alice.expect(n.ERR_TOOMANYCHANNELS).params[1:] == (
            "#second",
            "Your address has too many channels",
        )

        def create_as_nobody(hold: list[object]) -> str:
            irc = Irc(address, "other")
            hold.append(irc)
            irc.send("JOIN #third")
            return " ".join(m.command for m in irc.collect(n.RPL_ENDOFNAMES) if m.command != "353")

        with OtherUser(create_as_nobody) as other:
            assert other.report_blocking() == f"JOIN {n.RPL_ENDOFNAMES}"
