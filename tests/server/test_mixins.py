"""ThreadingMixIn caps: a bounded worker pool, connection caps that refuse or queue;
a thread or child that cannot start closes its connection and frees its slot."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import socketkit.server as ss
from socketkit.testing import serving
from tests.helpers import TIMEOUT, connect, recv_exactly, recv_line, recv_until_closed


class Gate:
    """Counts handlers running at once and holds them until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def handler(self) -> type[ss.BaseRequestHandler]:
        gate = self

        class Held(ss.BaseRequestHandler):
            def handle(self) -> None:
                with gate.lock:
                    gate.running += 1
                    gate.peak = max(gate.peak, gate.running)
                gate.entered.release()
                try:
                    gate.release.wait(TIMEOUT)
                    self.request.sendall(b"done")
                finally:
                    with gate.lock:
                        gate.running -= 1

        return Held


def test_max_workers_bounds_concurrency_and_serves_everyone() -> None:
    gate = Gate()
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), gate.handler())
    server.max_workers = 2
    with serving(server):
        clients = [connect(server.server_address) for _ in range(6)]
        try:
            assert gate.entered.acquire(timeout=TIMEOUT)
            assert gate.entered.acquire(timeout=TIMEOUT)
            # Two are held; the other four wait for a worker instead of a thread each.
            assert not gate.entered.acquire(timeout=0.2)
            gate.release.set()
            for sock in clients:
                assert recv_exactly(sock, 4) == b"done"
        finally:
            for sock in clients:
                sock.close()
    assert gate.peak == 2
    assert len(server._workers) == 0  # joined at close


def test_max_connections_refuse_closes_the_extra_connection_at_once() -> None:
    gate = Gate()
    refused: list[Any] = []

    class Server(ss.ThreadingTCPServer):
        max_connections = 2

        def refuse_request(self, request: Any, client_address: Any) -> None:
            refused.append(client_address)
            request.sendall(b"busy\n")

    server = Server(("127.0.0.1", 0), gate.handler())
    with serving(server):
        held = [connect(server.server_address) for _ in range(2)]
        try:
            for _ in held:
                assert gate.entered.acquire(timeout=TIMEOUT)
            extra = connect(server.server_address)
            with extra:
                assert recv_until_closed(extra) == b"busy\n"
            gate.release.set()
            for sock in held:
                assert recv_exactly(sock, 4) == b"done"
        finally:
            for sock in held:
                sock.close()
    assert len(refused) == 1


def test_max_connections_backlog_queues_until_a_slot_frees() -> None:
    gate = Gate()
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), gate.handler())
    server.max_connections = 1
    server.connection_overflow = "backlog"
    with serving(server):
        first = connect(server.server_address)
        second = connect(server.server_address)  # completes in the kernel backlog
        try:
            assert gate.entered.acquire(timeout=TIMEOUT)
            assert not gate.entered.acquire(timeout=0.2)  # not accepted while full
            gate.release.set()
            assert recv_exactly(first, 4) == b"done"
            first.close()
            assert gate.entered.acquire(timeout=TIMEOUT)  # accepted once the slot freed
            assert recv_exactly(second, 4) == b"done"
        finally:
            first.close()
            second.close()
    assert gate.peak == 1


@pytest.mark.parametrize("workers", [None, 3])
def test_many_short_connections_leave_nothing_behind(workers: int | None) -> None:
    class Echo(ss.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(100):
                self.request.sendall(data)

    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.max_workers = workers
    with serving(server):
        for i in range(50):
            sock = connect(server.server_address)
            with sock:
                sock.sendall(b"%d" % i)
                assert sock.recv(100) == b"%d" % i
    assert not server._live


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forking_stream_child_closes_its_copy_of_the_listener() -> None:
    """A child serving a connection does not hold the listening socket (which would keep
    the port bound after the parent closes it); a datagram child keeps it to reply
    (tests/server/test_compat_stdlib.py::test_udp_datagram_handler)."""

    class Report(ss.StreamRequestHandler):
        def handle(self) -> None:
            closed = self.server.socket.fileno() == -1
            self.wfile.write(b"%d %d\n" % (os.getpid(), closed))

    server = ss.ForkingTCPServer(("127.0.0.1", 0), Report)
    with serving(server):
        sock = connect(server.server_address)
        with sock:
            pid, closed = recv_line(sock).split()
    assert int(pid) != os.getpid()
    assert closed == b"1"


def test_threads_lists_pool_workers_until_they_exit() -> None:
    gate = Gate()
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), gate.handler())
    server.max_workers = 2
    with serving(server):
        clients = [connect(server.server_address) for _ in range(2)]
        try:
            for _ in clients:
                assert gate.entered.acquire(timeout=TIMEOUT)
            workers = list(server._threads)
            assert sorted(t.name for t in workers) == ["socketkit-worker-1", "socketkit-worker-2"]
            gate.release.set()
            for sock in clients:
                assert recv_exactly(sock, 4) == b"done"
            assert list(server._threads) == workers  # idle workers stay until close
        finally:
            for sock in clients:
                sock.close()
    assert len(server._threads) == 0


def test_threads_forgets_a_handler_thread_as_it_ends() -> None:
    """The stdlib keeps a finished thread listed until it adds the next one; ours is exact."""
    gate = Gate()
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), gate.handler())
    sock = connect(server.server_address)
    try:
        server.handle_request()
        assert gate.entered.acquire(timeout=TIMEOUT)
        (thread,) = server._threads
        gate.release.set()
        assert recv_exactly(sock, 4) == b"done"
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert len(server._threads) == 0
    finally:
        sock.close()
        server.server_close()


def test_a_thread_appended_to_threads_is_joined_at_close() -> None:
    """Code copied from the stdlib's process_request() registers its own threads with
    ``self._threads.append(t)``; server_close() joins them (daemon threads are skipped)."""
    joined: list[threading.Thread] = []

    class Recorded(threading.Thread):
        def join(self, timeout: float | None = None) -> None:
            joined.append(self)
            super().join(timeout)

    gate = threading.Event()
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), ss.BaseRequestHandler)
    mine = Recorded(target=gate.wait, args=(TIMEOUT,))
    background = threading.Thread(target=gate.wait, args=(TIMEOUT,), daemon=True)
    try:
        for thread in (mine, background):  # as the stdlib does: append, then start
            server._threads.append(thread)
            thread.start()
        assert list(server._threads) == [mine]
    finally:
        gate.set()
        server.server_close()
        background.join(TIMEOUT)
    assert joined == [mine]
    assert not mine.is_alive()
    assert len(server._threads) == 0


class Echo(ss.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(100):
            self.request.sendall(data)


def fail_once(
    real: Callable[..., Any], exc: BaseException, applies: Callable[..., bool]
) -> Callable[..., Any]:
    """``real``, except that its first call for which ``applies(*args)`` raises ``exc``."""
    failed: list[bool] = []

    def replacement(*args: Any) -> Any:
        if not failed and applies(*args):
            failed.append(True)
            raise exc
        return real(*args)

    return replacement


def ours(thread: threading.Thread) -> bool:
    """A thread the mix-in starts (not the serve loop, not pytest's)."""
    return thread.name.startswith(("socketkit-handler-", "socketkit-worker-"))


class Watch(logging.Handler):
    """The mix-in's log records as they are emitted, with an event for the first one
    (caplog's handler, on the root logger, may not have it yet when ours runs)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.logged = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.logged.set()


@contextlib.contextmanager
def watching_log() -> Iterator[Watch]:
    watch = Watch()
    logger = logging.getLogger("socketkit.server.threads")
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What socketkit logged at WARNING and above, failing on any traceback."""
    records = [r for r in caplog.records if r.name.startswith("socketkit") and r.levelno >= logging.WARNING]
    assert not [r for r in records if r.exc_info], "a capacity failure is one line, not a traceback"
    return [r.getMessage() for r in records]


@pytest.mark.parametrize("workers", [None, 2])
def test_a_thread_that_cannot_start_closes_its_connection_and_frees_its_slot(
    workers: int | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """max_connections = 1: a slot kept by the failed start would refuse everyone after,
    and a thread kept listed but never started would make server_close() fail."""
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.max_workers = workers
    server.max_connections = 1
    with serving(server):
        monkeypatch.setattr(
            threading.Thread,
            "start",
            fail_once(threading.Thread.start, RuntimeError("can't start new thread"), ours),
        )
        with connect(server.server_address) as first:
            port = first.getsockname()[1]
            assert recv_until_closed(first) == b""  # closed, not left hanging
        assert log_lines(caplog) == [
            f"could not start a thread for the connection from 127.0.0.1:{port} "
            "(RuntimeError: can't start new thread); closing it"
        ]
        with server._lock:
            assert (server._held, server._live, list(server._threads), server._workers) == (0, {}, [], [])
        with connect(server.server_address) as second:  # the slot is free again
            second.sendall(b"ping")
            assert recv_exactly(second, 4) == b"ping"
    assert not server._live
    assert len(server._threads) == 0
    assert log_lines(caplog)[1:] == []  # the normal request logged nothing


def test_a_pool_that_cannot_grow_leaves_the_request_to_a_busy_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The request is queued only once it is known that a worker will take it; it is not
    closed under the queue (the old order queued it, then failed, then closed it)."""
    gate = Gate()
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), gate.handler())
    server.max_workers = 2
    with serving(server), watching_log() as watch:
        first = connect(server.server_address)
        try:
            assert gate.entered.acquire(timeout=TIMEOUT)  # worker 1 is busy with it
            monkeypatch.setattr(
                threading.Thread,
                "start",
                fail_once(threading.Thread.start, RuntimeError("can't start new thread"), ours),
            )
            second = connect(server.server_address)
            try:
                port = second.getsockname()[1]
                # The serve loop accepts it and tries to grow the pool; the one line says so.
                assert watch.logged.wait(TIMEOUT)
                expected = (
                    "could not add a worker thread (RuntimeError: can't start new thread); "
                    f"the connection from 127.0.0.1:{port} waits for a busy one"
                )
                assert [r.getMessage() for r in watch.records] == [expected]
                gate.release.set()
                assert recv_exactly(first, 4) == b"done"
                assert recv_exactly(second, 4) == b"done"  # served by worker 1 after
            finally:
                second.close()
        finally:
            gate.release.set()
            first.close()
    assert [t.name for t in server._workers] == []
    assert len(server._threads) == 0
    assert log_lines(caplog) == [expected]  # that one line, no traceback, nothing else


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_failed_fork_closes_the_connection_and_the_server_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Report(ss.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"%d\n" % os.getpid())

    server = ss.ForkingTCPServer(("127.0.0.1", 0), Report)
    server.max_children = 1  # a child counted for the failed fork would block the next
    with serving(server):
        eagain = OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        monkeypatch.setattr(os, "fork", fail_once(os.fork, eagain, lambda: True))
        with connect(server.server_address) as first:
            port = first.getsockname()[1]
            assert recv_until_closed(first) == b""
        assert log_lines(caplog) == [
            f"could not fork a child for the connection from 127.0.0.1:{port} "
            f"([Errno {errno.EAGAIN}] {os.strerror(errno.EAGAIN)}); closing it"
        ]
        assert not server.active_children
        with connect(server.server_address) as second:
            pid = int(recv_line(second))
    assert pid != os.getpid()  # served by a child
    assert not server.active_children
    assert log_lines(caplog)[1:] == []
