"""Job work on local worker processes vs on Ray: the overhead of the Ray backend, as a ratio.

The same Marqtune evaluation (a CSV of ``--marqtune-rows`` judgement rows, Marqo's
walk-through hyperparameters) and the same Oxen embeddings evaluation (a parquet of
``--oxen-rows`` texts, committed into the branch) run in-process (the app under
Starlette's TestClient, mock engines by default) once with ``[compute] backend =
"local"`` and once with ``"ray"``. Each is run ``--repeat`` times after one warm-up run
(which loads the engine into a worker or an actor); the median of the evaluation alone
(submit -> finished) is reported, with ray/local as the overhead. The results of both
backends are checked equal.

``python scripts/bench_ray.py`` starts a Ray of this machine (all its cores) for the
run; ``--address auto`` or ``--address ray://head:10001`` uses a real cluster (then
``--data`` must be a folder every node mounts at the same path, and evaldock must be
installed on every node). The load average is printed: on a shared machine times move
with it.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from evaldock.server.app import create_app  # noqa: E402
from evaldock.server.load import load_settings  # noqa: E402
from scripts.marqtune_walk import evaluate, poll, upload, write_csv  # noqa: E402

OXEN_AUTH = {"Authorization": "Bearer test"}
REPO = "/api/repos/bench/rows"
# 20 ms between polls: a 1,000-row evaluation takes ~0.2 s here, so a coarser poll
# would be most of what is timed.
POLL = 0.02


def marqtune(c: TestClient, csv: Path) -> tuple[float, Any]:
    """Seconds of one evaluation (POST -> Finished) on a fresh dataset; its metrics."""
    dataset_id = upload(c, csv, "bench", every=POLL)
    t0 = time.perf_counter()
    done = evaluate(c, dataset_id, every=POLL)
    return time.perf_counter() - t0, done["evaluationMetrics"]


def oxen_repo(c: TestClient, rows: int) -> None:
    texts = [f"row {i} is {'good' if i % 3 else 'bad'}, item {i % 97}" for i in range(rows)]
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buf)
    c.post("/api/repos", json={"namespace": "bench", "name": "rows"}, headers=OXEN_AUTH)
    c.put(
        f"{REPO}/file/main/",
        files=[("files[]", ("data.parquet", buf.getvalue()))],
        data={"name": "bench", "email": "bench@x", "message": "data"},
        headers=OXEN_AUTH,
    ).raise_for_status()


def oxen(c: TestClient) -> tuple[float, Any]:
    """Seconds of one embeddings evaluation (POST -> completed, committed); the results."""
    body = {
        "name": "emb",
        "prompt": "{text}",
        "type": "embeddings",
        "model": "text-embedding-3-small",
        "target_column": "embedding",
        "auto_commit": False,
    }
    t0 = time.perf_counter()
    r = c.post(f"{REPO}/evaluations/main/data.parquet", json=body, headers=OXEN_AUTH)
    r.raise_for_status()
    url = f"{REPO}/evaluations/{r.json()['evaluation']['id']}"
    done = poll(
        lambda: c.get(url, headers=OXEN_AUTH).json()["evaluation"],
        ("completed", "failed", "cancelled"),
        every=POLL,
    )
    took = time.perf_counter() - t0
    assert done["status"] == "completed", done
    first = c.get(f"{url}/results", headers=OXEN_AUTH).json()
    return took, first


def bench(backend: str, args: argparse.Namespace, data: Path, csv: Path) -> dict[str, Any]:
    flags = {
        "server.data": str(data / backend),
        "server.mode": args.mode,
        "server.surfaces": "marqtune,oxen",
        "compute.backend": backend,
    }
    out: dict[str, Any] = {}
    with TestClient(create_app(load_settings(None, flags, environ={}))) as c:
        oxen_repo(c, args.oxen_rows)
        for name, once in (("marqtune", lambda: marqtune(c, csv)), ("oxen", lambda: oxen(c))):
            once()  # warm-up: the engine loads in a worker / an actor
            runs = [once() for _ in range(args.repeat)]
            out[name] = (statistics.median(t for t, _ in runs), runs[0][1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marqtune-rows", type=int, default=10_000)
    parser.add_argument("--oxen-rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", default="mock", choices=("mock", "real"))
    parser.add_argument("--address", default="", help="a Ray cluster (auto, ray://…)")
    parser.add_argument("--data", type=Path, default=None, help="data folder (shared)")
    args = parser.parse_args()

    import ray

    temp = Path(tempfile.mkdtemp(prefix="bench-ray-", dir="/tmp"))
    data = args.data or temp / "data"
    t0 = time.perf_counter()
    if args.address:
        ray.init(address=args.address, namespace="evaldock-bench", log_to_driver=False)
    else:
        ray.init(
            include_dashboard=False,
            _temp_dir=str(temp / "ray"),
            namespace="evaldock-bench",
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}},
        )
    print(f"Ray ready in {time.perf_counter() - t0:.1f} s: {ray.cluster_resources()}")
    try:
        csv = temp / "marqtune.csv"
        write_csv(csv, args.marqtune_rows)
        local = bench("local", args, data, csv)
        on_ray = bench("ray", args, data, csv)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    print(f"{'run':<28} {'local s':>8} {'ray s':>8} {'ray/local':>9}  same results")
    for name, rows in (("marqtune", args.marqtune_rows), ("oxen", args.oxen_rows)):
        (lt, lr), (rt, rr) = local[name], on_ray[name]
        label = f"{name} ({rows:,} rows)"
        print(f"{label:<28} {lt:8.2f} {rt:8.2f} {rt / lt:9.2f}  {lr == rr}")
    print(f"load average {os.getloadavg()[0]:.2f}, mode {args.mode}, median of {args.repeat}")


if __name__ == "__main__":
    main()
