"""Free-text generation has its own limit and its own signature, apart from judgements."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evaldock.engines.errors import EngineUnavailable
from evaldock.engines.judge.base import UnknownModel
from evaldock.engines.judge.mock import MockJudge
from evaldock.engines.judge.openai import OpenAIJudge
from evaldock.engines.signature import Signature, evaldock_version
from tests.fakes.judging import SHIRT, with_judge
from tests.fakes.openai_server import FakeOpenAI

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


async def both(judge: OpenAIJudge) -> None:
    await judge.generate(HELLO)
    await judge.relevance("shirts with stripes", SHIRT)


def test_generation_and_judgements_have_separate_limits(fake: FakeOpenAI) -> None:
    with_judge(fake, both)
    assert [r["max_tokens"] for r in fake.requests] == [1024, 512]  # the defaults
    # At 96 a runaway answer stopped early, but a Qianfan case was left unscorable:
    # now each limit is set apart.
    with_judge(fake, both, max_tokens=300, generation_max_tokens=96)
    assert [r["max_tokens"] for r in fake.requests[2:]] == [96, 300]


def test_generation_without_a_limit_and_a_requests_own_limit(fake: FakeOpenAI) -> None:
    async def use(judge: OpenAIJudge):
        await judge.generate(HELLO)
        await judge.generate(HELLO, params={"max_tokens": 7})

    with_judge(fake, use, generation_max_tokens=0)
    assert "max_tokens" not in fake.requests[0]  # the server's own limit
    assert fake.requests[1]["max_tokens"] == 7


def test_routed_servers_inherit_the_generation_limit(fake: FakeOpenAI) -> None:
    with FakeOpenAI(model="big") as other:

        async def use(judge: OpenAIJudge):
            await judge.generate(HELLO, model="gpt-4o")

        models = {"gpt-4o": {"urls": [other.url], "model": "big"}}
        with_judge(fake, use, models=models, generation_max_tokens=200)
        assert other.requests[0]["max_tokens"] == 200


def test_generation_signature_describes_generation(fake: FakeOpenAI) -> None:
    async def use(judge: OpenAIJudge):
        with pytest.raises(UnknownModel):
            judge.generation_signature("gpt-5")
        return judge.generation_signature(), judge.generation_signature("gpt-4o-mini")

    own, routed = with_judge(
        fake, use, models={"gpt-4o-mini": "fake-model"}, temperature=0.2, generation_max_tokens=0
    )
    expected = "generate:openai|model:fake-model|max_tokens:server|temp:0.2|evaldock:"
    assert own == routed == expected + evaldock_version()
    # Not the judge's: no prompt version, no output schema.
    assert Signature.parse(own).get("structured") is None


def test_mock_generation_signature() -> None:
    judge = MockJudge({})
    assert judge.generation_signature("gpt-4o").startswith("generate:mock|model:gpt-4o|")
    assert judge.generation_signature().startswith("generate:mock|model:mock|")
    with pytest.raises(UnknownModel):
        judge.generation_signature("gpt-5")


def test_no_generator_no_signature() -> None:
    pytest.importorskip("sentence_transformers")
    from evaldock.engines.judge.similarity import SimilarityJudge

    with pytest.raises(EngineUnavailable, match="no generator model"):
        SimilarityJudge({}).generation_signature()
