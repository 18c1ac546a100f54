"""What one node carries: the figures behind docs/scale.md.

Three parts, each printed as it ends:

1. ``sqlite``: the ceiling of the one writer. Commits/s of one-row transactions and
   rows/s of 1,000-row transactions on a file in WAL mode with ``synchronous=FULL``, as
   server/db.py opens it (every commit an fsync), in the data folder's file system.
2. ``submit``: evaluations accepted and completed per second over HTTP. ``evaldock serve
   --mode mock`` as a subprocess; N keep-alive clients each POST 5-pair Objective
   evaluations in a loop for ``--duration`` seconds; then the clock runs until
   ``/metrics`` shows no job queued or running. Accepting one is a transaction (the
   evaluation and its job); completing it is the job's run in a worker and its results'
   commit. Also the CPU per evaluation of the API process and of the whole process tree
   (the workers too): on a shared machine these say more than the rates;
   ``--jobs-concurrency`` sets the server's ``[jobs] concurrency`` (jobs in flight, 4).
3. ``engines``: rows/s of the per-row engines in one process (one core): the built-in
   Spice scorers (match, includes, levenshtein, fuzzy_match), the text metrics (jieba, ROUGE,
   BLEU, F1) on English pairs, and the mock judge's relevance calls.

Poll throughput is scripts/bench_poll.py's (cited in docs/scale.md). Bounded: about a
minute with the defaults on 2 cores.

    .venv/bin/python scripts/bench_scale.py
    .venv/bin/python scripts/bench_scale.py --clients 1,8,32 --duration 5 --rows 20000
    .venv/bin/python scripts/bench_scale.py --only sqlite,engines
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import bench_poll as bp  # noqa: E402 - the HTTP client and server helpers, shared

PAIRS = [
    {"query": "striped shirt", "object_id": str(i), "object": {"t": f"shirt {i}"}} for i in range(5)
]


# -- 1. the SQLite writer's ceiling ----------------------------------------------------------


def sqlite_ceiling(folder: Path, seconds: float) -> None:
    path = folder / "ceiling.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, job TEXT, body TEXT)")
    body = json.dumps({"data": PAIRS})
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (job, body) VALUES (?, ?)", (f"j{n}", body))
        conn.execute("COMMIT")
        n += 1
    single = n / (time.perf_counter() - started)
    row = json.dumps({"score": 2, "explanation": "x" * 80})
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t (job, body) VALUES (?, ?)", ((f"r{rows + i}", row) for i in range(1000))
        )
        conn.execute("COMMIT")
        rows += 1000
    batched = rows / (time.perf_counter() - started)
    conn.close()
    print(
        f"sqlite (WAL, synchronous=FULL, {folder}): {single:,.0f} one-row commits/s; "
        f"{batched:,.0f} rows/s in 1,000-row commits"
    )


# -- 2. evaluations over HTTP ----------------------------------------------------------------


async def queue_left(conn: bp.Conn) -> int:
    """Jobs queued or running, from /metrics."""
    status, data = await conn.request("GET", "/metrics", auth=False)
    if status != 200:
        raise SystemExit(f"GET /metrics answered {status}")
    left = 0
    for m in re.finditer(rb'^evaldock_jobs\{[^}]*state="(\w+)"[^}]*\} ([0-9.e+]+)$', data, re.M):
        if m.group(1) in (b"queued", b"running"):
            left += int(float(m.group(2)))
    return left


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live children (the worker processes)."""
    total = bp.cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(tree_cpu_seconds(int(c)) for c in children)


async def submit(port: int, pid: int, clients: int, duration: float) -> None:
    body = json.dumps({"configuration": {"eval_name": "scale"}, "data": PAIRS}).encode()
    accepted = bad = 0
    latencies: list[float] = []
    stop = time.monotonic() + duration

    async def client() -> None:
        nonlocal accepted, bad
        conn = await bp.Conn.open(port)
        try:
            while time.monotonic() < stop:
                started = time.perf_counter()
                status, _ = await conn.request("POST", "/v1/evaluations", body)
                latencies.append(time.perf_counter() - started)
                if status == 200:
                    accepted += 1
                else:
                    bad += 1
        finally:
            conn.close()

    cpu0, tree0, t0 = bp.cpu_seconds(pid), tree_cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    t_accept = time.perf_counter() - t0
    watch = await bp.Conn.open(port)
    while await queue_left(watch):
        await asyncio.sleep(0.1)
    watch.close()
    t_done = time.perf_counter() - t0
    cpu = bp.cpu_seconds(pid) - cpu0
    tree = tree_cpu_seconds(pid) - tree0
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(
        f"submit clients={clients:<3} accepted {accepted / t_accept:7.1f}/s "
        f"(POST p50 {p50:6.1f} ms, p99 {p99:7.1f} ms, {bad} refused); "
        f"completed {accepted / t_done:7.1f} evaluations/s = {5 * accepted / t_done:7.1f} pairs/s; "
        f"CPU per evaluation: API process {1000 * cpu / max(accepted, 1):5.2f} ms, "
        f"with the workers {1000 * tree / max(accepted, 1):5.2f} ms"
    )


async def http_part(args: argparse.Namespace, tmp: Path) -> None:
    port = bp.free_port()
    config = tmp / "evaldock.toml"
    config.write_text(f"[jobs]\nconcurrency = {args.jobs_concurrency}\n")
    cmd = [
        *bp.evaldock_command(args),
        "serve",
        "--config",
        str(config),
        "--mode",
        "mock",
        "--data",
        str(tmp / "data"),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = bp.start(cmd, tmp / "evaldock.log")
    try:
        await bp.wait_ready(port, "/_evaldock/health")
        conn = await bp.Conn.open(port)
        eval_id, _ = await bp.create_evaluation(conn)  # warm: workers started, engines loaded
        await bp.poll_until_done(conn, eval_id, interval=0.1, timeout=120)
        conn.close()
        for clients in [int(c) for c in args.clients.split(",")]:
            await submit(port, proc.pid, clients, args.duration)
    finally:
        bp.stop_process(proc)


# -- 3. engines, rows per second -------------------------------------------------------------


def engines_part(rows: int) -> None:
    from evaldock.engines.judge.mock import MockJudge
    from evaldock.engines.scorers.registry import score_batch
    from evaldock.engines.text_metrics import TextMetrics
    from tests.engines.text_metrics_reference import generate_pairs

    pairs = generate_pairs(rows, "en", seed=0)
    outputs, ideals = [p for p, _ in pairs], [r for _, r in pairs]
    for name in ("match", "includes", "levenshtein", "fuzzy_match"):
        started = time.process_time()
        score_batch(name, outputs, ideals)
        print(f"engine scorer {name:<12} {rows / (time.process_time() - started):>12,.0f} rows/s")
    with tempfile.TemporaryDirectory(prefix="bench-scale-jieba-") as folder:
        metrics = TextMetrics(Path(folder))
        metrics.warm()
        started = time.process_time()
        metrics.per_cases(pairs)
        print(f"engine text_metrics (en)  {rows / (time.process_time() - started):>12,.0f} rows/s")
    judge = MockJudge({})

    async def judge_all() -> None:
        for query, obj in pairs:
            await judge.relevance(query, {"t": obj})

    started = time.process_time()
    asyncio.run(judge_all())
    print(f"engine mock judge         {rows / (time.process_time() - started):>12,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32", help="concurrent submitting clients")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of submitting")
    parser.add_argument(
        "--jobs-concurrency", type=int, default=4, help="the server's [jobs] concurrency"
    )
    parser.add_argument("--rows", type=int, default=20_000, help="rows per engine")
    parser.add_argument("--sqlite-seconds", type=float, default=3.0)
    parser.add_argument("--only", default="sqlite,submit,engines")
    parser.add_argument("--evaldock", default="", help="command that runs evaldock")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        if "sqlite" in parts:
            sqlite_ceiling(tmp, args.sqlite_seconds)
        if "submit" in parts:
            asyncio.run(http_part(args, tmp))
        if "engines" in parts:
            engines_part(args.rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
