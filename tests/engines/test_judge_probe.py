"""The start-up probe: a server that ignores ``[judge] structured`` stops real mode at
start-up with the setting to use, instead of failing every judgement after 3 tries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from evaldock.engines.errors import EngineUnavailable
from evaldock.engines.judge.openai import OpenAIJudge
from tests.fakes.judging import with_judge
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


async def checked(judge: OpenAIJudge) -> OpenAIJudge:
    await judge.check()
    return judge


def check_with(servers: Any, **options: Any) -> OpenAIJudge:
    return with_judge(servers, checked, **options)


@pytest.mark.parametrize("structured", ["json_schema", "structured_outputs", "guided_json"])
def test_a_server_that_applies_the_schema_passes(fake: FakeOpenAI, structured: str) -> None:
    check_with(fake, structured=structured)
    (probe,) = fake.probes
    assert probe["max_tokens"] == 48 and probe["temperature"] == 0
    assert "JSON" not in probe["messages"][0]["content"]  # only a constraint yields JSON


@pytest.mark.parametrize(
    ("structured", "fix"),
    [
        # vLLM 0.32 ignored guided_json: every judgement failed after 3 tries.
        ("guided_json", 'vLLM 0.12 and later dropped guided_json: set [judge] structured = "'),
        ("structured_outputs", "vLLM before 0.10.2 has no structured_outputs field"),
        ("json_schema", "[judge] probe = false"),
    ],
)
def test_a_server_that_ignores_the_setting_stops_start_up_with_the_fix(
    structured: str, fix: str
) -> None:
    with FakeOpenAI(ignores=(structured,)) as fake:
        with pytest.raises(EngineUnavailable) as caught:
            check_with(fake, structured=structured)
        # Told nothing about the schema, an unconstrained model answers free text.
        assert f"ignored [judge] structured = '{structured}'" in caught.value.message
        assert "echo: Reply with one word" in caught.value.message
        assert fix in caught.value.hint
        # With the probe off, it starts (answers are then only validated and re-asked).
        check_with(fake, structured=structured, probe=False)


def test_a_server_that_refuses_the_request_stops_start_up(fake: FakeOpenAI) -> None:
    fake.script.append("probe:400")
    with pytest.raises(EngineUnavailable, match=r"refused a structured-output request") as e:
        check_with(fake, structured="guided_json")
    assert "structured_outputs" in e.value.hint


def test_every_server_is_probed_routed_ones_included(fake: FakeOpenAI) -> None:
    with FakeOpenAI() as second, FakeOpenAI(model="big", ignores=("guided_json",)) as other:
        models = {"gpt-4o": {"urls": [other.url], "model": "big"}}
        check_with((fake, second), models=models)
        assert len(fake.probes) == len(second.probes) == len(other.probes) == 1
        # The routed server inherits [judge] structured, and is held to it.
        with pytest.raises(EngineUnavailable, match=f"{other.url} ignored"):
            check_with((fake, second), models=models, structured="guided_json")
