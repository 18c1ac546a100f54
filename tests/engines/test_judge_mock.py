"""The mock judge: deterministic answers for every surface, no model."""

from __future__ import annotations

import pytest

from evaldock.engines.judge.base import UnknownModel, usage_scope
from evaldock.engines.judge.mock import MockJudge
from tests.fakes.judging import run


def test_mock_is_deterministic_and_covers_the_interface() -> None:
    async def go():
        judge = MockJudge({})
        a = await judge.relevance("shirts with stripes", {"d": "striped shirt"})
        b = await judge.relevance("shirts with stripes", {"d": "striped shirt"})
        partial = await judge.relevance("solid shirts", {"d": "striped shirt"})
        none = await judge.relevance("laptop", {"d": "striped shirt"})
        with usage_scope() as usage:
            gen = await judge.generate([{"role": "user", "content": "hello"}])
            again = await judge.generate([{"role": "user", "content": "hello"}])
        two = await judge.generate(
            [{"role": "user", "content": "hello"}], model="gpt-4o-mini", params={"n": 2}
        )
        score = await judge.score(
            variables={"output": "paris is big", "reference": "paris"},
            max_score=5,
            dimensions=[{"dimension": "accuracy", "description": "facts"}],
        )
        empty = await judge.score(variables={"output": "", "reference": "x"}, max_score=5)
        js = await judge.json_score([], {"actual": "a b", "ideal": "a b"}, model="gpt-4o")
        return a, b, partial, none, gen, again, two, usage, score, empty, js

    a, b, partial, none, gen, again, two, usage, score, empty, js = run(go)
    assert a == b and (a.score, partial.score, none.score) == (2, 1, 0)
    assert gen == again and gen.text.startswith("mock answer") and "hello" in gen.text
    assert gen.choices == [gen.text] and gen.model == "mock" and gen.completion_tokens > 0
    assert usage.prompt_tokens == 2 * gen.prompt_tokens
    assert len(two.choices) == 2 and two.choices[0] != two.choices[1]
    assert two.model == "gpt-4o-mini"
    assert score.value == 5 and score.per_dimension == {"accuracy": 5}
    assert empty.value is None and empty.bucket == -1
    assert js == 1.0


def test_mock_knows_vendor_model_names() -> None:
    async def go(judge: MockJudge, name: str):
        return await judge.generate([{"role": "user", "content": "x"}], model=name)

    judge = MockJudge({"models": {"my_spice_model": "whatever"}})
    assert judge.known_models() == ["gpt-4o", "gpt-4o-mini", "mock", "my_spice_model"]
    assert run(lambda: go(judge, "my_spice_model")).model == "my_spice_model"
    with pytest.raises(UnknownModel) as e:
        run(lambda: go(judge, "gpt-5"))
    assert e.value.name == "gpt-5" and "gpt-4o-mini" in e.value.known
