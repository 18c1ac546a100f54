"""The judgement cache: a re-run is identical and free; errors are never stored."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaldock.engines.errors import EngineError
from evaldock.engines.judge import templates
from evaldock.engines.judge.cache import JudgeCache, cache_key
from evaldock.engines.judge.openai import OpenAIJudge
from evaldock.engines.signature import evaldock_version
from tests.fakes.judging import SHIRT, run, with_judge
from tests.fakes.openai_server import FakeOpenAI

QUERIES = ("shirts with stripes", "solid shirts", "winter boots")


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def everything(fake: FakeOpenAI, cache: Path, **options: Any) -> tuple[Any, Any]:
    """One of each judge call; returns (answers, usage)."""

    async def use(judge: OpenAIJudge):
        verdicts = await asyncio.gather(*(judge.relevance(q, SHIRT) for q in QUERIES))
        gen = await judge.generate([{"role": "user", "content": "hello"}], params={"n": 2})
        score = await judge.score(
            variables={"output": "a", "reference": "b"},
            max_score=5,
            dimensions=[{"dimension": "accuracy"}],
        )
        value = await judge.json_score([], {"actual": "a", "ideal": "b"})
        return (verdicts, gen, score, value), judge.usage

    return with_judge(fake, use, cache_path=str(cache), **options)


def test_rerun_is_identical_and_makes_no_request(fake: FakeOpenAI, tmp_path: Path) -> None:
    cache = tmp_path / "judge-cache.sqlite3"
    first, usage1 = everything(fake, cache)
    asked = fake.count
    assert asked == 6 and usage1.cache_hits == 0
    second, usage2 = everything(fake, cache)
    assert second == first
    assert fake.count == asked  # not one new model call
    assert usage2.cache_hits == 6 and usage2.requests == 0
    assert usage2.prompt_tokens == 0  # nothing was spent this time...
    assert second[1].prompt_tokens == 11  # ...but the answer still reports what it cost
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        signatures = {r[0] for r in db.execute("SELECT signature FROM judgements")}
    assert signatures == {
        "judge:openai|model:fake-model|prompt:v1|temp:0|max_tokens:512|structured:json_schema"
        f"|evaldock:{evaldock_version()}"
    }


def test_sampling_parameters_are_part_of_the_key(fake: FakeOpenAI, tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite3"
    everything(fake, cache)
    asked = fake.count
    everything(fake, cache, temperature=0.7)
    assert fake.count == 2 * asked
    # The output-schema field changes every structured request, not free generation.
    everything(fake, cache, structured="guided_json")
    assert fake.count == 3 * asked - 1


def test_errors_are_never_cached(fake: FakeOpenAI, tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite3"

    async def one(judge: OpenAIJudge):
        return await judge.relevance("winter boots", SHIRT)

    fake.script.append("500")
    with pytest.raises(EngineError):
        with_judge(fake, one, cache_path=str(cache), max_retries=0)
    fake.script.extend(["out_of_range"] * 2)
    with pytest.raises(EngineError, match="no valid answer"):
        with_judge(fake, one, cache_path=str(cache), output_retries=1)
    before = fake.count
    assert with_judge(fake, one, cache_path=str(cache)).score == 1
    assert fake.count == before + 1
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0] == 1


def test_an_answer_that_needed_a_retry_is_cached_for_the_first_request(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    cache = tmp_path / "c.sqlite3"

    async def one(judge: OpenAIJudge):
        return await judge.relevance("shirts with stripes", SHIRT)

    fake.script.append("malformed")
    first = with_judge(fake, one, cache_path=str(cache))
    asked = fake.count
    assert asked == 2
    assert with_judge(fake, one, cache_path=str(cache)) == first
    assert fake.count == asked


def test_key_covers_the_whole_request() -> None:
    request = {"backend": "openai", "kind": templates.RELEVANCE, "request": {"model": "m", "x": 1}}
    assert cache_key(request) == cache_key(dict(reversed(request.items())))  # canonical
    for change in ({"backend": "other"}, {"kind": "relevance.v2"}, {"request": {"model": "n"}}):
        assert cache_key({**request, **change}) != cache_key(request)


def test_cache_off_without_a_path() -> None:
    async def go():
        cache = JudgeCache(None)
        await cache.put("k", {"v": 1}, "sig")
        return await cache.get("k")

    assert run(go) is None
