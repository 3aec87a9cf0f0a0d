"""What the file service keeps in the state database: the SHA-256 cache and the audit log.

SHA-256s of served files are cached by virtual path and checked against the file's size,
mtime and inode, so a download can announce its hash up front and still be sent with
``sendfile`` without reading the file twice; a deleted path's rows go with it. Every
operation adds one audit row; the log keeps the last ``AUDIT_MAX_ROWS`` (``prune``,
on the quota's timer) and at most ``AUDIT_MAX_PATH`` characters of a path, so that
requests, even refused ones, cannot fill the state directory's disk.
"""

from __future__ import annotations

import os
import time

from socketkit.state import StateDB

__all__ = ["AUDIT_MAX_PATH", "AUDIT_MAX_ROWS", "Records"]

AUDIT_MAX_ROWS = 1_000_000
"""Audit rows kept (the oldest go first): months of a busy server's transfers, at most a
few hundred MB of state. Without a bound, a token holder sending cheap refused
requests grew the state database by every request, outside any quota."""

AUDIT_MAX_PATH = 512
"""Characters of a path kept in an audit row (the rest is cut, marked with "..."): a
client may send 4 KiB paths; the row needs enough to tell what was touched."""

_SCHEMA = [
    """CREATE TABLE file_hashes (
        path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER, sha256 TEXT
    )""",
    """CREATE TABLE file_audit (
        id INTEGER PRIMARY KEY, at REAL NOT NULL, peer TEXT NOT NULL, op TEXT NOT NULL,
        path TEXT NOT NULL, size INTEGER, sha256 TEXT, outcome TEXT NOT NULL,
        bytes INTEGER, duration_ms REAL
    )""",
    "CREATE INDEX file_audit_at ON file_audit (at)",
]


class Records:
    """The hash cache and the audit log (no-ops without a database)."""

    def __init__(self, db: StateDB | None) -> None:
        self.db = db
        if db is not None:
            db.ensure_schema("files", 1, _SCHEMA)

    def cached_hash(self, path: str, st: os.stat_result) -> str | None:
        """The cached SHA-256 of ``path`` if size, mtime and inode still match ``st``."""
        if self.db is None:
            return None
        rows = self.db.query("SELECT size, mtime_ns, ino, sha256 FROM file_hashes WHERE path = ?", (path,))
        if rows and (rows[0]["size"], rows[0]["mtime_ns"], rows[0]["ino"]) == (
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
        ):
            return str(rows[0]["sha256"])
        return None

    def forget(self, path: str) -> None:
        """Drop the cached hashes of ``path`` and of everything under it (deleted)."""
        if self.db is not None:
            self.db.execute(
                "DELETE FROM file_hashes WHERE path = ? OR substr(path, 1, ?) = ?",
                (path, len(path) + 1, path + "/"),
            )

    def prune(self, keep: int | None = None) -> None:
        """Keep the last ``keep`` audit rows (default ``AUDIT_MAX_ROWS``)."""
        keep = AUDIT_MAX_ROWS if keep is None else keep
        if self.db is not None:
            self.db.execute(
                "DELETE FROM file_audit WHERE id <= (SELECT MAX(id) FROM file_audit) - ?", (keep,)
            )

    def store_hash(self, path: str, st: os.stat_result, sha256: str) -> None:
        """Cache the SHA-256 of the file ``st`` describes."""
        if self.db is not None:
            self.db.execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, ino, sha256) "
                "VALUES (?, ?, ?, ?, ?)",
                (path, st.st_size, st.st_mtime_ns, st.st_ino, sha256),
            )

    def audit(
        self,
        peer: str,
        op: str,
        path: str,
        outcome: str,
        *,
        size: int | None = None,
        sha256: str | None = None,
        transferred: int | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """One row of the audit log."""
        if len(path) > AUDIT_MAX_PATH:
            path = path[: AUDIT_MAX_PATH - 3] + "..."
        if self.db is not None:
            self.db.execute(
                "INSERT INTO file_audit (at, peer, op, path, size, sha256, outcome, bytes, duration_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), peer, op, path, size, sha256, outcome, transferred, duration_ms),
            )
