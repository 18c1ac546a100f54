"""Opt-in: the OpenAI judge against a real vLLM server.

Set EVALDOCK_VLLM_URL (e.g. http://127.0.0.1:8801/v1) and optionally EVALDOCK_VLLM_MODEL.
The small model used here proves the pipeline (guided JSON, parsing, caching, the whole
Objective flow); its judgements are not a claim of quality.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from evaldock.engines.judge.openai import OpenAIJudge
from tests.objective.helpers import AUTH, DEMO, poll
from tests.serverproc import ServerProcess

URL = os.environ.get("EVALDOCK_VLLM_URL")
pytestmark = pytest.mark.skipif(not URL, reason="set EVALDOCK_VLLM_URL to a vLLM server")


def test_engine_against_vllm(tmp_path: Path) -> None:
    async def go():
        judge = OpenAIJudge(
            {
                "urls": [URL],
                "model": os.environ.get("EVALDOCK_VLLM_MODEL", ""),
                "cache_path": str(tmp_path / "cache.sqlite3"),
                "timeout": 120,
            }
        )
        try:
            await judge.check()
            verdict = await judge.relevance("shirts with stripes", {"title": "Striped shirt"})
            gen = await judge.generate([{"role": "user", "content": "Say hello."}])
            score = await judge.score(
                variables={"input": "2+2?", "output": "4", "reference": "4"}, max_score=5
            )
            again = await judge.relevance("shirts with stripes", {"title": "Striped shirt"})
            return verdict, gen, score, again, judge.cache.hits
        finally:
            await judge.aclose()

    verdict, gen, score, again, hits = asyncio.run(go())
    assert verdict.score in (0, 1, 2) and verdict.label in ("BAD", "OK", "GREAT")
    assert gen.text and gen.completion_tokens > 0
    assert score.value is None or 1 <= score.value <= 5
    assert again == verdict and hits >= 1


def test_objective_flow_against_vllm(tmp_path: Path) -> None:
    env = {
        "EVALDOCK_JUDGE_URLS": URL or "",
        "EVALDOCK_JUDGE_MODEL": os.environ.get("EVALDOCK_VLLM_MODEL", ""),
    }
    with ServerProcess(tmp_path / "data", mode="real", env=env) as server:
        created = httpx.post(f"{server.url}/v1/evaluations", json=DEMO, headers=AUTH).json()
        final = poll(httpx.get, created["results"], AUTH, timeout=600)
    assert final["status"] in ("completed", "error")
    assert final["metadata"]["judge"].startswith("openai:")
    assert any(j["judgement"] for j in final["judgements"])
