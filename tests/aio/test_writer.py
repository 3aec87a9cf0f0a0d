"""BatchWriter: batches reach the thread in order, errors surface, and no thread outlives
an abort, even when the task that aborts is cancelled again while it waits."""

from __future__ import annotations

import asyncio
import threading

import pytest

from socketkit.aio.writer import BatchWriter, abort_all, close_all


def test_batches_arrive_in_order_and_close_writes_the_rest() -> None:
    got: list[bytes] = []

    async def main() -> None:
        writer = BatchWriter(lambda chunks: got.extend(chunks), batch_bytes=4, max_batches=1)
        for i in range(100):
            await writer.add(b"%03d" % i)
        await close_all(writer)

    asyncio.run(main())
    assert got == [b"%03d" % i for i in range(100)]


def test_a_write_error_is_raised_by_the_next_call() -> None:
    def fail(chunks: list[bytes]) -> None:
        raise OSError(28, "No space left on device")

    async def main() -> None:
        writer = BatchWriter(fail, batch_bytes=1)
        await writer.add(b"x")
        with pytest.raises(OSError, match="No space"):
            await close_all(writer)

    asyncio.run(main())


def test_abort_in_a_twice_cancelled_task_leaves_no_thread() -> None:
    """The server cancels a handler (a timeout) and then again (shutdown) while the
    handler is cleaning up: the threads must still end."""
    release = threading.Event()

    def slow(chunks: list[bytes]) -> None:
        release.wait(5)

    async def main() -> list[BatchWriter]:
        writers = [BatchWriter(slow, batch_bytes=1, max_batches=1) for _ in range(2)]
        started = asyncio.Event()

        async def handler() -> None:
            try:
                started.set()
                while True:  # fills both queues, then waits on a full queue
                    for writer in writers:
                        await writer.add(b"x")
            except asyncio.CancelledError:
                await abort_all(*writers)
                raise

        task = asyncio.create_task(handler())
        await started.wait()
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()  # cancelled again while waiting for the joins
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()  # the cancelled task did not wait for the threads; they end now
        return writers

    writers = asyncio.run(main())
    for writer in writers:
        writer._thread.join(5)
        assert not writer._thread.is_alive()
