"""The graders' pinned conventions: each text_similarity metric equal to its reference
library on data built here, string_check's operations, templates, and the multi formula
evaluator (never Python's eval)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import sacrebleu
from nltk.translate.gleu_score import sentence_gleu
from nltk.translate.meteor_score import meteor_score
from rapidfuzz import fuzz, utils
from rouge_score import rouge_scorer

from evaldock.engines.embedder.mock import MockEmbedder
from evaldock.engines.text_metrics import similarity
from evaldock.server.openai import formula, graders

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "sits",
    "on",
    "mat",
    "Paris",
    "paris",
    "rome",
    "4",
    "four",
    "blue",
    "red",
    "running",
    "ran",
    "quick",
]


def _pairs(n: int = 200) -> list[tuple[str, str]]:
    rng = random.Random(20261130)
    out = [("4", "4"), ("Paris", "paris"), ("", ""), ("", "x"), ("The cat sat.", "The cat sat.")]
    for _ in range(n):
        a = " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))
        b = " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))
        out.append((a, b))
    return out


class _NoSynonyms:
    def synsets(self, word: str, *a: object, **k: object) -> list[object]:
        return []


@pytest.mark.parametrize("metric", similarity.LIBRARY_METRICS)
def test_each_metric_equals_its_reference_library(metric: str) -> None:
    score = similarity.scorer(metric)
    rouge = rouge_scorer.RougeScorer([similarity.ROUGE.get(metric, "rouge1")], use_stemmer=False)
    for text, ref in _pairs():
        if metric == "fuzzy_match":
            want = fuzz.WRatio(text, ref, processor=utils.default_process) / 100
        elif metric == "bleu":
            want = min(1.0, sacrebleu.sentence_bleu(text, [ref]).score / 100)
        elif metric == "gleu":
            want = sentence_gleu([ref.split()], text.split())
        elif metric == "meteor":
            want = meteor_score([ref.split()], text.split(), wordnet=_NoSynonyms())
        else:
            key = similarity.ROUGE[metric]
            want = rouge.score(ref, text)[key].fmeasure
        assert score(text, ref) == want, (metric, text, ref)


def test_short_exact_answers_score_one_where_unsmoothed_bleu_gives_zero() -> None:
    assert similarity.bleu("4", "4") == 1.0
    assert similarity.fuzzy_match("Paris", "paris") == 1.0
    assert "wordnet:none" in similarity.signature("meteor")


def test_cosine_is_the_cosine_of_the_embedders_vectors() -> None:
    embedder = MockEmbedder({})
    pairs = _pairs(50)
    got = similarity.cosine_scores(embedder, [a for a, _ in pairs], [b for _, b in pairs])
    for (a, b), value in zip(pairs, got, strict=True):
        va, vb = (np.asarray(embedder.encode([t])[0], dtype=np.float64) for t in (a, b))
        want = float(np.dot(va, vb) / (np.linalg.norm(va) * np.linalg.norm(vb)))
        assert value == pytest.approx(max(-1.0, min(1.0, want)), abs=1e-12)


@pytest.mark.parametrize(
    ("op", "text", "ref", "want"),
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "Paris", "paris", 0.0),
        ("ne", "Paris", "paris", 1.0),
        ("like", "in Paris, France", "Paris", 1.0),
        ("like", "in paris", "Paris", 0.0),
        ("like", "100%", "1%", 0.0),  # a substring test, no SQL wildcards
        ("ilike", "IN PARIS", "paris", 1.0),
        ("ilike", "STRASSE", "straße", 1.0),  # casefold, not lower
    ],
)
def test_string_check_operations(op: str, text: str, ref: str, want: float) -> None:
    assert graders.string_check(text, ref, op) == want


def test_templates_render_nested_paths_and_json_for_non_strings() -> None:
    ns = {"item": {"a": {"b": [1, {"c": "deep"}]}, "n": 1.5, "t": True}, "sample": None}
    assert graders.render("{{item.a.b[1].c}}/{{ item.n }}/{{item.t}}", ns) == "deep/1.5/true"
    assert graders.render("{{item.a.b}}", ns) == '[1,{"c":"deep"}]'
    with pytest.raises(graders.MissingVariable):
        graders.render("{{sample.output_text}}", ns)
    with pytest.raises(graders.MissingVariable):
        graders.render("{{item.a.b[5]}}", ns)
    with pytest.raises(graders.GraderInvalid):
        graders.template_paths("{{ other.x }}")


def test_formula_language() -> None:
    names = {"a", "b"}
    cases = {
        "a + b * 2": 1 + 0.5 * 2,
        "-a ^ 2": -1.0,
        "2 ^ 3 ^ 2": 512.0,
        "min(a, b, 0.2) + max(a) + abs(-b)": 0.2 + 1 + 0.5,
        "floor(2.7) + ceil(2.1) + sqrt(4) + log(exp(1))": 2 + 3 + 2 + 1,
        "(a + b) / 2": 0.75,
    }
    for text, want in cases.items():
        assert formula.evaluate(formula.parse(text, names), {"a": 1, "b": 0.5}) == pytest.approx(
            want
        )


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id')",
        "a.__class__",
        "a ** 2",
        "[a]",
        "lambda: 1",
        "a; b",
        "x",
        "log(a, b)",
        "(" * 40 + "a" + ")" * 40,
        "a+" * 600 + "a",
        "",
    ],
)
def test_hostile_formulas_are_refused_before_evaluation(text: str) -> None:
    with pytest.raises(formula.FormulaError):
        formula.parse(text, {"a", "b"})


def test_formula_values_out_of_domain_are_errors() -> None:
    for text in ("a / 0", "10 ^ 400", "sqrt(-1)", "log(0)", "(-8) ^ 0.5"):
        with pytest.raises(formula.FormulaError):
            formula.evaluate(formula.parse(text, {"a"}), {"a": 1})
    assert math.isclose(formula.evaluate(formula.parse("1e2", set()), {}), 100)
