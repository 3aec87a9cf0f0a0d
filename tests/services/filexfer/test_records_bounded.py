"""The file service's state cannot be grown without bound by requests: the audit log
keeps its last ``AUDIT_MAX_ROWS`` rows and cuts long paths, and a deleted path's cached
hashes are dropped with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from socketkit.services.filexfer import records as records_module
from socketkit.services.filexfer.records import AUDIT_MAX_PATH, AUDIT_MAX_ROWS, Records
from socketkit.services.filexfer.store import FileStore
from socketkit.state import StateDB
from tests.services.filexfer.helpers import client_run, serving


def test_the_audit_log_is_pruned_to_its_cap_and_cuts_long_paths(tmp_path: Path) -> None:
    with StateDB(tmp_path / "state") as db:
        records = Records(db)
        for i in range(50):
            records.audit("peer", "stat", f"p{i}", "not-found")
        records.audit("peer", "stat", "x" * 4000, "not-found")
        records.prune(keep=10)
        rows = db.query("SELECT path FROM file_audit ORDER BY id")
        assert [r["path"] for r in rows][:9] == [f"p{i}" for i in range(41, 50)]
        assert len(rows) == 10
        assert len(rows[-1]["path"]) == AUDIT_MAX_PATH
        assert rows[-1]["path"].endswith("...")
    assert (AUDIT_MAX_ROWS, AUDIT_MAX_PATH) == (1_000_000, 512)  # as docs/security.md says


def test_the_store_prunes_the_audit_log_when_it_reconciles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "root").mkdir()
    monkeypatch.setattr(records_module, "AUDIT_MAX_ROWS", 5)
    with StateDB(tmp_path / "state") as db, FileStore(str(tmp_path / "root"), db) as store:
        for i in range(30):
            store.audit("peer", "stat", f"p{i}", "not-found")
        store.reconcile()
        assert [r["path"] for r in db.query("SELECT path FROM file_audit ORDER BY id")] == [
            f"p{i}" for i in range(25, 30)
        ]


def test_a_deleted_path_takes_its_cached_hashes_with_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "tree" / "sub").mkdir(parents=True)
    for rel in ("tree/a", "tree/sub/b", "treeish", "other"):
        (root / rel).write_text(rel)
    with StateDB(tmp_path / "state") as db:
        with serving(root, db) as (address, _):

            async def body(client: object) -> None:
                await client.list("", recursive=True, with_hash=True)  # type: ignore[attr-defined]
                await client.delete("tree", recursive=True)  # type: ignore[attr-defined]
                await client.delete("other")  # type: ignore[attr-defined]

            client_run(address, body)
        cached = sorted(r["path"] for r in db.query("SELECT path FROM file_hashes"))
    assert cached == ["treeish"]  # "tree" went with everything under it, not its look-alike
