"""Judgements per second through the judge engine vs a bare httpx client.

The OpenAI-compatible fake server (tests/fakes/openai_server.py) runs in its own process
with zero think time; the same number of requests at the same concurrency go out once as
raw ``httpx.AsyncClient`` posts of the rendered request and once through
``OpenAIJudge.relevance`` (prompt rendering, structured output, parsing; cache off).

    python scripts/bench_judge.py [--n 2000] [--concurrency 64] [--similarity]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaldock.engines.judge import prompts  # noqa: E402
from evaldock.engines.judge.openai import OpenAIJudge  # noqa: E402
from tests.serverproc import free_port  # noqa: E402

OBJ = {"title": "Striped shirt", "detail_desc": "Straight-cut, striped shirt in cotton twill"}


async def raw_rate(url: str, n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(i: int) -> None:
            prompt = prompts.render(prompts.RELEVANCE, query=f"query {i}", object=json.dumps(OBJ))
            body = {
                "model": "fake-model",
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "judgement",
                        "schema": prompts.RELEVANCE_SCHEMA,
                        "strict": True,
                    },
                },
            }
            async with gate:
                r = await client.post(f"{url}/chat/completions", json=body)
                json.loads(r.json()["choices"][0]["message"]["content"])

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - start)


async def engine_rate(url: str, n: int, concurrency: int) -> float:
    judge = OpenAIJudge({"urls": [url], "model": "fake-model", "concurrency": concurrency})
    try:
        start = time.perf_counter()
        await asyncio.gather(*(judge.relevance(f"query {i}", OBJ) for i in range(n)))
        return n / (time.perf_counter() - start)
    finally:
        await judge.aclose()


async def similarity_rate(n: int) -> float:
    from evaldock.engines.judge.similarity import SimilarityJudge

    judge = SimilarityJudge({})
    await judge.check()
    try:
        await judge.relevance("warm up", OBJ)
        start = time.perf_counter()
        await asyncio.gather(*(judge.relevance(f"striped shirt {i}", OBJ) for i in range(n)))
        return n / (time.perf_counter() - start)
    finally:
        await judge.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
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
        asyncio.run(raw_rate(url, 200, args.concurrency))  # warm both sides
        raw = asyncio.run(raw_rate(url, args.n, args.concurrency))
        eng = asyncio.run(engine_rate(url, args.n, args.concurrency))
        raw2 = asyncio.run(raw_rate(url, args.n, args.concurrency))
        raw = max(raw, raw2)
    finally:
        server.terminate()
        server.wait()
    print(f"requests: {args.n}, concurrency: {args.concurrency}")
    print(f"bare httpx client : {raw:8.1f} req/s")
    print(f"OpenAIJudge       : {eng:8.1f} judgements/s")
    print(f"ratio             : {eng / raw:.2f}x of the bare client")
    if args.similarity:
        rate = asyncio.run(similarity_rate(min(args.n, 1000)))
        print(f"SimilarityJudge   : {rate:8.1f} judgements/s on CPU")


if __name__ == "__main__":
    main()
