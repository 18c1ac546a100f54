import asyncio

from evaldock.engines.judge.config import judge_choice
from evaldock.engines.judge.mock import MockJudge


def test_mock_is_deterministic_and_covers_the_interface() -> None:
    async def go():
        judge = MockJudge({})
        a = await judge.relevance("shirts with stripes", {"d": "striped shirt"})
        b = await judge.relevance("shirts with stripes", {"d": "striped shirt"})
        gen = await judge.generate([{"role": "user", "content": "hello"}])
        score = await judge.score(
            variables={"output": "paris is big", "reference": "paris"}, max_score=5
        )
        none = await judge.score(variables={"output": "", "reference": "x"}, max_score=5)
        js = await judge.json_score([], {"actual": "a b", "ideal": "a b"})
        return a, b, gen, score, none, js

    a, b, gen, score, none, js = asyncio.run(go())
    assert a == b and a.score == 2
    assert gen.text.startswith("mock answer") and "hello" in gen.text
    assert score.value == 5 and none.value is None and js == 1.0


def test_judge_choice() -> None:
    assert judge_choice("mock", {}, {})[0] == "mock"
    assert judge_choice("real", {}, {})[0] == "similarity"
    impl, options = judge_choice(
        "real", {}, {"EVALDOCK_JUDGE_URLS": "http://a/v1, http://b/v1", "EVALDOCK_JUDGE_MODEL": "m"}
    )
    assert impl == "openai" and options["urls"] == ["http://a/v1", "http://b/v1"]
    assert options["model"] == "m"
    assert judge_choice("real", {"impl": "mock"}, {})[0] == "mock"
