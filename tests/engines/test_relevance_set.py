"""The labelled relevance set behind scripts/bench_similarity_judge.py, and its arithmetic."""

from __future__ import annotations

from collections import Counter

from scripts.bench_similarity_judge import KINDS, agreement, load_pairs

LABEL_OF_KIND = {"match": 2, "partial": 1, "irrelevant": 0, "contradiction": 0, "negation": 0}


def test_the_set_is_labelled_on_objectives_scale_with_contradictions() -> None:
    pairs = load_pairs()
    assert 40 <= len(pairs) <= 60
    kinds = Counter(p["kind"] for p in pairs)
    assert set(kinds) == set(KINDS)
    # Pairs whose words match while the object contradicts the query: what cosine misses.
    assert kinds["contradiction"] + kinds["negation"] >= 10
    for p in pairs:
        assert p["label"] == LABEL_OF_KIND[p["kind"]], p
        assert p["query"].strip() and isinstance(p["object"], dict) and p["object"]
    assert len({(p["query"], str(p["object"])) for p in pairs}) == len(pairs)


def test_agreement_counts_exact_and_within_one() -> None:
    assert agreement([2, 1, 0, 0], [2, 2, 2, None]) == (0.25, 0.5)
    assert agreement([], []) == (0.0, 0.0)
