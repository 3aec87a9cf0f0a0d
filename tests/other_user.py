"""Connections opened by another local user, for tests of per-user budgets.

``OtherUser(action)`` forks a child that drops to ``nobody`` (the tests run as root,
as CI does), runs ``action(hold)`` (a few lines of blocking socket code with timeouts:
no asyncio, no logging in a forked child), reports what it returned as one line, and
keeps what it put in the list ``hold`` (its sockets) open until ``close()``. The
child closes every descriptor it inherited first: a copy of one of the parent's
sockets would keep that connection open after the parent closed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import select
from collections.abc import Callable
from types import TracebackType

import pytest

from tests.helpers import TIMEOUT

NOBODY = pwd.getpwnam("nobody")


class OtherUser:
    """A child process of user ``nobody`` that ran ``action`` and holds its sockets."""

    def __init__(self, action: Callable[[list[object]], str]) -> None:
        if os.geteuid() != 0:
            pytest.fail("this test needs root (as CI runs): it opens connections as another user")
        report_r, report_w = os.pipe()
        release_r, release_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the test
            hold: list[object] = []
            try:
                keep = {report_w, release_r}
                for name in os.listdir("/proc/self/fd"):
                    if int(name) > 2 and int(name) not in keep:
                        with contextlib.suppress(OSError):  # the listing's own, closed by now
                            os.close(int(name))
                try:
                    os.setgroups([])
                    os.setresgid(NOBODY.pw_gid, NOBODY.pw_gid, NOBODY.pw_gid)
                    os.setresuid(NOBODY.pw_uid, NOBODY.pw_uid, NOBODY.pw_uid)
                    text = action(hold)
                except BaseException as exc:  # reported to the test instead
                    text = f"error: {type(exc).__name__}: {exc}"
                os.write(report_w, text.replace("\n", " ").encode() + b"\n")
                os.read(release_r, 1)  # EOF when the test lets go
            finally:
                os._exit(0)
        os.close(report_w)
        os.close(release_r)
        self.pid = pid
        self._report = report_r
        self._release: int | None = release_w

    def _read_report(self) -> str:
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self._report, 4096)
            if not chunk:
                raise AssertionError(f"the other user's process ended without a report ({data!r})")
            data += chunk
        return data.decode().rstrip("\n")

    async def report(self) -> str:
        """What ``action`` returned, without blocking the event loop meanwhile."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(self._report, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, 2 * TIMEOUT)  # longer than its own timeouts
        finally:
            loop.remove_reader(self._report)
        return self._read_report()

    def report_blocking(self) -> str:
        """What ``action`` returned (for tests whose server runs in another thread)."""
        if not select.select([self._report], [], [], 2 * TIMEOUT)[0]:
            raise AssertionError(f"no report from the other user within {2 * TIMEOUT} s")
        return self._read_report()

    def close(self) -> None:
        """Let the child go (its sockets close) and reap it."""
        if self._release is not None:
            os.close(self._release)
            self._release = None
            os.close(self._report)
            os.waitpid(self.pid, 0)

    def __enter__(self) -> OtherUser:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
