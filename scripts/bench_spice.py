"""A 10,000-case Spice eval end to end: ``POST /v1/evals/{name}`` → 200, in mock mode.

    python scripts/bench_spice.py [--cases 10000] [--repeat 3]

Starts ``evaldock serve --mode mock --surfaces spice`` on a spicepod written to a temporary
folder: one JSON Lines dataset (input, ideal, output) and one eval with the five
built-in scorers. Each model (``mock``: deterministic text; ``replay``: the output
column) is run ``--repeat`` times; the figure is cases per second of the whole
synchronous request (read the dataset, answer every case, score 5 x cases, store
5 x cases result rows, compute metrics), best and median of the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.live import toml_from_flags
from tests.serverproc import ServerProcess

SCORERS = ["match", "json_match", "includes", "fuzzy_match", "levenshtein"]


def write_pod(folder: Path, cases: int) -> Path:
    with (folder / "cases.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(cases):
            ideal = f"The answer to question {i} is {i * 7 % 1000}."
            output = ideal if i % 3 else f"I think the answer is {i * 7 % 1000}"
            fh.write(
                json.dumps(
                    {"input": f"Question {i}: what is it?", "ideal": ideal, "output": output}
                )
            )
            fh.write("\n")
    pod = folder / "spicepod.yaml"
    pod.write_text(
        "version: v1\nkind: Spicepod\nname: bench\n"
        "datasets:\n  - {name: cases, from: 'file:cases.jsonl'}\n"
        f"evals:\n  - {{name: bench, dataset: cases, scorers: {json.dumps(SCORERS)}}}\n"
    )
    return pod


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pod = write_pod(folder, args.cases)
        config = folder / "evaldock.toml"
        config.write_text(
            toml_from_flags(
                {"spice.spicepod": str(pod), "spice.max_cases": max(args.cases, 100_000)}
            )
        )
        server = ServerProcess(folder / "data", config=config, extra_args=["--surfaces", "spice"])
        with server, httpx.Client(base_url=server.url, timeout=600) as client:
            for model in ("mock", "replay"):
                seconds = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    r = client.post("/v1/evals/bench", json={"model": model})
                    seconds.append(time.perf_counter() - start)
                    run = r.json()[0]
                    assert r.status_code == 200 and run["status"] == "Completed", r.text
                best, median = min(seconds), statistics.median(seconds)
                print(
                    f"{model:6s} {args.cases} cases x {len(SCORERS)} scorers: "
                    f"best {args.cases / best:,.0f} cases/s ({best:.2f} s), "
                    f"median {args.cases / median:,.0f} cases/s; metrics {run['metrics']}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
