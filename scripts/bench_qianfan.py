"""Qianfan rule metrics: how long a rule task over N cases takes, and how the API answers
meanwhile (the latency of ``eval/detail`` polls made while it runs, and the API process's
peak RSS). One run, in-process, mock mode; ratios against another tree come from running
it twice (``PYTHONPATH=<tree> python scripts/bench_qianfan.py``), never from a timed test.

    .venv/bin/python scripts/bench_qianfan.py --cases 20000 --words 20

10,000 cases of 20 words, two runs each, on the shared 2-core machine (load ~7): metrics
in the API process's thread (before) vs in a worker (after): polls p99 318-428 ms ->
49-65 ms, API peak RSS 199 -> 144 MB; the metrics' wall time 8.0-9.1 s -> 11.8-12.7 s,
as the worker shares the host's two busy cores with this in-process poller (CPU: 0.41 s
a 1,000-case chunk in the worker; the whole run 7.6 -> 8.7 CPU s, the workers' start-up
and jieba load included).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaldock.server.app import create_app
from evaldock.server.load import load_settings
from tests.qianfan.helpers import EVAL, add_dataset, create_eval, ok

VOCAB = ["北京", "中国", "the", "answer", "is", "hello", "world", "首都", "模型", "评估", "天气"]


def cases(n: int, words: int) -> list[dict[str, str]]:
    def text(i: int, salt: int) -> str:
        return " ".join(VOCAB[(i * 7 + j * salt) % len(VOCAB)] for j in range(words))

    return [
        {"prompt": f"q{i}", "reference": text(i, 3), "prediction": text(i, 5)} for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--words", type=int, default=20, help="words per text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None, {"server.data": str(Path(tmp) / "data"), "server.mode": "mock"}, environ={}
        )
        with TestClient(create_app(settings)) as client:
            # Warm: jieba's dictionary cache is built once per data folder (~1.5 s).
            warm = add_dataset(client, cases(10, 3), "warm")
            eval_id = create_eval(client, warm)["evalIdStr"]
            while ok(client, f"{EVAL}/detail", {"id": eval_id})["state"] != "Done":
                time.sleep(0.05)
            dataset_id = add_dataset(client, cases(args.cases, args.words), "bench")
            started = time.monotonic()
            eval_id = create_eval(client, dataset_id)["evalIdStr"]
            latencies: list[float] = []
            inferred = 0.0  # when every case's result row was stored (metrics start)
            while True:
                t0 = time.monotonic()
                detail = ok(client, f"{EVAL}/detail", {"id": eval_id})
                latencies.append(time.monotonic() - t0)
                if not inferred and detail["progress"]["processed"] == args.cases:
                    inferred = time.monotonic() - started
                if detail["state"] not in ("Pending", "Doing"):
                    break
                time.sleep(0.02)
            elapsed = time.monotonic() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"cases={args.cases} words={args.words} state={detail['state']}")
    print(
        f"rule task: {elapsed:.2f} s; results stored after {inferred:.2f} s, "
        f"metrics {elapsed - inferred:.2f} s ({args.cases / (elapsed - inferred):,.0f} cases/s)"
    )
    print(
        f"eval/detail while it ran ({len(latencies)} polls): p50 "
        f"{1000 * statistics.median(latencies):.1f} ms, p99 {1000 * p99:.1f} ms, max "
        f"{1000 * latencies[-1]:.1f} ms"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"API process peak RSS: {peak:.0f} MB")
    # On a shared machine wall time follows the load; CPU seconds do not. Worker
    # processes count once reaped (the pool closes with the app).
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"CPU seconds, the whole run: API process {me.ru_utime + me.ru_stime:.1f}, "
        f"workers {kids.ru_utime + kids.ru_stime:.1f}"
    )


if __name__ == "__main__":
    main()
