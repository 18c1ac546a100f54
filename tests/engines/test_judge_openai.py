"""The OpenAI-compatible judge against a real loopback server speaking the protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.judge.base import UnknownModel
from evaldock.engines.judge.openai import OpenAIJudge
from tests.fakes.openai_server import FakeOpenAI

SHIRT = {"detail_desc": "Straight-cut, striped shirt in cotton"}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def judge_for(*servers: FakeOpenAI, **options: Any) -> OpenAIJudge:
    base = {"urls": [s.url for s in servers], "model": "fake-model", "backoff": 0.01}
    return OpenAIJudge({**base, **options})


def run(coro_factory) -> Any:
    async def main() -> Any:
        return await coro_factory()

    return asyncio.run(main())


def test_relevance_uses_structured_output(fake: FakeOpenAI) -> None:
    async def go():
        judge = judge_for(fake)
        try:
            return await judge.relevance("shirts with stripes", SHIRT), judge.usage
        finally:
            await judge.aclose()

    verdict, usage = run(go)
    assert (verdict.score, verdict.label, verdict.explanation) == (2, "GREAT", "fake judgement")
    body = fake.requests[0]
    assert body["model"] == "fake-model" and body["temperature"] == 0
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["score"]["enum"] == [0, 1, 2]
    assert "shirts with stripes" in body["messages"][0]["content"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 7)


@pytest.mark.parametrize("script", [["429"], ["500", "500"], ["slow:2"]])
def test_retries_transient_failures(fake: FakeOpenAI, script: list[str]) -> None:
    fake.script.extend(script)

    async def go():
        judge = judge_for(fake, timeout=0.5)
        try:
            return await judge.relevance("solid shirts", SHIRT), judge.usage.retries
        finally:
            await judge.aclose()

    verdict, retries = run(go)
    assert verdict.score == 1
    assert retries == len(script)


def test_client_errors_are_not_retried(fake: FakeOpenAI) -> None:
    fake.script.append("400")

    async def go():
        judge = judge_for(fake)
        try:
            await judge.relevance("q", {})
        finally:
            await judge.aclose()

    with pytest.raises(EngineError, match="HTTP 400"):
        run(go)
    assert len(fake.requests) == 1


def test_invalid_output_is_retried_then_reported(fake: FakeOpenAI) -> None:
    fake.script.extend(["malformed"])

    async def ok():
        judge = judge_for(fake)
        try:
            return await judge.relevance("shirts with stripes", SHIRT), judge.usage
        finally:
            await judge.aclose()

    verdict, usage = run(ok)
    assert verdict.score == 2 and usage.invalid_outputs == 1

    fake.script.extend(["out_of_range"] * 3)

    async def bad():
        judge = judge_for(fake, output_retries=2)
        try:
            await judge.relevance("other query", SHIRT)
        finally:
            await judge.aclose()

    with pytest.raises(EngineError, match="no valid answer after 3 tries"):
        run(bad)


def test_round_robin_and_bounded_concurrency() -> None:
    with FakeOpenAI(delay=0.05) as a, FakeOpenAI(delay=0.05) as b:

        async def go():
            judge = judge_for(a, b, concurrency=4)
            try:
                await asyncio.gather(*(judge.relevance(f"q{i}", {"t": i}) for i in range(24)))
            finally:
                await judge.aclose()

        run(go)
        assert len(a.requests) == len(b.requests) == 12
        assert a.max_in_flight + b.max_in_flight <= 4


def test_cache_answers_reruns_and_never_stores_errors(fake: FakeOpenAI, tmp_path: Path) -> None:
    cache = tmp_path / "judge-cache.sqlite3"

    async def judge_all(**options: Any):
        judge = judge_for(fake, cache_path=str(cache), **options)
        try:
            return await asyncio.gather(
                *(judge.relevance(q, SHIRT) for q in ("shirts with stripes", "solid shirts")),
                return_exceptions=True,
            ), judge.cache.hits
        finally:
            await judge.aclose()

    first, _ = run(judge_all)
    assert len(fake.requests) == 2
    second, hits = run(judge_all)
    assert second == first and hits == 2
    assert len(fake.requests) == 2  # no new model call
    # Different sampling parameters are a different request.
    run(lambda: judge_all(temperature=0.7))
    assert len(fake.requests) == 4
    # A failure is not cached: the next run asks again.
    fake.script.extend(["500"])

    async def failing():
        judge = judge_for(fake, cache_path=str(cache), max_retries=0)
        try:
            return await judge.relevance("winter boots", SHIRT)
        finally:
            await judge.aclose()

    with pytest.raises(EngineError):
        run(failing)
    before = len(fake.requests)
    assert run(failing).score == 1
    assert len(fake.requests) == before + 1


def test_cancelling_the_caller_cancels_the_request(fake: FakeOpenAI) -> None:
    fake.script.append("slow:10")

    async def go():
        judge = judge_for(fake)
        task = asyncio.create_task(judge.relevance("q", {}))
        while not fake.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if fake.disconnects:
                break
            await asyncio.sleep(0.01)
        await judge.aclose()

    run(go)
    assert fake.disconnects == 1


def test_start_up_check_names_the_problem(fake: FakeOpenAI) -> None:
    async def check(**options: Any) -> None:
        judge = judge_for(fake, **options)
        try:
            await judge.check()
        finally:
            await judge.aclose()

    run(check)
    with pytest.raises(EngineUnavailable, match=r"does not serve model 'other'.*fake-model"):
        run(lambda: check(model="other"))
    with pytest.raises(EngineUnavailable, match="did not answer GET /models"):
        run(lambda: check(urls=["http://127.0.0.1:9/v1"]))
    with pytest.raises(EngineUnavailable, match="EVALDOCK_JUDGE_URLS"):
        OpenAIJudge({"urls": []})


def test_generation_score_and_json_score(fake: FakeOpenAI) -> None:
    async def go():
        judge = judge_for(fake, models={"gpt-4o-mini": "fake-model"})
        try:
            gen = await judge.generate(
                [{"role": "user", "content": "Classify: hi"}], model="gpt-4o-mini"
            )
            score = await judge.score(
                variables={"input": "q", "output": "a", "reference": "b"},
                max_score=5,
                dimensions=[{"dimension": "accuracy"}, {"dimension": "fluency"}],
            )
            value = await judge.json_score(
                [{"role": "user", "content": ""}], {"input": "i", "actual": "a", "ideal": "b"}
            )
            with pytest.raises(UnknownModel):
                await judge.generate([{"role": "user", "content": "x"}], model="gpt-5")
            return gen, score, value
        finally:
            await judge.aclose()

    gen, score, value = run(go)
    assert gen.text == "echo: Classify: hi" and gen.model == "fake-model"
    assert (gen.prompt_tokens, gen.completion_tokens) == (11, 7)
    assert score.value == 5 and score.dimensions == {"accuracy": 5, "fluency": 5}
    assert value == 0.75
    assert fake.requests[2]["metadata"] == {"input": "i", "actual": "a", "ideal": "b"}
