"""One hostile or large input must not stall everyone else: measured over real HTTP.

Starts ``evaldock serve --mode mock`` and sends, one at a time and then all at once, the
inputs that used to stall every surface and tenant for tens of seconds (issue 17):

- ``levenshtein``: a Spice case whose ``ideal`` and ``output`` are 1,000,000 characters,
  scored by ``levenshtein`` (Spice needs no key by default);
- ``big-json``: a 45 MB valid JSON body on Spice's ``PUT /v1/evals/{name}``;
- ``recursive-sql``: 24 concurrent ``WITH RECURSIVE`` queries on ``/v1/sql``;
- ``parquet-bomb``: a 13 kB parquet file holding one 400 MiB cell, read by Oxen's
  ``data_frames``;
- ``csv-quote``: a 7.6 MB CSV whose first quote never closes, read by ``data_frames``.

Then (``--parallel N``) two CPU-heavy Spice evals (N levenshtein pairs of 20,000
characters each), one after the other and then at once: on 2 cores the pair at once
should take <= 0.6x the time of the two in turn (they used to share one GIL: ~1.0x).

While each runs, a prober GETs ``/_evaldock/health`` and a finished Objective evaluation
every 20 ms on connections of their own, and the API process's resident memory (and its
worker processes', separately) is sampled. Reported per input: what the input got back
and in how long, the probes' p50/p99/max latency, the peaks of memory. Targets: probe
p99 under 100 ms, API process under ``--rss-bound`` MB.

    .venv/bin/python scripts/bench_isolation.py
    .venv/bin/python scripts/bench_isolation.py --only levenshtein,csv-quote
    .venv/bin/python scripts/bench_isolation.py --source /tmp/old  # another tree's code

``--source DIR`` serves the ``server``/``engines``/``openapi`` folders of another checkout
(e.g. ``git worktree add /tmp/old <commit>``), to measure before and after in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from evaldock.server.testing.client import EvaldockServer

REPO = Path(__file__).resolve().parents[1]
OXEN = {"Authorization": "Bearer test"}
R = "/api/repos/bench/data"
PROBE_SECONDS = 0.02


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Child processes of ``pid``, whichever of its threads started them."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found += [int(p) for p in fh.read().split()]
        except OSError:
            continue
    return found


def shadow_tree(source: Path) -> Path:
    """A folder whose ``evaldock`` package is ``source``'s server/engines/openapi."""
    root = Path(tempfile.mkdtemp(prefix="evaldock-src-"))
    (root / "evaldock").mkdir()
    for name in ("server", "engines", "openapi"):
        (root / "evaldock" / name).symlink_to(source / name)
    return root


# -- the inputs ---------------------------------------------------------------------------


def parquet_bomb() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cell = "a" * (400 * 1024 * 1024)
    buf = io.BytesIO()
    pq.write_table(pa.table({"prompt": [cell]}), buf, compression="zstd")
    return buf.getvalue()


def unterminated_csv(size: int = 7_600_000) -> bytes:
    line = b"x,some text here\n"
    return b'"prompt,other\n' + line * (size // len(line))


async def setup(client: httpx.AsyncClient) -> str:
    """A finished Objective evaluation to poll, and the Oxen files to read."""
    body = {"data": [{"query": "q", "object": {"t": "x"}}] * 5}
    r = await client.post("/v1/evaluations", json=body, headers=OXEN)
    evaluation = f"/v1/evaluations/{r.json()['id']}"
    while (await client.get(evaluation, headers=OXEN)).json()["status"] != "completed":
        await asyncio.sleep(0.05)
    await client.post("/api/repos", json={"namespace": "bench", "name": "data"}, headers=OXEN)
    form = {"name": "B", "email": "b@x", "message": "hostile files"}
    files = [
        ("files[]", ("bomb.parquet", parquet_bomb())),
        ("files[]", ("quote.csv", unterminated_csv())),
    ]
    r = await client.put(f"{R}/file/main/", files=files, data=form, headers=OXEN, timeout=120)
    r.raise_for_status()
    return evaluation


class Payloads:
    """The large request bodies, built once before anything is measured: building them
    (json.dumps of 45 MB) would otherwise hold the prober's own event loop."""

    def __init__(self) -> None:
        import random

        rng = random.Random(17)
        n = 1_000_000
        # Two unrelated texts: the worst case of an edit distance.
        ideal = "".join(rng.choices("abcdefghij", k=n))
        output = "".join(rng.choices("abcdefghij", k=n))
        self.long_pair = json.dumps(
            {
                "dataset": "long_pair",
                "scorers": ["levenshtein"],
                "data": [{"input": "q", "ideal": ideal, "output": output}],
            }
        ).encode()
        cell = "x" * 500
        count = 45 * 1024 * 1024 // (2 * len(cell) + 40)
        data = [{"input": "q", "ideal": cell, "output": cell} for _ in range(count)]
        self.big = json.dumps({"dataset": "big", "scorers": ["match"], "data": data}).encode()


PAYLOADS: Payloads | None = None
JSON = {"Content-Type": "application/json"}


def payloads() -> Payloads:
    global PAYLOADS
    if PAYLOADS is None:
        PAYLOADS = Payloads()
    return PAYLOADS


async def levenshtein(client: httpx.AsyncClient) -> str:
    r = await client.put("/v1/evals/long_pair", content=payloads().long_pair, headers=JSON)
    if r.status_code != 200:
        return f"PUT {r.status_code}"
    r = await client.post("/v1/evals/long_pair", json={"model": "replay"})
    if r.status_code != 200:
        return f"{r.status_code} {r.text[:120]}"
    run = r.json()[0] if isinstance(r.json(), list) else r.json()
    return f"200 {run.get('status')}"


async def big_json(client: httpx.AsyncClient) -> str:
    body = payloads().big
    r = await client.put("/v1/evals/big", content=body, headers=JSON)
    return f"{r.status_code} ({len(body) / 1e6:.0f} MB)"


async def recursive_sql(client: httpx.AsyncClient) -> str:
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"

    async def one() -> int:
        r = await client.post("/v1/sql", content=sql, headers={"Content-Type": "text/plain"})
        return r.status_code

    codes = await asyncio.gather(*(one() for _ in range(24)))
    return "24 x " + ",".join(sorted({str(c) for c in codes}))


async def parquet_read(client: httpx.AsyncClient) -> str:
    r = await client.get(f"{R}/data_frames/main/bomb.parquet", headers=OXEN)
    return f"{r.status_code}"


async def csv_read(client: httpx.AsyncClient) -> str:
    r = await client.get(f"{R}/data_frames/main/quote.csv", headers=OXEN)
    return f"{r.status_code}"


INPUTS: dict[str, Callable[[httpx.AsyncClient], Awaitable[str]]] = {
    "levenshtein": levenshtein,
    "big-json": big_json,
    "recursive-sql": recursive_sql,
    "parquet-bomb": parquet_read,
    "csv-quote": csv_read,
}


def cpu_body(name: str, cases: int, length: int) -> dict[str, Any]:
    """A Spice eval whose scoring is CPU-bound in its worker: ``cases`` pairs of
    ``length`` random characters, scored by levenshtein (bit-parallel, ~10 ms a pair of
    20,000 characters), small to store (one result row a case)."""
    import random

    rng = random.Random(name)
    letters = "abcdefghij "

    def text() -> str:
        return "".join(rng.choices(letters, k=length))

    data = [{"input": f"q{i}", "ideal": text(), "output": text()} for i in range(cases)]
    return {"dataset": name, "scorers": ["levenshtein"], "data": data}


async def run_eval(client: httpx.AsyncClient, name: str) -> float:
    start = time.perf_counter()
    r = await client.post(f"/v1/evals/{name}", json={"model": "replay"})
    r.raise_for_status()
    run = r.json()[0] if isinstance(r.json(), list) else r.json()
    if run.get("status") != "Completed":
        raise RuntimeError(f"eval {name}: {run}")
    return time.perf_counter() - start


async def parallel(server: EvaldockServer, cases: int, length: int = 20_000) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=600) as client:
        # The bodies are built and stored first: only the runs are timed.
        for name in ("warm_a", "warm_b", "cpu_a", "cpu_b"):
            size = 20 if name.startswith("warm") else cases
            r = await client.put(f"/v1/evals/{name}", json=cpu_body(name, size, length))
            r.raise_for_status()
        # Both job workers started and their modules imported before anything is timed.
        await asyncio.gather(run_eval(client, "warm_a"), run_eval(client, "warm_b"))
        one = await run_eval(client, "cpu_a")
        two = await run_eval(client, "cpu_b")
        start = time.perf_counter()
        await asyncio.gather(run_eval(client, "cpu_a"), run_eval(client, "cpu_b"))
        both = time.perf_counter() - start
    ratio = both / (one + two)
    print(
        "\n"
        f"two CPU-heavy evals ({cases:,} levenshtein pairs of {length:,} characters each): "
        f"in turn {one:.2f} + {two:.2f} s, at once {both:.2f} s -> {ratio:.2f}x "
        "(target <= 0.6x; one GIL gives ~1.0x)"
    )


# -- measuring ----------------------------------------------------------------------------


class Probe:
    """GETs health and a finished evaluation in a loop; samples memory."""

    def __init__(self, url: str, evaluation: str, pid: int) -> None:
        self.url, self.evaluation, self.pid = url, evaluation, pid
        self.latencies: dict[str, list[float]] = {"health": [], "poll": []}
        self.api_mb = 0.0
        self.workers_mb = 0.0
        self._stop = asyncio.Event()

    async def _loop(self, name: str, path: str) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=120) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                r = await client.get(path, headers=OXEN)
                self.latencies[name].append(time.perf_counter() - start)
                if r.status_code != 200:
                    raise RuntimeError(f"probe {path}: {r.status_code}")
                await asyncio.sleep(PROBE_SECONDS)

    async def _memory(self) -> None:
        while not self._stop.is_set():
            self.api_mb = max(self.api_mb, rss_mb(self.pid))
            kids = sum(rss_mb(p) for p in children(self.pid))
            self.workers_mb = max(self.workers_mb, kids)
            await asyncio.sleep(0.05)

    async def during(self, work: Awaitable[Any]) -> Any:
        tasks = [
            asyncio.create_task(self._loop("health", "/_evaldock/health")),
            asyncio.create_task(self._loop("poll", self.evaluation)),
            asyncio.create_task(self._memory()),
        ]
        try:
            return await work
        finally:
            self._stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    def summary(self, name: str) -> str:
        values = sorted(self.latencies[name])
        if not values:
            return "no answer"
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        return (
            f"p50 {statistics.median(values) * 1000:6.1f}  p99 {p99 * 1000:7.1f}  "
            f"max {values[-1] * 1000:7.1f} ms"
        )

    def p99(self) -> float:
        every = sorted(self.latencies["health"] + self.latencies["poll"])
        return every[min(len(every) - 1, int(len(every) * 0.99))] if every else float("inf")


async def measure(
    server: EvaldockServer, evaluation: str, names: list[str], timeout: float
) -> dict:
    probe = Probe(server.url, evaluation, server.proc.pid)
    started = time.perf_counter()

    async def work() -> list[str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=timeout) as client:

            async def one(name: str) -> str:
                try:
                    return await INPUTS[name](client)
                except httpx.TimeoutException:
                    return f"no answer in {timeout:.0f} s"

            return list(await asyncio.gather(*(one(n) for n in names)))

    outcomes = await probe.during(work())
    return {
        "inputs": names,
        "outcomes": outcomes,
        "seconds": time.perf_counter() - started,
        "health": probe.summary("health"),
        "poll": probe.summary("poll"),
        "p99_ms": probe.p99() * 1000,
        "api_mb": probe.api_mb,
        "workers_mb": probe.workers_mb,
    }


def report(rows: list[dict], rss_bound: float) -> None:
    for row in rows:
        label = " + ".join(row["inputs"]) if len(row["inputs"]) > 1 else row["inputs"][0]
        ok = row["p99_ms"] < 100 and row["api_mb"] < rss_bound
        print(f"\n{label}: {'; '.join(row['outcomes'])} in {row['seconds']:.1f} s")
        print(f"  health  {row['health']}")
        print(f"  poll    {row['poll']}")
        print(
            f"  API process peak {row['api_mb']:.0f} MB (bound {rss_bound:.0f}), "
            f"workers peak {row['workers_mb']:.0f} MB -> {'OK' if ok else 'OVER'}"
        )


async def main_async(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="evaldock-isolation-")) / "data"
    env = {"PYTHONPATH": str(shadow_tree(args.source))} if args.source else None
    server = EvaldockServer.start(data, env=env)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            evaluation = await setup(client)
        payloads()
        names = [n for n in INPUTS if not args.only or n in args.only]
        rows = [await measure(server, evaluation, [n], args.timeout) for n in names]
        if len(names) > 1:
            rows.append(await measure(server, evaluation, names, args.timeout))
        report(rows, args.rss_bound)
        if args.parallel:
            await parallel(server, args.parallel)
    finally:
        server.stop()
        shutil.rmtree(data.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=lambda s: s.split(","), default=None)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per input")
    parser.add_argument("--rss-bound", type=float, default=400.0, help="API process MB")
    parser.add_argument("--source", type=Path, default=None, help="serve another checkout")
    parser.add_argument(
        "--parallel", type=int, default=300, help="cases per CPU-heavy eval (0: skip)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
