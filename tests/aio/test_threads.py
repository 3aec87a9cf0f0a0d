"""to_thread_shielded: work handed to the thread pool runs even when its caller is
cancelled before a thread has picked it up (where plain to_thread loses it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from socketkit.aio.threads import to_thread_shielded


def _run_cancelled_behind_a_busy_pool(
    start: Callable[[Callable[[], None]], Awaitable[None]],
) -> list[str]:
    done: list[str] = []
    release = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        busy = loop.run_in_executor(None, release.wait, 5)  # the only thread is taken
        task = asyncio.create_task(start(lambda: done.append("audit row")))
        await asyncio.sleep(0)  # the task submits its work, which waits in the queue
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await busy

    asyncio.run(main())  # returns after the pool has finished its queue
    return done


def test_shielded_work_survives_a_cancelled_caller() -> None:
    assert _run_cancelled_behind_a_busy_pool(to_thread_shielded) == ["audit row"]


def test_plain_to_thread_work_is_lost_the_same_way() -> None:
    # Why the helper exists: the same sequence with asyncio.to_thread drops the work.
    assert _run_cancelled_behind_a_busy_pool(asyncio.to_thread) == []


def test_results_and_errors_come_back() -> None:
    async def main() -> None:
        assert await to_thread_shielded(sum, [1, 2, 3]) == 6
        with pytest.raises(ZeroDivisionError):
            await to_thread_shielded(divmod, 1, 0)

    asyncio.run(main())
