"""Which judge serves: the [judge] table, the environment and the mode."""

from __future__ import annotations

import pytest

from evaldock.engines import registry
from evaldock.engines.errors import EngineUnavailable
from evaldock.engines.judge.config import judge_choice
from evaldock.engines.judge.openai import OpenAIJudge


def test_mode_and_urls_pick_the_implementation() -> None:
    assert judge_choice("mock", {"urls": ["http://a/v1"]}, {})[0] == "mock"
    assert judge_choice("real", {}, {}) == ("similarity", {"urls": []})
    impl, options = judge_choice(
        "real",
        {"urls": ["http://table/v1"], "model": "t", "timeout": 5},
        {
            "EVALDOCK_JUDGE_URLS": "http://a/v1, http://b/v1",
            "EVALDOCK_JUDGE_MODEL": "m",
            "EVALDOCK_JUDGE_API_KEY": "k",
        },
    )
    assert impl == "openai"
    assert options == {
        "urls": ["http://a/v1", "http://b/v1"],
        "model": "m",
        "api_key": "k",
        "timeout": 5,
    }
    assert judge_choice("real", {"url": "http://one/v1"}, {})[1]["urls"] == ["http://one/v1"]
    assert judge_choice("real", {"impl": "mock"}, {})[0] == "mock"
    assert judge_choice("real", {"urls": []}, {"EVALDOCK_JUDGE_URLS": ""})[0] == "similarity"


def test_vendor_model_table_passes_through() -> None:
    table = {"models": {"gpt-4o-mini": "SmolLM2", "gpt-4o": {"urls": ["http://g/v1"]}}}
    impl, options = judge_choice("real", table, {"EVALDOCK_JUDGE_URLS": "http://a/v1"})
    judge = registry.create("judge", impl, options)
    assert isinstance(judge, OpenAIJudge)
    assert judge.known_models() == ["gpt-4o", "gpt-4o-mini"]


def test_bad_settings_fail_with_the_fix() -> None:
    with pytest.raises(EngineUnavailable, match="EVALDOCK_JUDGE_URLS"):
        registry.create("judge", "openai", {"urls": []})
    with pytest.raises(EngineUnavailable, match="structured"):
        registry.create("judge", "openai", {"urls": ["http://a/v1"], "structured": "xml"})
    with pytest.raises(EngineUnavailable, match="backend 'tgi'"):
        registry.create(
            "judge", "openai", {"urls": ["http://a/v1"], "models": {"x": {"backend": "tgi"}}}
        )
