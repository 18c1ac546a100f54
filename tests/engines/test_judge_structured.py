"""``Judge.structured``: a JSON object under the caller's schema (the mock derives a valid
one from the request; the OpenAI-compatible judge asks with ``response_format``
``json_schema``, validates, re-asks) and ``finish_reason`` on generations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from evaldock.engines.errors import EngineError
from evaldock.engines.judge.mock import MockJudge, repeated_share, schema_answer
from evaldock.engines.judge.openai import OpenAIJudge
from tests.fakes.judging import run, with_judge
from tests.fakes.openai_server import FakeOpenAI

RESULT = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "description": {"type": "string"},
                    "conclusion": {"type": "string"},
                },
                "required": ["description", "conclusion"],
                "additionalProperties": False,
            },
        },
        "result": {"type": "number", "minimum": -2, "maximum": 8},
    },
    "required": ["steps", "result"],
    "additionalProperties": False,
}
LABEL = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["right", "wrong", "unsure"]}},
    "required": ["label"],
    "additionalProperties": False,
}
ASK = [
    {"role": "system", "content": "Grade the answer."},
    {"role": "user", "content": "Question: capital of France? Reference: Paris. Answer: Paris"},
]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def test_the_mock_answers_validly_and_deterministically() -> None:
    judge = MockJudge({})
    for schema in (RESULT, LABEL):
        first = run(lambda s=schema: judge.structured(ASK, s, model="gpt-4o-mini"))
        again = run(lambda s=schema: judge.structured(ASK, s, model="gpt-4o-mini"))
        jsonschema.validate(first.value, schema)
        assert first == again and first.model == "gpt-4o-mini"
        assert first.finish_reason == "stop" and first.prompt_tokens > 0
    got = run(lambda: judge.structured(ASK, RESULT))
    # The number is the share of repeated terms placed in the bounds: answer and paris
    # twice of 7 distinct terms (grade, answer, question, capital, france, reference, paris;
    # "the" and "of" are stop words).
    share = repeated_share(ASK)
    assert share == pytest.approx(2 / 7)
    assert got.value["result"] == pytest.approx(-2 + share * 10)
    assert len(got.value["steps"]) == 1


def test_the_mock_picks_the_label_the_messages_name_most() -> None:
    judge = MockJudge({})
    said = [{"role": "user", "content": "Is it wrong? Wrong, surely: wrong."}]
    assert run(lambda: judge.structured(said, LABEL)).value == {"label": "wrong"}
    # None named: a tie broken by a hash of the request, the same every time.
    quiet = [{"role": "user", "content": "Pick one."}]
    picks = {run(lambda: judge.structured(quiet, LABEL)).value["label"] for _ in range(3)}
    assert len(picks) == 1 and picks <= {"right", "wrong", "unsure"}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": 3, "maximum": 5},
        {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 2},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"type": "string", "minLength": 20, "maxLength": 25},
        {"type": "array", "items": {"type": "boolean"}, "minItems": 3},
        {"type": ["null", "integer"]},
        {"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "number"}]},
        {"const": {"x": 1}},
        {"type": "object", "properties": {"a": {"type": "object", "properties": {}}}},
    ],
)
def test_every_schema_shape_gets_a_valid_value(schema: dict[str, Any]) -> None:
    value = schema_answer(schema, ASK, "seed")
    jsonschema.validate(value, schema)


def test_a_deep_schema_does_not_recurse_without_bound() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(2000):
        schema = {"type": "object", "properties": {"a": schema}}
    assert isinstance(schema_answer(schema, ASK, "seed"), dict)


def test_mock_generation_is_cut_at_its_token_limit() -> None:
    judge = MockJudge({})
    hello = [{"role": "user", "content": "one two three four five six"}]
    whole = run(lambda: judge.generate(hello))
    cut = run(lambda: judge.generate(hello, params={"max_tokens": 3}))
    assert whole.finish_reason == "stop"
    assert len(whole.text.split()) == 9 and len(cut.text.split()) == 3
    assert cut.finish_reason == "length" and cut.completion_tokens <= 3


def test_openai_judge_asks_with_a_json_schema_and_validates(fake: FakeOpenAI) -> None:
    fake.script.extend(['json:{"label": "maybe"}', 'json:{"label": "wrong"}'])

    async def use(judge: OpenAIJudge) -> Any:
        return await judge.structured(ASK, LABEL, params={"temperature": 0.2})

    got = with_judge(fake, use)
    assert got.value == {"label": "wrong"} and got.model == "fake-model"
    assert got.finish_reason == "stop" and (got.prompt_tokens, got.completion_tokens) == (11, 7)
    first, second = fake.requests
    assert first["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": LABEL, "strict": True},
    }
    assert first["messages"] == ASK and first["max_tokens"] == 512
    assert first["temperature"] == 0.2
    assert second["seed"] == 1  # the invalid label was asked again, as another sample


def test_openai_judge_fails_after_its_retries_and_refuses_a_bad_schema(
    fake: FakeOpenAI,
) -> None:
    fake.script.extend(["json:[1]", "json:{}", 'json:{"label": 3}'])

    async def use(judge: OpenAIJudge) -> Any:
        return await judge.structured(ASK, LABEL)

    with pytest.raises(EngineError, match="no valid answer after 3 tries"):
        with_judge(fake, use)

    async def bad(judge: OpenAIJudge) -> Any:
        return await judge.structured(ASK, {"type": "object", "minProperties": "x"})

    asked = len(fake.requests)
    with pytest.raises(EngineError, match="not a valid JSON schema"):
        with_judge(fake, bad)
    assert len(fake.requests) == asked  # refused before any request


def test_openai_judge_gives_the_served_finish_reason(fake: FakeOpenAI, tmp_path: Any) -> None:
    fake.script.extend(["cut:a long answ"])
    hello = [{"role": "user", "content": "Say hello."}]

    async def use(judge: OpenAIJudge) -> Any:
        first = await judge.generate(hello)
        cached = await judge.generate(hello)
        return first, cached

    first, cached = with_judge(fake, use, cache_path=str(tmp_path / "cache.db"))
    assert (first.text, first.finish_reason) == ("a long answ", "length")
    assert cached.finish_reason == "length" and len(fake.requests) == 1  # from the cache


def test_structured_answers_route_by_model(fake: FakeOpenAI) -> None:
    async def use(judge: OpenAIJudge) -> Any:
        return await judge.structured(ASK, RESULT, model="canned")

    got = with_judge(fake, use, models={"canned": {"backend": "mock"}})
    jsonschema.validate(got.value, RESULT)
    assert got.model == "canned" and not fake.requests
    assert json.dumps(got.value)
