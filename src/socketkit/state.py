"""The embedded state: one SQLite database in the state directory, private to its user.

Nothing needs an external server: audit logs (exec, files) and chat state live in
``STATE_DIR/socketkit.db`` (WAL mode, so readers never block the writer). Each service
declares its own tables with ``ensure_schema(name, version, statements)``; statements
run once per version. Calls are serialised by a lock, so threads (and
``asyncio.to_thread``) may share one ``StateDB``.

The state holds chat history, the exec audit log (every argv) and the token: its
directory and the database are private (``socketkit._private``; SQLite gives its
``-wal`` and ``-shm`` files the mode of the database).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from socketkit._private import private_dir, private_file
from socketkit.limits import DEFAULT_STATE_DIR

__all__ = ["DEFAULT_STATE_DIR", "StateDB", "private_dir", "private_file"]


DB_FILE = "socketkit.db"
_DB_COMPANIONS = ("-wal", "-shm", "-journal")


class StateDB:
    """A thread-safe handle on the state database.

    Args:
        state_dir: the directory (``private_dir``).

    Raises:
        PermissionDenied: the directory is not private (see ``private_dir``).
        OSError: the directory cannot be created.
        sqlite3.Error: the database cannot be opened.
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        directory = private_dir(state_dir)
        self.path = private_file(directory / DB_FILE)
        for suffix in _DB_COMPANIONS:  # left by an older version with the umask's mode
            companion = directory / (DB_FILE + suffix)
            if companion.exists():
                private_file(companion)
        self._lock = threading.RLock()  # re-entrant: statements inside transaction()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a crash loses at most the last transactions, never corrupts.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (name TEXT PRIMARY KEY, version INTEGER)"
        )

    def ensure_schema(self, name: str, version: int, statements: Sequence[str]) -> None:
        """Run ``statements`` once, the first time ``name`` is seen below ``version``."""
        with self._lock:
            row = self._conn.execute("SELECT version FROM schema_versions WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] >= version:
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    self._conn.execute(statement)
                self._conn.execute(
                    "INSERT OR REPLACE INTO schema_versions (name, version) VALUES (?, ?)",
                    (name, version),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the last row id (inserts)."""
        with self._lock:
            cursor = self._conn.execute(sql, params)
            return cursor.lastrowid or 0

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many rows, in one transaction (the caller's, inside
        ``transaction()``)."""
        with self._lock:
            if self._conn.in_transaction:
                self._conn.executemany(sql, rows)
                return
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(sql, rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a query; return rows as dicts."""
        with self._lock:
            cursor = self._conn.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the statements of the ``with`` block as one transaction (one commit)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_json(value: Any) -> str:
    """Compact JSON for a column."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
