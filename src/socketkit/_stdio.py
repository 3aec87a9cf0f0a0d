"""Standard streams that may be closed (``socketkit send ADDR <&-``, ``exec ... >&-``),
and a standard output whose reader goes away (``socketkit exec ADDR -- seq 1 2000000 | head -3``).

Python sets ``sys.stdin`` (or stdout, stderr) to ``None`` when its descriptor is closed
at start, and the first ``sys.stdin.buffer`` is an AttributeError; worse, the next socket
opened gets that descriptor's number, so ``print`` would write into a connection and
libuv aborts the process when it closes a descriptor below 3. Every command starts by
putting ``/dev/null`` on a closed 0, 1 or 2: a closed input reads as empty, a closed
output discards (as it does for other tools run that way).

A reader that stops reading (``| head``) is the normal end of a pipeline, not an error:
``cat`` is ended by SIGPIPE and the shell shows status 141 with nothing on stderr.
Python ignores SIGPIPE so that writes raise ``BrokenPipeError`` instead, and putting
SIGPIPE back to its default would kill a client whenever a *socket* peer goes away (the
note on SIGPIPE in the ``signal`` documentation). So the console script's standard
output is guarded instead: a write that finds its reader gone raises ``StdoutClosed``,
which ends the command quietly with status 141, whatever the command was doing.
"""

from __future__ import annotations

import io
import os
import sys

__all__ = [
    "EXIT_BROKEN_PIPE",
    "StdoutClosed",
    "discard_stdout",
    "fill_closed_standard_streams",
    "guard_stdout",
    "hint_terminal_input",
    "write_all",
]

EXIT_BROKEN_PIPE = 128 + 13
"""The status a shell shows for a process ended by SIGPIPE (signal 13), as ``cat`` is
under ``| head``: ``set -o pipefail`` scripts see the same status for us as for it."""


class StdoutClosed(SystemExit):
    """The reader of our standard output went away: the normal end of a pipeline.

    A ``SystemExit``, so that no command's ``except Exception`` (which reports a failure
    and chooses an exit status) takes it for an error, and so that the event loop stops at
    once wherever it is raised (asyncio and uvloop re-raise ``SystemExit`` even from
    callbacks). ``main`` turns it into the quiet exit status ``EXIT_BROKEN_PIPE``.
    """

    def __init__(self) -> None:
        super().__init__(EXIT_BROKEN_PIPE)


class _GuardedStdout(io.FileIO):
    """Descriptor 1, where ``EPIPE`` raises ``StdoutClosed``."""

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            return super().write(data)
        except BrokenPipeError:
            raise StdoutClosed from None


def guard_stdout() -> None:
    """Make ``sys.stdout`` (and its ``.buffer``) raise ``StdoutClosed`` when its reader
    is gone. Only the interpreter's own standard output on descriptor 1 is replaced (not
    one a test or an embedding program has put there), keeping its encoding, error
    handler and buffering (line-buffered on a terminal, unbuffered under ``-u``)."""
    old = sys.stdout
    if old is None or old is not sys.__stdout__ or not isinstance(old, io.TextIOWrapper):
        return
    try:
        if old.fileno() != 1:
            return
        old.flush()
    except (OSError, ValueError):
        return
    raw = _GuardedStdout(1, "w", closefd=False)
    buffered = not isinstance(old.buffer, io.RawIOBase)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(raw) if buffered else raw,
        encoding=old.encoding,
        errors=old.errors,
        line_buffering=old.line_buffering,
        write_through=old.write_through,
    )


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd`` at once, unbuffered (output relayed as it arrives).

    Raises:
        StdoutClosed: ``fd`` is 1 and its reader is gone, as for ``sys.stdout``.
        OSError: any other failure.
    """
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        if fd == 1:
            raise StdoutClosed from None
        raise


def discard_stdout() -> None:
    """Point descriptor 1 at ``/dev/null``: the reader is gone, and what is still buffered
    for it (flushed when the interpreter exits) must not raise again there ("Exception
    ignored ... BrokenPipeError")."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
    finally:
        os.close(null)


def fill_closed_standard_streams() -> None:
    """Open ``/dev/null`` on each closed descriptor 0-2 and give Python streams for it."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd`` itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            # Kept open for the life of the process, as Python's own streams are.
            stream = open(fd, mode, closefd=False, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
            setattr(sys, name, stream)


def hint_terminal_input(what: str) -> None:
    """Say on stderr, in one line, that ``what`` is read from the terminal until Ctrl-D.

    For commands that read all of standard input before doing anything (``send``,
    ``put -``): on a terminal they would otherwise sit there without a word, looking
    hung. Nothing is said when standard input is a pipe or a file (scripts)."""
    try:
        terminal = sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):  # closed under us
        terminal = False
    if terminal:
        print(
            f"reading {what} from the terminal: type it, then Ctrl-D on a line of its own (Ctrl-C gives up)",
            file=sys.stderr,
            flush=True,
        )
