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
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from evaldock.server.app import create_app  # noqa: E402
from evaldock.server.load import load_settings  # noqa: E402

MARQTUNE_AUTH = {"x-api-key": "test"}
WORDS = [
    *("red", "green", "blue", "black", "white", "shirt", "jeans", "hat", "boots", "dress"),
    *("coat", "scarf", "linen", "wool", "cotton", "silk", "summer", "winter", "classic", "slim"),
]
SCHEMA = {"query": "text", "title": "text", "image": "image_pointer", "score": "score"}
HYPER = {
    "leftKeys": ["query"],
    "leftWeights": [1],
    "rightKeys": ["image", "title"],
    "rightWeights": [0.9, 0.1],
    "weightKey": "score",
}
OXEN_AUTH = {"Authorization": "Bearer test"}
REPO = "/api/repos/bench/rows"


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    """``rows`` judgements, one query per 10 rows (as scripts/bench_marqtune_scale.py)."""
    rnd = random.Random(seed)
    with path.open("w") as f:
        f.write("query,title,image,score\n")
        for i in range(rows):
            q = i // 10
            t = " ".join(rnd.sample(WORDS, 3))
            f.write(
                f"{WORDS[q % 20]} {WORDS[(q * 7 + 3) % 20]} {q},{t} item{i % 5000},"
                f"/img/{t.replace(' ', '_')}_{i}.png,{rnd.randint(0, 9)}\n"
            )


def wait(get: Callable[[], dict[str, Any]], done: tuple[str, ...]) -> dict[str, Any]:
    while True:
        body = get()
        if body["status"] in done:
            return body
        time.sleep(0.02)


def marqtune(c: TestClient, csv: Path) -> tuple[float, Any]:
    """Seconds of one evaluation (POST -> Finished) on a fresh dataset; its metrics."""
    body = {
        "datasetName": "bench",
        "datasetType": "evaluation",
        "dataSchema": SCHEMA,
        "queryColumns": ["query"],
        "resultColumns": ["title", "image"],
    }
    ds = c.post("/datasets", json=body, headers=MARQTUNE_AUTH).json()
    c.put(ds["uploadUrl"], content=csv.read_bytes()).raise_for_status()
    url = f"/datasets/{ds['datasetId']}"
    ready = wait(lambda: c.get(url, headers=MARQTUNE_AUTH).json(), ("Ready", "Failed"))
    assert ready["status"] == "Ready", ready
    t0 = time.perf_counter()
    ev = c.post(
        "/evaluation",
        json={
            "datasetId": ds["datasetId"],
            "model": "Marqo/ViT-B-32.laion2b_s34b_b79k",
            "hyperparameters": HYPER,
        },
        headers=MARQTUNE_AUTH,
    ).json()
    url = f"/evaluation/{ev['evaluationId']}"
    done = wait(lambda: c.get(url, headers=MARQTUNE_AUTH).json(), ("Finished", "Failed"))
    took = time.perf_counter() - t0
    assert done["status"] == "Finished", done
    return took, done["evaluationMetrics"]


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
    done = wait(
        lambda: c.get(url, headers=OXEN_AUTH).json()["evaluation"],
        ("completed", "failed", "cancelled"),
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
