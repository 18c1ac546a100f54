"""Judgements stay on the scale their prompt asks for: one test per prompt with a scale
(relevance.v1: 0/1/2; score.v1 + score_answer.v1: Qianfan's min..max; json_score.v1:
Spice's LLM-judge, 0.0-1.0), against a loopback server answering off the scale."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evaldock.engines.errors import EngineError
from evaldock.engines.judge.mock import MockJudge
from evaldock.engines.judge.openai import OpenAIJudge
from evaldock.engines.scorers.model import judge_scores
from tests.fakes.judging import SHIRT, run, with_judge
from tests.fakes.openai_server import FakeOpenAI

METADATA = {"input": "2+2?", "actual": "4", "ideal": "four"}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def schema_of(body: dict) -> dict:
    return body["response_format"]["json_schema"]["schema"]


def test_json_score_schema_is_bounded_and_an_answer_off_it_is_asked_again(
    fake: FakeOpenAI,
) -> None:
    # SmolLM2-135M answered 8.0 and 5.0 to "a number from 0.0 to 1.0" (grader/mean 2.17).
    fake.script.append("out_of_range:8.0")

    async def use(judge: OpenAIJudge):
        return await judge.json_score([{"role": "user", "content": ""}], METADATA), judge.usage

    value, usage = with_judge(fake, use)
    assert value == 0.75 and usage.invalid_outputs == 1
    assert schema_of(fake.requests[0])["properties"]["score"] == {
        "type": "number",
        "minimum": 0.0,
        "maximum": 1.0,
    }


def test_json_score_off_its_scale_on_every_try_fails_the_case(fake: FakeOpenAI) -> None:
    fake.script.extend(["out_of_range:8.0", "out_of_range:5", "out_of_range:-0.5"])

    async def use(judge: OpenAIJudge):
        return await judge.json_score([{"role": "user", "content": ""}], METADATA)

    with pytest.raises(EngineError, match=r"score -0.5 is outside 0\.\.1"):
        with_judge(fake, use, output_retries=2)


def test_spice_judge_scorer_never_averages_a_score_off_the_scale(fake: FakeOpenAI) -> None:
    # Through the scorer Spice's runs call: the case fails, naming itself, rather than
    # giving grader/mean a value the prompt never allowed.
    fake.script.extend(["out_of_range:8.0"] * 3)

    async def use(judge: OpenAIJudge):
        return await judge_scores(judge, "fake-model", ["q"], ["4"], ["four"])

    with pytest.raises(EngineError, match=r"judge scorer 'fake-model', case 0: .*outside 0\.\.1"):
        with_judge(fake, use, output_retries=2)

    async def fine(judge: OpenAIJudge):
        return await judge_scores(judge, "fake-model", ["q", "r"], ["4", "5"], ["four", "5"])

    assert with_judge(fake, fine) == [0.75, 0.75]


def test_a_callers_own_prompt_keeps_its_own_scale(fake: FakeOpenAI) -> None:
    # Spice's runtime reads any number from a model's own prompt: so do we.
    fake.script.append("out_of_range:8.0")

    async def use(judge: OpenAIJudge):
        messages = [{"role": "system", "content": "Rate {{ actual }} from 1 to 10."}]
        return await judge.json_score(messages, METADATA)

    assert with_judge(fake, use) == 8.0
    assert schema_of(fake.requests[0])["properties"]["score"] == {"type": "number"}


def test_relevance_off_its_scale_is_asked_again_then_fails(fake: FakeOpenAI) -> None:
    fake.script.extend(["out_of_range:3", "out_of_range:-1", "out_of_range:7", "out_of_range:3"])

    async def use(judge: OpenAIJudge):
        first = await judge.relevance("shirts with stripes", SHIRT)  # 3, -1, then 7: fails
        return first

    with pytest.raises(EngineError, match=r"score 7 is outside 0\.\.2"):
        with_judge(fake, use, output_retries=2)

    async def again(judge: OpenAIJudge):
        return await judge.relevance("shirts with stripes", SHIRT), judge.usage.invalid_outputs

    verdict, invalid = with_judge(fake, again)  # 3, then the fake's own 2
    assert verdict.score == 2 and invalid == 1
    assert schema_of(fake.requests[-1])["properties"]["score"]["enum"] == [0, 1, 2]


@pytest.mark.parametrize(("low", "high", "off"), [(1, 5, 0), (1, 5, 6), (0, 10, 11)])
def test_qianfan_referee_off_its_scale_is_unscorable(
    fake: FakeOpenAI, low: int, high: int, off: int
) -> None:
    fake.script.extend([f"out_of_range:{off}"] * 3)

    async def use(judge: OpenAIJudge):
        return await judge.score(
            prompt_template="Rate {output} against {reference} from {min_score} to {max_score}.",
            variables={"output": "a", "reference": "b"},
            min_score=low,
            max_score=high,
            dimensions=[{"dimension": "accuracy"}],
        )

    score = with_judge(fake, use, output_retries=2)
    assert score.value is None and score.bucket == -1  # Qianfan's -1 bucket
    assert f"outside {low}..{high}" in score.explanation
    scale = schema_of(fake.requests[0])["properties"]
    assert scale["score"] == {"type": "integer", "minimum": low, "maximum": high}
    assert scale["dimensions"]["properties"]["accuracy"]["maximum"] == high


def test_mock_json_score_stays_on_its_scale() -> None:
    judge = MockJudge({})
    pairs = [("4", "four"), ("", ""), ("a b c d", "a"), ("x", "a b"), ("", "a")]

    async def go() -> list[float]:
        return [await judge.json_score([], {"actual": a, "ideal": i}) for a, i in pairs]

    assert all(0.0 <= v <= 1.0 for v in run(go))
