"""BatchWriter: hand received bytes to a worker thread that writes them, so the event loop
keeps receiving (and hashing) while the disk writes: the two overlap on two cores.

Memory is bounded: at most ``max_batches`` batches of about ``batch_bytes`` wait for
the thread; past that, ``add`` waits (and the connection's own flow control then slows
the sender). An error in the thread (a full disk) is raised by the next ``add`` or by
``close``. The thread is always joined: by ``close``, or by ``abort`` on failure paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable

__all__ = ["BatchWriter", "abort_all", "close_all"]

_DONE = None


class BatchWriter:
    """Write batches of bytes in a thread with ``write(list_of_chunks)``.

    Args:
        write: called in the thread with each batch (a list of bytes objects).
        batch_bytes: bytes gathered before a batch is handed over.
        max_batches: batches waiting at most.
    """

    def __init__(
        self, write: Callable[[list[bytes]], None], *, batch_bytes: int = 1 << 20, max_batches: int = 4
    ) -> None:
        self._write = write
        self._batch_bytes = batch_bytes
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=max_batches)
        self._batch: list[bytes] = []
        self._size = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="socketkit-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not _DONE:
            if self._error is None:
                try:
                    self._write(batch)
                except BaseException as exc:  # noqa: BLE001 (handed to the event loop side, raised there)
                    self._error = exc

    async def add(self, data: bytes) -> None:
        """Queue ``data``; waits only when the thread is ``max_batches`` behind.

        Raises:
            Exception: what the writer raised for an earlier batch.
        """
        if self._error is not None:
            raise self._error
        self._batch.append(data)
        self._size += len(data)
        if self._size >= self._batch_bytes:
            await self._hand_over()

    async def _hand_over(self) -> None:
        batch, self._batch, self._size = self._batch, [], 0
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, batch)

    async def close(self) -> None:
        """Write what is left, stop the thread and wait for it.

        Raises:
            Exception: what the writer raised.
        """
        if self._batch:
            await self._hand_over()
        await asyncio.to_thread(self._stop)
        if self._error is not None:
            raise self._error

    def _stop(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()

    def abort(self) -> None:
        """Stop without writing what is still queued (failure paths). Never blocks, so it
        is safe in a cancelled task: the thread exits after the batch it may be writing;
        ``join`` waits for that."""
        self._error = self._error or RuntimeError("aborted")
        while True:
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
            with contextlib.suppress(queue.Full):  # a put from a cancelled ``add`` landed in between
                self._queue.put_nowait(_DONE)
                return

    def join(self) -> None:
        """Wait for the thread (after ``abort``)."""
        self._thread.join()


async def abort_all(*writers: BatchWriter) -> None:
    """Abort ``writers`` and wait for their threads, even if this task is cancelled again
    while waiting: the aborts are synchronous, so a thread can never be left blocked on
    its queue; the wait is shielded."""
    for writer in writers:
        writer.abort()

    def join() -> None:
        for writer in writers:
            writer.join()

    await asyncio.shield(asyncio.to_thread(join))


async def close_all(*writers: BatchWriter) -> None:
    """Close ``writers`` in order (each writes what it holds); if one fails or this task
    is cancelled, abort them all, so no thread outlives the call.

    Raises:
        Exception: the first writer error.
    """
    try:
        for writer in writers:
            await writer.close()
    except BaseException:
        await abort_all(*writers)
        raise
