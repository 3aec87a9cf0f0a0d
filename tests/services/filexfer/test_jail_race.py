"""The jail under a real race: a thread keeps swapping a served directory for a symlink to
an outside directory while a real client runs get/put/ls/stat/rm/mkdir through it.

Resolving by name after a check (realpath, then open) loses this race a few times in a
thousand; resolving beneath the root's fd, never through a symlink, never does.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from socketkit.auth.connect import ServiceTarget
from socketkit.errors import ServiceError
from socketkit.services.filexfer.client import FileClient
from socketkit.services.filexfer.server import FileServer, FileSettings
from socketkit.services.filexfer.store import FileStore
from tests.aio_thread import server_thread
from tests.services.filexfer.test_store_jail import BACKENDS, snapshot

TOKEN = "5a" * 32
ROUNDS = 250
"""Rounds of operations by the client (ten requests each: 2,500 in all)."""
GETS_PER_ROUND = 3
"""Downloads per round: the check-then-open race of a jail by name shows most in them
(about one in a hundred here), so 750 make a miss on such a jail all but impossible."""
MAX_SWAPS = 200_000
"""Bound on the swapping thread's round trips (it stops earlier, when the client is done)."""


_RENAME_EXCHANGE = 2


def _exchange() -> Any:
    """renameat2(RENAME_EXCHANGE) from the C library: swaps two names atomically, so the
    directory is never even briefly missing (glibc 2.28+; else ``None``)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)

    def exchange(a: Path, b: Path) -> None:
        if function(-100, bytes(a), -100, bytes(b), _RENAME_EXCHANGE) != 0:  # AT_FDCWD
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return exchange


def swapper(root: Path, outside: Path, stop: threading.Event, swaps: list[int]) -> None:
    """Swap d with a symlink to ``outside`` and back, until the client is done: atomically
    where the C library can, else by renames (d is then missing for a moment)."""
    real, spare = root / "d", root / "d.swap"
    spare.symlink_to(outside)
    exchange = _exchange()
    try:
        for count in range(MAX_SWAPS):
            if stop.is_set():
                swaps.append(count)
                return
            if exchange is not None:
                exchange(real, spare)  # d is the symlink now
                exchange(real, spare)  # and the directory again
            else:
                os.rename(real, root / "d.real")
                os.rename(spare, real)
                os.rename(real, spare)
                os.rename(root / "d.real", real)
            time.sleep(0)  # let the server have the real directory too (a yield, not a wait)
        swaps.append(MAX_SWAPS)
    finally:
        spare.unlink()


@pytest.mark.parametrize("use_openat2", BACKENDS, ids=lambda v: "openat2" if v else "openat")
def test_swapping_a_directory_for_a_symlink_never_reaches_outside(tmp_path: Path, use_openat2: bool) -> None:
    root, outside, local = tmp_path / "root", tmp_path / "outside", tmp_path / "local"
    for directory in (root / "d", outside, local):
        directory.mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"inside")
    (outside / "f").write_bytes(b"OUTSIDE")
    (outside / "victim").write_bytes(b"must survive")
    (outside / "only-outside").write_bytes(b"must stay unseen")
    (local / "up").write_bytes(b"uploaded")
    before = snapshot(outside)
    outcomes: dict[str, int] = {}
    leaks: list[Any] = []

    async def rounds(client: FileClient) -> None:
        async def attempt(op: str, call: Any) -> Any:
            try:
                result = await call
            except (ServiceError, OSError) as exc:
                code = exc.code if isinstance(exc, ServiceError) else errno.errorcode.get(exc.errno or 0)
                key = f"{op}:{code}"
                outcomes[key] = outcomes.get(key, 0) + 1
                return None
            outcomes[f"{op}:ok"] = outcomes.get(f"{op}:ok", 0) + 1
            return result

        for i in range(ROUNDS):
            for _ in range(GETS_PER_ROUND):
                target = local / f"got-{i}"
                if await attempt("get", client.get_file("d/f", str(target))) is not None:
                    data = target.read_bytes()
                    target.unlink()
                    if data != b"inside":
                        leaks.append(("get", data))
            await attempt("put", client.put_file(str(local / "up"), f"d/up-{i}"))
            entries = await attempt("ls", client.list("d"))
            for entry in entries or []:
                if entry.path.split("/")[-1] in ("only-outside", "victim"):
                    leaks.append(("ls", entry.path))
            if await attempt("stat", client.stat("d/only-outside")) is not None:
                leaks.append(("stat", "d/only-outside"))
            # (not mkdir -p: it would recreate d itself while the swapper has it away)
            await attempt("mkdir", client.mkdir(f"d/m-{i}", parents=False))
            await attempt("mkdir", client.mkdir(f"d/m-{i}/n", parents=False))
            await attempt("rm", client.delete("d/victim"))
            await attempt("rm-r", client.delete(f"d/m-{i}", recursive=True))

    with FileStore(str(root), None, use_openat2=use_openat2) as store:
        service = FileServer(FileSettings(store=store, token=TOKEN))
        with server_thread(service.make_server) as (address,):
            stop = threading.Event()
            swaps: list[int] = []
            thread = threading.Thread(target=swapper, args=(root, outside, stop, swaps), name="test-swapper")
            thread.start()
            try:

                async def go() -> None:
                    async with await FileClient.connect(ServiceTarget(address, TOKEN)) as client:
                        await rounds(client)

                asyncio.run(go())
            finally:
                stop.set()
                thread.join()
    assert not leaks, leaks
    assert snapshot(outside) == before  # nothing created, changed or deleted outside
    assert swaps[0] > ROUNDS  # the race really ran alongside
    # Some operations got through while d was the real directory, others were refused.
    assert outcomes.get("get:ok", 0) > 0, outcomes
    assert outcomes.get("put:ok", 0) > 0, outcomes
    assert sum(v for k, v in outcomes.items() if not k.endswith(":ok")) > 0, outcomes
