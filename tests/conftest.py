"""Test hygiene for the whole suite: every test must leave no thread, fd or child behind.

Modelled on pyftpdlib's conftest: snapshot before, compare after. Unclosed sockets
surface as ResourceWarning, which pytest's configuration turns into errors.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_PROC = Path("/proc/self")


def _fds() -> set[int]:
    if not (_PROC / "fd").is_dir():
        return set()
    return {int(name) for name in os.listdir(_PROC / "fd")}


def _children() -> set[int]:
    pids: set[int] = set()
    tasks = _PROC / "task"
    if not tasks.is_dir():
        return pids
    for task in tasks.iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return pids


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(_PROC / "fd" / str(fd))
    except OSError:
        return "?"


@pytest.fixture(autouse=True, scope="session")
def _process_globals() -> None:
    """Create the process-wide resources of libraries once, before any leak snapshot:
    the first uvloop loop of a process opens a pipe pair that libuv keeps for the life
    of the process (it is reused, never multiplied; checked by running loops twice)."""
    try:
        import uvloop
    except ImportError:
        return
    loop = uvloop.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    threads = set(threading.enumerate())
    fds = _fds()
    children = _children()
    yield
    # Resources are released by joins and closes before a test returns; the only
    # slack allowed is for a thread that was joined by someone else to finish exiting
    # and for the garbage collector (bounded: 2 s).
    deadline = time.monotonic() + 2.0
    while True:
        gc.collect()
        new_threads = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
        new_fds = _fds() - fds
        new_children = _children() - children
        if not (new_threads or new_fds or new_children) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not new_threads, f"leaked threads: {[t.name for t in new_threads]}"
    assert not new_fds, f"leaked fds: {[(fd, _fd_target(fd)) for fd in sorted(new_fds)]}"
    assert not new_children, f"leaked child processes: {sorted(new_children)}"
