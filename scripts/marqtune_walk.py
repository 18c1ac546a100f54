"""The Marqtune walk the benchmarks share (bench_marqtune_scale.py, bench_ray.py): a CSV
of judgement rows, uploaded into a dataset and validated, then one evaluation with
Marqo's walk-through hyperparameters, polled to its end.

The client is an ``httpx.Client`` on a served port or Starlette's ``TestClient`` (an
``httpx.Client`` too) on the app in-process. Import it as ``scripts.marqtune_walk``
with the repository root on ``sys.path``, as the scripts put it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.marqtune.helpers import AUTH, HYPER, dataset_body

MODEL = "Marqo/ViT-B-32.laion2b_s34b_b79k"
WORDS = [
    *("red", "green", "blue", "black", "white", "shirt", "jeans", "hat", "boots", "dress"),
    *("coat", "scarf", "linen", "wool", "cotton", "silk", "summer", "winter", "classic", "slim"),
]
# 10 h: 1,000,000 rows took 1,115 s end to end on the loaded 2-core machine
# (docs/marqtune.md); --big's 10,000,000 take hours.
TIMEOUT = 36_000.0


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    """``rows`` judgements: query ``i // 10`` (two words and its number), a document per
    row (three words, an item number, an image named after them), a score 0..9."""
    rnd = random.Random(seed)
    with path.open("w") as f:
        f.write("query,title,image,score\n")
        for i in range(rows):
            q = i // 10
            qa, qb = WORDS[q % 20], WORDS[(q * 7 + 3) % 20]
            t = " ".join(rnd.sample(WORDS, 3))
            f.write(
                f"{qa} {qb} {q},{t} item{i % 5000},/img/{t.replace(' ', '_')}_{i}.png,"
                f"{rnd.randint(0, 9)}\n"
            )


def chunks(path: Path) -> Iterator[bytes]:
    """The file in 1 MiB blocks: a 10,000,000-row CSV (~800 MB) is never read whole."""
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            yield block


def poll(
    get: Callable[[], dict[str, Any]],
    done: tuple[str, ...],
    every: float,
    timeout: float = TIMEOUT,
) -> dict[str, Any]:
    """``get()`` every ``every`` seconds until its ``status`` is one of ``done``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = get()
        if body["status"] in done:
            return body
        time.sleep(every)
    raise SystemExit(f"not {' or '.join(done)} after {timeout:.0f} s: raise the timeout")


def upload(c: httpx.Client, csv: Path, name: str, every: float) -> str:
    """A new evaluation dataset ``name`` holding ``csv``, validated; its id."""
    ds = c.post("/datasets", json=dataset_body(datasetName=name), headers=AUTH).json()
    c.put(ds["uploadUrl"], content=chunks(csv)).raise_for_status()
    url = f"/datasets/{ds['datasetId']}"
    ready = poll(lambda: c.get(url, headers=AUTH).json(), ("Ready", "Failed"), every)
    if ready["status"] != "Ready":
        raise SystemExit(f"dataset {name} failed: {ready}")
    return str(ds["datasetId"])


def evaluate(c: httpx.Client, dataset_id: str, every: float) -> dict[str, Any]:
    """One evaluation of ``dataset_id`` (POST /evaluation -> Finished); its last body."""
    body = {"datasetId": dataset_id, "model": MODEL, "hyperparameters": HYPER}
    ev = c.post("/evaluation", json=body, headers=AUTH).json()
    url = f"/evaluation/{ev['evaluationId']}"
    finished = poll(lambda: c.get(url, headers=AUTH).json(), ("Finished", "Failed"), every)
    if finished["status"] != "Finished":
        raise SystemExit(f"evaluation failed: {finished}")
    return finished
