"""One file-client command's session: its connection, progress display and failures
(shared by ``files_client`` and the put/get in ``_files_transfer``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from socketkit.cli._files_report import Report

if TYPE_CHECKING:
    from socketkit.services.filexfer.client import FileClient

__all__ = ["_Session"]


class _Session:
    """One client command: the connection, the progress display, and the failures."""

    def __init__(self, client: FileClient, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.failures = 0
        self.progress: Any = None
        self.report = Report(write=self._write, quiet=bool(getattr(args, "quiet", False)))

    def _write(self, line: str) -> None:
        """One line on stderr, above the progress bars while they are drawn."""
        if self.progress is None:
            print(line, file=sys.stderr, flush=True)
        else:
            self.progress.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def done(self, name: str, result: Any, since: float) -> None:
        """A file transferred and verified: its final line."""
        from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

        self.report.done(safe_display(name), result.size, result.transferred, result.algorithm, since)

    @contextmanager
    def interruptible(self, name: str, partial: str | None = None) -> Iterator[None]:
        """Say, when a transfer is cut by SIGINT or SIGTERM, what it keeps: the local
        ``partial`` of a download (if it holds bytes), the server's of an upload."""
        from asyncio import CancelledError  # noqa: PLC0415 (loaded by now: the CLI imports it late)

        from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

        try:
            yield
        except (CancelledError, KeyboardInterrupt):
            if partial is None:
                kept = "; the server keeps what it received: `--resume` continues it"
            elif os.path.isfile(partial) and os.path.getsize(partial) > 0:
                kept = "; the partial file is kept: `--resume` continues it"
            else:
                kept = ""
            self._write(f"{safe_display(name)}: interrupted{kept}")
            raise

    def fail(self, what: str, exc: BaseException) -> None:
        from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

        self.failures += 1
        # The message may come from the server: shown escaped, as names are.
        print(
            f"{safe_display(what)}: {type(exc).__name__}: {safe_display(str(exc))}",
            file=sys.stderr,
            flush=True,
        )

    @contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        if self.progress is None:
            yield lambda n: None
            return
        task = self.progress.add_task(label, total=total)
        try:
            yield lambda n: self.progress.advance(task, n)
        finally:
            self.progress.remove_task(task)
