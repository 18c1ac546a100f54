"""Paging figures of the dashboard's read models: 100,000 Spice runs and two runs of
100,000 cases x 2 scorers, in a migrated database; each query the dashboard runs, timed
(median of 5). Then first paint over HTTP: ``evaldock serve`` on that database, logged
in, the time to the first byte and to the complete HTML of each page (median of 5).

    .venv/bin/python scripts/bench_dashboard.py [--runs 100000] [--cases 100000] [--no-http]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from evaldock.server.dashboard.compare import Side, compare_cases, pick_scorers
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
    # run000001 scores the same cases again, a tenth of them lower (the compare page).
    c.executemany(
        "INSERT INTO spice_results (run_id, tenant, idx, scorer, created_at, input, actual,"
        " expected, value) VALUES (?, 't', ?, ?, 'x', ?, ?, ?, ?)",
        (
            (
                run,
                i,
                scorer,
                f"question {i}",
                f"answer {i}",
                f"ideal {i}",
                max(0.0, (i * 7919 % 100) / 100 - (0.25 if run[-1] == "1" and i % 10 == 0 else 0)),
            )
            for run in ("run000000", "run000001")
            for i in range(cases)
            for scorer in ("match", "lev")
        ),
    )
    c.commit()
    c.close()


def timed(fn: Callable[[], Any], n: int = 5) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def paint(http: httpx.Client, url: str) -> tuple[float, float, int]:
    """``(ms to the first byte of the body, ms to the whole HTML, bytes)`` of one GET."""
    start = time.perf_counter()
    first = 0.0
    size = 0
    with http.stream("GET", url) as r:
        assert r.status_code == 200, (url, r.status_code)
        for chunk in r.iter_raw():
            if not first:
                first = time.perf_counter()
            size += len(chunk)
    end = time.perf_counter()
    return (first - start) * 1000, (end - start) * 1000, size


def first_paint(data: Path, cases: int) -> None:
    """``evaldock serve`` on the database just built; each page timed over HTTP."""
    c = sqlite3.connect(data / "evaldock.sqlite3")
    # No job left running: a server starting would pick them up again.
    c.execute("UPDATE jobs SET status = 'completed' WHERE status = 'running'")
    c.commit()
    c.close()
    port = _free_port()
    rest = [str(data), "--mode", "mock", "--log-level", "warning"]
    env = {**os.environ}
    env.pop("EVALDOCK_CONFIG", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "evaldock.server", "serve", "--port", str(port), "--data", *rest],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/_evaldock/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        http = httpx.Client(base_url=base, timeout=120)
        form = http.get("/_evaldock/ui/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', form)
        assert token is not None
        key = (data / "control.key").read_text().strip()
        http.post("/_evaldock/ui/login", data={"csrf": token[1], "key": key})
        run = "/_evaldock/ui/runs/spice/run000000"
        deep = max(1, cases // 50)
        pages = {
            "overview": "/_evaldock/ui/",
            "runs, first page (50)": "/_evaldock/ui/runs",
            "runs, 200 a page": "/_evaldock/ui/runs?per=200",
            "runs, past a cursor": "/_evaldock/ui/runs?after=2025-01-01T00:00:000050Z~run000050",
            f"run of {cases} cases, page 1": run,
            f"run, page {deep} (last)": f"{run}?page={deep}",
            "run, failed only": f"{run}?failed=1",
            "run, search q": f"{run}?q=question+9999",
            "compare 2 runs, page 1": "/_evaldock/ui/compare?"
            + "run=spice:run000000&run=spice:run000001",
            "compare 2 runs, page 100": "/_evaldock/ui/compare?"
            + "run=spice:run000000&run=spice:run000001&page=100",
            "jobs page": "/_evaldock/ui/control/jobs",
            "journal page": "/_evaldock/ui/control/journal",
        }
        print("first paint over HTTP, ms: the first call (whole HTML), then median of 5")
        print(f"  {'page':<34} {'first':>8} {'1st byte':>8} {'whole':>8} {'KiB':>8}")
        for name, path in pages.items():
            cold = paint(http, path)[1]  # templates compiled, SQLite's cache filled
            runs = [paint(http, path) for _ in range(5)]
            ttfb = statistics.median(r[0] for r in runs)
            full = statistics.median(r[1] for r in runs)
            print(f"  {name:<34} {cold:8.1f} {ttfb:8.1f} {full:8.1f} {runs[0][2] / 1024:8.1f}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--no-http", dest="http", action="store_false", help="SQL figures only")
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
        details = [view.run(conn, r) for r in ("run000000", "run000001")]
        scorers, _ = pick_scorers([d for d in details if d is not None])
        sides = [
            Side("spice", d.row.id, view, d, s)
            for d, s in zip(details, scorers, strict=True)
            if d is not None
        ]
        figures["cases, search q (substring)"] = lambda: view.cases(
            conn, "run000000", CasesQuery(q="question 9999")
        )
        figures["compare, first page (1 pass)"] = lambda: compare_cases(conn, sides, 0, 50)
        figures["compare, page past regressions (2)"] = lambda: compare_cases(
            conn, sides, args.cases // 10, 50
        )
        print(f"{args.runs} runs, {args.cases} cases x 2 scorers; median of 5, ms")
        for name, fn in figures.items():
            once = name.startswith("compare")  # seconds at 100,000 cases: timed once
            print(f"  {name:<40} {timed(fn, 1 if once else 5):8.2f}{' (once)' if once else ''}")
        conn.close()
        if args.http:
            first_paint(path.parent, args.cases)


if __name__ == "__main__":
    main()
