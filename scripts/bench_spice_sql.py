"""``POST /v1/sql`` over 100,000 ``eval.results`` rows: DataFusion (what the surface runs)
against SQLite (what it ran before) and against a bare DataFusion query, in one run.

    python scripts/bench_spice_sql.py [--results 100000] [--repeat 5]

Writes a database with the surface's migrations, one tenant's run and ``--results``
result rows (texts of ~60 characters, a chat-message input on every row), then times
each query three ways, best of ``--repeat``:

- ``served``: :func:`evaldock.server.spice.sql.run_query`, as a request-lane worker runs
  it: the tenant's rows read from SQLite into Arrow, a fresh DataFusion session, the
  query, the rows rendered for JSON;
- ``sqlite``: the path before DataFusion: the tenant's rows copied into a temporary table
  on a read-only connection, the query run there (SQLite's dialect: no JSON functions,
  so the JSON query is written with ``json_extract``), the rows fetched;
- ``bare``: the same query on a DataFusion session whose tables are already loaded:
  the engine's own cost, without reading the tenant's rows or rendering.

The ratios printed are served/sqlite and served/bare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaldock.server.db import Database
from evaldock.server.spice import sql, sqljson

TENANT = "public"
# (name, DataFusion SQL, the same in SQLite's dialect)
QUERIES = [
    (
        "count",
        "SELECT count(*) AS n FROM eval.results",
        "SELECT count(*) AS n FROM results",
    ),
    (
        "mean by scorer",
        "SELECT scorer, avg(value) AS mean FROM eval.results GROUP BY scorer ORDER BY scorer",
        "SELECT scorer, avg(value) AS mean FROM results GROUP BY scorer ORDER BY scorer",
    ),
    (
        "cookbook (JSON, 1/5 rows)",
        "SELECT json_get_str(json_get_json(input, 1), 'content') AS input, expected, actual"
        " FROM eval.results WHERE run_id = 'r1' AND value = 0.0",
        "SELECT json_extract(input, '$[1].content') AS input, expected, actual"
        " FROM results WHERE run_id = 'r1' AND value = 0.0",
    ),
    (
        "1,000 rows",
        "SELECT * FROM eval.results ORDER BY value DESC, run_id LIMIT 1000",
        "SELECT * FROM results ORDER BY value DESC, run_id LIMIT 1000",
    ),
]


async def _write(path: Path, results: int) -> None:
    db = Database(path)
    await db.open()
    try:
        await db.migrate("core", "evaldock.server")
        await db.migrate("spice", "evaldock.server.spice")
        now = "2025-02-04T23:10:29Z"
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO jobs (id, kind, tenant, status, created_at, updated_at,"
                " finished_at) VALUES ('r1', 'spice.eval', ?, 'completed', ?, ?, ?)",
                (TENANT, now, now, now),
            )
            await tx.execute(
                "INSERT INTO spice_runs (id, tenant, eval, dataset, model, scorers, metrics,"
                " spec, created_at) VALUES ('r1', ?, 'e', 'd', 'm', '[\"match\"]', '{}',"
                " '{}', ?)",
                (TENANT, now),
            )
            rows = []
            for i in range(results):
                messages = json.dumps(
                    [
                        {"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": f"What is {i} times seven?"},
                    ]
                )
                answer, ideal = f"It is {i * 7}.", f"{i * 7}"
                scorer = ("match", "includes", "fuzzy_match", "json_match", "levenshtein")[i % 5]
                rows.append((i, scorer, now, messages, answer, ideal, float(i % 5 == 0)))
            await tx.executemany(
                "INSERT INTO spice_results (run_id, tenant, idx, scorer, created_at, input,"
                f" actual, expected, value) VALUES ('r1', '{TENANT}', ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        await db.close()


def _sqlite(path: Path, query: str) -> int:
    """The path before DataFusion: a temporary copy of the tenant's rows, then the query."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute(
            "CREATE TEMP TABLE results AS SELECT run_id, created_at, input, actual, expected,"
            " scorer, value FROM main.spice_results WHERE tenant = ? ORDER BY run_id, scorer,"
            " idx",
            (TENANT,),
        )
        return len(conn.execute(query).fetchall())
    finally:
        conn.close()


def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data" / "evaldock.db"
        asyncio.run(_write(path, args.results))
        tables = sql.load_tables(path, TENANT, results=True)
        calls = {("json_get_str", 2), ("json_get_json", 2)}
        bare = sql.session(tables, 512, calls)
        print(f"{args.results} eval.results rows, best of {args.repeat}")
        print(f"{'query':28} {'served':>9} {'sqlite':>9} {'bare':>9} {'/sqlite':>8} {'/bare':>7}")
        for name, df_query, lite_query in QUERIES:

            def served(q: str = df_query) -> None:
                sql.run_query(
                    path, TENANT, q, timeout=60, max_rows=10**6, max_bytes=2**31, memory_mb=2048
                )

            def engine(q: str = df_query) -> None:
                bare.sql(sqljson.rename_calls(q)[0]).collect()

            t_served = _best(served, args.repeat)
            t_sqlite = _best(lambda q=lite_query: _sqlite(path, q), args.repeat)
            t_bare = _best(engine, args.repeat)
            print(
                f"{name:28} {t_served * 1000:8.1f}ms {t_sqlite * 1000:8.1f}ms"
                f" {t_bare * 1000:8.1f}ms {t_served / t_sqlite:7.2f}x {t_served / t_bare:6.1f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
