"""Paging figures of the dashboard's read models: 100,000 Spice runs and one run of
100,000 cases x 2 scorers, in a migrated database; each query the dashboard runs, timed
(median of 5).

    .venv/bin/python scripts/bench_dashboard.py [--runs 100000] [--cases 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaldock.server.db import Database
from evaldock.server.readmodel import CasesQuery, RunsQuery
from evaldock.server.spice.views import SpiceRunsView

SPEC = b'{"eval":"e","dataset":"d","model":"replay","scorers":["match","lev"]}'


def build(path: Path, runs: int, cases: int) -> None:
    async def migrate() -> None:
        db = Database(path)
        await db.open()
        await db.migrate("core", "evaldock.server")
        await db.migrate("spice", "evaldock.server.spice")
        await db.close()

    asyncio.run(migrate())
    c = sqlite3.connect(path)
    states = ["completed"] * 97 + ["failed"] * 2 + ["running"]
    c.executemany(
        "INSERT INTO spice_runs (id, tenant, eval, dataset, model, scorers, metrics, spec,"
        " created_at) VALUES (?, 't', 'e', 'd', 'replay', '[\"match\",\"lev\"]',"
        " '{\"match/mean\":0.5}', ?, ?)",
        ((f"run{i:06d}", SPEC, f"2025-01-01T00:00:{i:06d}Z") for i in range(runs)),
    )
    c.executemany(
        "INSERT INTO jobs (id, kind, tenant, status, processed, total, created_at,"
        " updated_at) VALUES (?, 'spice.eval', 't', ?, 1, 1, 'x', 'x')",
        ((f"run{i:06d}", states[i % 100]) for i in range(runs)),
    )
    c.executemany(
        "INSERT INTO spice_results (run_id, tenant, idx, scorer, created_at, input, actual,"
        " expected, value) VALUES ('run000000', 't', ?, ?, 'x', ?, ?, ?, ?)",
        (
            (i, scorer, f"question {i}", f"answer {i}", f"ideal {i}", (i * 7919 % 100) / 100)
            for i in range(cases)
            for scorer in ("match", "lev")
        ),
    )
    c.commit()
    c.close()


def timed(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--cases", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "evaldock.sqlite3"
        build(path, args.runs, args.cases)
        conn = sqlite3.connect(path)
        conn.row_factory = sqlite3.Row
        view = SpiceRunsView()
        last = view.runs(conn, RunsQuery(limit=1, order="asc"))[0].key
        deep = (f"2025-01-01T00:00:{50:06d}Z", f"run{50:06d}")
        cases_deep = max(0, args.cases - 50)
        figures = {
            "runs, first page (50)": lambda: view.runs(conn, RunsQuery(limit=51)),
            "runs, last page (keyset)": lambda: view.runs(conn, RunsQuery(limit=51, after=deep)),
            "runs, oldest first": lambda: view.runs(conn, RunsQuery(limit=51, order="asc")),
            "runs, status=failed": lambda: view.runs(conn, RunsQuery(limit=51, status="failed")),
            "runs, status=failed past the oldest": lambda: view.runs(
                conn, RunsQuery(limit=51, status="failed", order="asc", after=last)
            ),
            "run detail": lambda: view.run(conn, "run000000"),
            "cases, first page": lambda: view.cases(conn, "run000000", CasesQuery()),
            f"cases, page at offset {cases_deep}": lambda: view.cases(
                conn, "run000000", CasesQuery(offset=cases_deep)
            ),
            "cases, by score desc, deep": lambda: view.cases(
                conn,
                "run000000",
                CasesQuery(scorer="lev", sort="score", order="desc", offset=cases_deep),
            ),
            "cases, failed only": lambda: view.cases(
                conn, "run000000", CasesQuery(failed_only=True)
            ),
            "histograms (2 scorers)": lambda: view.histograms(conn, "run000000"),
            "runs by state (overview)": lambda: conn.execute(
                "SELECT status, COUNT(*) FROM job_view WHERE kind = 'spice.eval' GROUP BY status"
            ).fetchall(),
        }
        print(f"{args.runs} runs, {args.cases} cases x 2 scorers; median of 5, ms")
        for name, fn in figures.items():
            print(f"  {name:<40} {timed(fn):8.2f}")


if __name__ == "__main__":
    main()
