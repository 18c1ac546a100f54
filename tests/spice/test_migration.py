"""Migration 0003: results stored in the v1.0.x layout (``output`` = answer, ``actual`` =
ideal) keep every text under the post-#4835 names (``actual`` = answer, ``expected`` =
ideal), and the cookbook query reads them."""

from __future__ import annotations

import asyncio
import shutil
from importlib import resources
from pathlib import Path

import pytest

from evaldock.server.db import Database
from evaldock.server.spice import sql


async def _old_database(path: Path, tmp: Path) -> Database:
    """A database at spice migration 0002, with one run and two results stored."""
    old = tmp / "old_spice"
    (old / "migrations").mkdir(parents=True)
    source = resources.files("evaldock.server.spice") / "migrations"
    for name in ("0001_spice.sql", "0002_run_signature.sql"):
        (old / "migrations" / name).write_text(
            (source / name).read_text(encoding="utf-8"), encoding="utf-8"
        )
    db = Database(path)
    await db.open()
    await db.migrate("core", "evaldock.server")
    assert await db.migrate("spice", old) == ["0001_spice.sql", "0002_run_signature.sql"]
    shutil.rmtree(old)
    now = "2025-02-04T23:10:29Z"
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO jobs (id, kind, tenant, status, created_at, updated_at, finished_at)"
            " VALUES ('r1', 'spice.eval', 'public', 'completed', ?, ?, ?)",
            (now, now, now),
        )
        await tx.execute(
            "INSERT INTO spice_runs (id, tenant, eval, dataset, model, scorers, metrics, spec,"
            " created_at) VALUES ('r1', 'public', 'e', 'd', 'm', '[\"match\"]',"
            " '{\"match/mean\": 0.5}', '{}', ?)",
            (now,),
        )
        messages = '[{"role": "system", "content": "s"}, {"role": "user", "content": "2+2?"}]'
        await tx.executemany(
            "INSERT INTO spice_results (run_id, tenant, idx, scorer, created_at, input, output,"
            " actual, value) VALUES ('r1', 'public', ?, 'match', ?, ?, ?, ?, ?)",
            [(0, now, messages, "four", "4", 0.0), (1, now, "France?", "Paris", "Paris", 1.0)],
        )
    return db


@pytest.mark.inprocess
def test_old_results_migrate_to_actual_and_expected(tmp_path: Path) -> None:
    path = tmp_path / "data" / "evaldock.db"

    async def migrate() -> list[str]:
        db = await _old_database(path, tmp_path)
        try:
            return await db.migrate("spice", "evaldock.server.spice")
        finally:
            await db.close()

    assert asyncio.run(migrate())[0] == "0003_results_expected.sql"  # later ones follow
    columns, rows = sql.run_query(
        path,
        "public",
        "SELECT json_get_str(json_get_json(input, 1), 'content') AS input, expected, actual"
        " FROM eval.results WHERE run_id = 'r1' AND value = 0.0",
        timeout=5,
        max_rows=10,
        max_bytes=10_000,
    )
    assert columns == ["input", "expected", "actual"]
    assert rows == [{"input": "2+2?", "expected": "4", "actual": "four"}]
    _, every = sql.run_query(
        path,
        "public",
        "SELECT * FROM eval.results ORDER BY value",
        timeout=5,
        max_rows=10,
        max_bytes=10_000,
    )
    assert [(r["actual"], r["expected"]) for r in every] == [("four", "4"), ("Paris", "Paris")]
    assert every[0]["created_at"] == "2025-02-04T23:10:29"
