"""Judgements per second through the judge engine vs a bare httpx client.

The OpenAI-compatible fake server (tests/fakes/openai_server.py) runs in its own process
with zero think time. The same number of requests at the same concurrency go out as raw
``httpx.AsyncClient`` posts of the rendered request, and through
``OpenAIJudge.relevance`` (prompt rendering, structured output, parsing, retries
machinery; cache off unless ``--cache``). Raw runs before and after the engine, and the
better one counts, so warm-up and drift favour the baseline. CPU seconds of the client
and of the server process are printed per phase: on a small machine one of them is the
bound.

    python scripts/bench_judge.py [--n 2000] [--concurrency 64] [--cache] [--similarity]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaldock.engines.judge import templates  # noqa: E402
from evaldock.engines.judge.openai import OpenAIJudge  # noqa: E402
from tests.serverproc import free_port  # noqa: E402

OBJ = {"title": "Striped shirt", "detail_desc": "Straight-cut, striped shirt in cotton twill"}


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phase:
    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid

    def run(self, label: str, n: int, work: Callable[[], Awaitable[None]]) -> float:
        c0, s0, t0 = cpu_self(), cpu_of(self.pid), time.perf_counter()
        asyncio.run(work())
        wall = time.perf_counter() - t0
        client, server = cpu_self() - c0, cpu_of(self.pid) - s0
        rate = n / wall
        print(
            f"{label:<22}: {rate:8.1f} /s   wall {wall:5.2f}s   "
            f"cpu client {client:5.2f}s  server {server:5.2f}s"
        )
        return rate


def raw_body(i: int) -> dict[str, Any]:
    prompt = templates.render(
        templates.RELEVANCE,
        query=f"query {i}",
        object=json.dumps(OBJ, ensure_ascii=False, indent=1),
    )
    return {
        "model": "fake-model",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.0,
        "max_tokens": 512,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "judgement",
                "schema": templates.relevance_schema(),
                "strict": True,
            },
        },
    }


def raw(url: str, n: int, concurrency: int, pool: int = 0) -> Callable[[], Awaitable[None]]:
    """Bare httpx: one client holding every connection, or (``pool`` > 0) the same
    sharding into small clients that the engine does, to isolate the engine's overhead."""

    async def work() -> None:
        size = pool or concurrency
        count = -(-concurrency // size)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        clients = [httpx.AsyncClient(limits=limits, timeout=60) for _ in range(count)]
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            body = raw_body(i)  # the same rendering work the engine does
            async with gate:
                r = await clients[i % count].post(f"{url}/chat/completions", json=body)
            json.loads(r.json()["choices"][0]["message"]["content"])

        try:
            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            for client in clients:
                await client.aclose()

    return work


def engine(url: str, n: int, concurrency: int, cache: str | None) -> Callable[[], Awaitable[None]]:
    async def work() -> None:
        options = {"urls": [url], "model": "fake-model", "concurrency": concurrency}
        judge = OpenAIJudge({**options, "cache_path": cache})
        try:
            await asyncio.gather(*(judge.relevance(f"query {i}", OBJ) for i in range(n)))
        finally:
            await judge.aclose()

    return work


def similarity(n: int) -> None:
    from evaldock.engines.judge.similarity import SimilarityJudge

    objects = [
        {"title": f"Striped shirt {i % 50}", "detail_desc": f"Cotton twill shirt, style {i}"}
        for i in range(n)
    ]
    queries = [f"shirts with stripes {i % 20}" for i in range(n)]  # queries repeat, as in use

    async def go() -> tuple[float, float]:
        judge = SimilarityJudge({})
        await judge.check()
        try:
            await judge.relevance("warm up", OBJ)
            start = time.perf_counter()
            await asyncio.gather(
                *(judge.relevance(q, o) for q, o in zip(queries, objects, strict=True))
            )
            batched = n / (time.perf_counter() - start)
            start = time.perf_counter()
            for i in range(100):  # one caller, no company to batch; unseen objects
                obj = {"title": f"Plain shirt {i % 50}", "detail_desc": f"Plain cotton, cut {i}"}
                await judge.relevance(f"plain shirts {i % 20}", obj)
            return batched, 100 / (time.perf_counter() - start)
        finally:
            await judge.aclose()

    batched, alone = asyncio.run(go())
    print(f"SimilarityJudge       : {batched:8.1f} judgements/s on CPU ({n} concurrent calls)")
    print(f"SimilarityJudge alone : {alone:8.1f} judgements/s (one call at a time)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", action="store_true", help="also run with the SQLite cache")
    parser.add_argument("--similarity", action="store_true")
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(
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
        phase = Phase(server.pid)
        n, c = args.n, args.concurrency
        print(f"requests: {n}, concurrency: {c}, cores: {os.cpu_count()}, rounds: {args.rounds}")
        asyncio.run(raw(url, 200, c)())  # warm both sides
        bare, pooled, eng = [], [], []
        for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits all
            bare.append(phase.run("bare httpx client", n, raw(url, n, c)))
            pooled.append(phase.run("bare httpx, 8-conn pools", n, raw(url, n, c, 8)))
            eng.append(phase.run("OpenAIJudge", n, engine(url, n, c, None)))
        base, best, mine = (statistics.median(x) for x in (bare, pooled, eng))
        print(f"median: bare {base:.1f}/s, pooled {best:.1f}/s, OpenAIJudge {mine:.1f}/s")
        print(f"ratio                 : {mine / base:.2f}x of the bare client")
        print(f"                        {mine / best:.2f}x of bare httpx pooled like the engine")
        if args.cache:
            with tempfile.TemporaryDirectory() as tmp:
                path = str(Path(tmp) / "judge-cache.sqlite3")
                cold = phase.run("OpenAIJudge cache cold", n, engine(url, n, c, path))
                warm = phase.run("OpenAIJudge cache warm", n, engine(url, n, c, path))
            print(f"cache cold/warm       : {cold / base:.2f}x / {warm / base:.2f}x of bare")
    finally:
        server.terminate()
        server.wait()
    if args.similarity:
        similarity(min(args.n, 2000))


if __name__ == "__main__":
    main()
