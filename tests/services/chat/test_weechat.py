"""A real terminal IRC client, WeeChat (headless), against the chat server: it
negotiates capabilities, registers, joins, answers channel and private messages (through
two triggers) and quits; another client sees all of it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import TIMEOUT
from tests.services.chat.ircclient import Irc
from tests.services.chat.servers import chat_server

WEECHAT = shutil.which("weechat-headless")

# Triggers answer "ping-weechat" in a channel and "ping-private" in a query: WeeChat's
# replies travel back over IRC, so the test waits on messages, not on time.
TRIGGERS = """\
[look]

[color]

[trigger]
pong.arguments = "*,irc_in2_privmsg"
pong.command = "/msg -server ${server} ${channel} pong-weechat"
pong.conditions = "${text} == ping-weechat"
pong.enabled = on
pong.hook = signal
pong.post_action = none
pong.regex = ""
pong.return_code = ok
pongpm.arguments = "*,irc_in2_privmsg"
pongpm.command = "/msg -server ${server} ${nick} pong-private"
pongpm.conditions = "${text} == ping-private"
pongpm.enabled = on
pongpm.hook = signal
pongpm.post_action = none
pongpm.regex = ""
pongpm.return_code = ok
"""


def test_weechat_registers_joins_talks_and_quits(tmp_path: Path) -> None:
    if WEECHAT is None:
        if os.environ.get("SOCKETKIT_REQUIRE_WEECHAT"):
            pytest.fail("weechat-headless is missing (apt-get install weechat-headless weechat-plugins)")
        pytest.skip("weechat-headless is not installed (.ci/run installs it)")
    home = tmp_path / "weechat"
    home.mkdir()
    (home / "trigger.conf").write_text(TRIGGERS)
    with chat_server(tmp_path / "state") as (address,), Irc(address, "alice") as alice:
        alice.send("JOIN #room", "TOPIC #room :Real clients welcome")
        alice.expect("TOPIC")
        # WeeChat spaces its own messages 2 s apart by default (anti-flood): off here.
        commands = (
            f"/server add sk {address.host}/{address.port} -notls -nicks=weebot -username=wee "
            "-realname=WeeChat -autojoin=#room -anti_flood_prio_high=0 -anti_flood_prio_low=0;/connect sk"
        )
        weechat = subprocess.Popen(
            [WEECHAT, "--dir", str(home), "--plugins", "irc,trigger", "--stdout", "--run-command", commands],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            joined = alice.expect("JOIN", lambda m: (m.source or "").startswith("weebot!"))
            assert joined.params == ("#room",)
            alice.send("PRIVMSG #room :ping-weechat")
            reply = alice.expect("PRIVMSG", lambda m: (m.source or "").startswith("weebot!"))
            assert reply.params == ("#room", "pong-weechat")
            alice.send("PRIVMSG weebot :ping-private")
            reply = alice.expect("PRIVMSG", lambda m: (m.source or "").startswith("weebot!"))
            assert reply.params == ("alice", "pong-private")
            weechat.terminate()  # WeeChat runs /quit on SIGTERM
            quit_message = alice.expect("QUIT", lambda m: (m.source or "").startswith("weebot!"))
            assert quit_message.source is not None
        finally:
            if weechat.poll() is None:
                weechat.terminate()
            log = weechat.communicate(timeout=TIMEOUT)[0].decode(errors="replace")
        assert "irc: connecting to server" in log
