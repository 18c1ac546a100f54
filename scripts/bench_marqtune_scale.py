"""Marqtune evaluations at scale, end to end over HTTP, mock ranker.

For each size: a fresh ``evaldock serve --mode mock`` process; a CSV of ``rows`` judgement
rows (one query per 10 rows, one document per row) uploaded to a dataset, validated,
then one evaluation with Marqo's walk-through hyperparameters (GCL's defaults: 2,000
sampled queries, top 1,000). Reported per size:

- ``time``: upload start -> evaluation Finished (upload, parse, embed, rank, metrics);
- ``eval``: the evaluation alone (POST /evaluation -> Finished);
- ``peak RSS``: the peak of the summed RSS of the server and all its descendants (the
  worker processes), sampled from /proc every 50 ms;
- ``disk``: the peak size of the data directory while it ran (sampled every 0.5 s).

``python scripts/bench_marqtune_scale.py`` (1k, 10k, 100k), ``--sizes 1000000``,
``--big`` (adds 10,000,000). The machine's load average is printed beside each row: on
a shared 2-core machine the times move with it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.marqtune_walk import evaluate, upload, write_csv  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


class Sampler(threading.Thread):
    """Peak summed RSS of a process tree and peak disk use of a folder."""

    def __init__(self, pid: int, data: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.data = pid, data
        self.peak_rss = 0.0
        self.peak_disk = 0
        self.stop = threading.Event()

    def run(self) -> None:
        last_disk = 0.0
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, sum(rss_mb(p) for p in descendants(self.pid)))
            if time.monotonic() - last_disk > 0.5:
                self.peak_disk = max(self.peak_disk, tree_size(self.data))
                last_disk = time.monotonic()
            time.sleep(0.05)


def run(rows: int, tmp: Path) -> dict[str, Any]:
    csv_path = tmp / f"rows-{rows}.csv"
    write_csv(csv_path, rows)
    data = tmp / f"data-{rows}"
    # 10,000,000 rows are an ~800 MB CSV, over the default 512 MiB upload bound.
    config = tmp / f"config-{rows}.toml"
    config.write_text(f"[marqtune]\nmax_upload_bytes = {64 * 2**30}\n")
    with ServerProcess(
        data, mode="mock", config=config, extra_args=["--surfaces", "marqtune"]
    ) as s:
        assert s.proc is not None
        sampler = Sampler(s.proc.pid, data)
        sampler.start()
        with httpx.Client(base_url=s.url, timeout=600) as c:
            t0 = time.perf_counter()
            dataset_id = upload(c, csv_path, f"scale-{rows}", every=0.2)
            t1 = time.perf_counter()
            done = evaluate(c, dataset_id, every=0.2)
            t2 = time.perf_counter()
        sampler.stop.set()
        sampler.join()
    csv_path.unlink()
    return {
        "rows": rows,
        "time": t2 - t0,
        "eval": t2 - t1,
        "rss": sampler.peak_rss,
        "disk": sampler.peak_disk / 2**20,
        "load": os.getloadavg()[0],
        "ndcg10": done["evaluationMetrics"]["summary"]["NDCG@10"][0]
        if "evaluationMetrics" in done
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated rows")
    parser.add_argument("--big", action="store_true", help="also 10,000,000 rows")
    parser.add_argument("--tmp", type=Path, default=None, help="where data dirs go")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.big:
        sizes.append(10_000_000)
    print("| rows | time | eval | peak RSS (server + workers) | peak disk | load avg |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for rows in sizes:
            r = run(rows, Path(tmp))
            print(
                f"| {rows:,} | {r['time']:.1f} s | {r['eval']:.1f} s | {r['rss']:,.0f} MiB "
                f"| {r['disk']:,.0f} MiB | {r['load']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
