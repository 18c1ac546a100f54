# ruff: noqa: RUF001 - full-width punctuation is the test data
"""Rule metrics against the reference pipeline (jieba + rouge-chinese + NLTK), and stats."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from evaldock.engines.text_metrics import (
    METRIC_KEYS,
    CaseMetrics,
    TextMetrics,
    aggregate,
    judge_stats,
    manual_stats,
    signature,
)
from evaldock.engines.text_metrics.bleu import bleu4
from evaldock.engines.text_metrics.rouge import rouge_f, rouge_words
from evaldock.engines.text_metrics.stats import percent_half_up
from tests.engines.text_metrics_reference import (
    CORNER_CASES,
    ReferenceMetrics,
    generate_pairs,
)

pytest.importorskip("rouge_chinese", reason="pip install rouge-chinese==1.0.3 (test extra)")
pytest.importorskip("nltk", reason="pip install nltk (test extra)")

TOL = 1e-9


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jieba")


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> TextMetrics:
    return TextMetrics(cache_dir / "ours")


@pytest.fixture(scope="module")
def reference(cache_dir: Path) -> ReferenceMetrics:
    (cache_dir / "reference").mkdir()
    return ReferenceMetrics(cache_dir / "reference")


def assert_case(ours: CaseMetrics, expected: dict[str, float], pair: tuple[str, str]) -> None:
    for key in METRIC_KEYS:
        got = getattr(ours, key)
        assert 0.0 <= got <= 1.0, (key, got, pair)
        assert abs(got - expected[key]) <= TOL, (key, got, expected[key], pair)


@pytest.mark.parametrize("lang", ["zh", "en", "mixed"])
def test_generated_pairs_equal_reference(
    engine: TextMetrics, reference: ReferenceMetrics, lang: str
) -> None:
    pairs = generate_pairs(150, lang, seed=1)
    ours = engine.per_cases(pairs)
    expected = [reference.per_case(p, r) for p, r in pairs]
    for case, exp, pair in zip(ours, expected, pairs, strict=True):
        assert_case(case, exp, pair)
    means = engine.aggregate(ours)
    for key, value in reference.mean(expected).items():
        assert abs(means[key] - value) <= TOL, key
    # The data exercise every metric, not just the zero corner.
    assert all(0.05 < means[key] < 0.999 for key in METRIC_KEYS), means


def test_corner_cases_equal_reference(engine: TextMetrics, reference: ReferenceMetrics) -> None:
    for pair in CORNER_CASES:
        assert_case(engine.per_case(*pair), reference.per_case(*pair), pair)


def test_documented_values(engine: TextMetrics) -> None:
    # An exact 2-character match: (1 * 1 * 1/2 * 1/4) ** 0.25.
    assert engine.per_case("好的", "好的").bleu4 == pytest.approx(0.5946035575013605, abs=1e-12)
    assert round(engine.per_case("好的", "好的").bleu4, 4) == 0.5946
    # rouge-chinese's f adds 1e-8 to the denominator: a perfect match is just under 1.
    same = engine.per_case("今天天气非常好", "今天天气非常好")
    assert same.rouge_1 == pytest.approx(1.0, abs=1e-8) and same.rouge_1 < 1.0
    assert same.f1Score == 1.0 and same.accuracy == 1.0
    # The vendor's observed example: reference contained in 2 of 3 predictions -> 0.667.
    cases = engine.per_cases([("答案是北京。", "北京"), ("上海", " 上海\n"), ("不知道", "广州")])
    assert round(aggregate(cases)["accuracy"], 3) == 0.667
    # Empty sides: accuracy follows `in` ("" is in every string), the rest are 0.
    assert engine.per_case("", "").as_dict() == {**dict.fromkeys(METRIC_KEYS, 0.0), "accuracy": 1.0}
    assert engine.per_case("回答", " ").accuracy == 1.0
    assert engine.per_case(" ", "答案").as_dict() == dict.fromkeys(METRIC_KEYS, 0.0)
    assert aggregate([]) == dict.fromkeys(METRIC_KEYS, 0.0)


def test_rouge_quirks_match_rouge_chinese() -> None:
    from rouge_chinese import Rouge

    rouge = Rouge()
    token_lists = [
        (["猫", "猫", "猫"], ["猫", "狗"]),  # n-gram sets: a repeat counts once
        (["等等", ".......", "然后"], ["等等", "......", "然后"]),  # a cut inside a token
        (["好", "。", "。", "好", "？", "”", "是"], ["好", "。", "”", "是"]),
        (["a b", "c"], ["a", "b", "c"]),  # tokens with spaces (not from jieba, but exact)
        (["x", "......", "”", "y"], ["x", "y"]),
    ]
    for hyp, ref in token_lists:
        s = rouge.get_scores(" ".join(hyp), " ".join(ref))[0]
        expected = (s["rouge-1"]["f"], s["rouge-2"]["f"], s["rouge-l"]["f"])
        assert rouge_f(rouge_words(hyp), rouge_words(ref)) == expected, (hyp, ref)
    assert rouge_words(["等等", ".......", "然后"]) == ["等等", "......", ".", "然后"]


def test_long_pair_rouge_l_is_the_exact_lcs(engine: TextMetrics) -> None:
    # ~6,000 characters a side: minutes in rouge-chinese's Python DP, milliseconds here.
    pairs = generate_pairs(400, "zh", seed=7)
    prediction = "".join(p for p, _ in pairs)[:6000]
    reference = "".join(r for _, r in pairs)[:6000]
    pred_words = rouge_words(engine.tokens.cut(prediction))
    ref_words = rouge_words(engine.tokens.cut(reference))
    assert len(pred_words) > 2000 and len(ref_words) > 2000
    ids: dict[str, int] = {}
    a = [ids.setdefault(w, len(ids)) for w in pred_words]
    b = [ids.setdefault(w, len(ids)) for w in ref_words]
    lcs = lcs_length(a, b)
    r, p = lcs / len(b), lcs / len(a)
    assert rouge_f(pred_words, ref_words)[2] == 2.0 * ((p * r) / (p + r + 1e-8))


def lcs_length(a: list[int], b: list[int]) -> int:
    """Independent O(n*m) LCS length, one numpy row per element of ``a``.

    Row recurrence ``cur[j+1] = max(prev[j+1], prev[j] + 1 if a_i == b_j, cur[j])``: the
    last term is a running maximum.
    """
    vb = np.asarray(b)
    prev = np.zeros(len(b) + 1, dtype=np.int64)
    for x in a:
        step = np.maximum(prev[1:], np.where(vb == x, prev[:-1] + 1, 0))
        prev = np.concatenate(([0], np.maximum.accumulate(step)))
    return int(prev[-1])


def test_bleu_matches_nltk_on_characters() -> None:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smoothing = SmoothingFunction().method3
    for prediction, reference in [
        ("abc", "abcd"),
        ("abcdefgh", "abc"),
        ("aaaa", "aa"),
        ("a b c", "a b"),
        ("好", "好好"),
        ("今天 天气", "今天天气"),
    ]:
        expected = sentence_bleu([list(reference)], list(prediction), smoothing_function=smoothing)
        assert bleu4(prediction, reference) == expected


def test_private_tokenizer_leaves_jieba_and_tmp_alone(tmp_path: Path) -> None:
    import jieba

    global_before = jieba.dt.initialized
    tmp_before = set(Path(tempfile.gettempdir()).glob("jieba*.cache"))
    engine = TextMetrics(tmp_path / "data" / "jieba")
    assert engine.tokens.cut("我们今天评估模型。 ") == ["我们", "今天", "评估", "模型", "。"]
    assert engine.tokens.cut("state-of-the-art GPU") == [
        "state",
        "-",
        "of",
        "-",
        "the",
        "-",
        "art",
        "GPU",
    ]
    assert [p.name for p in (tmp_path / "data" / "jieba").iterdir()] == [
        "jieba-0.42.1-default.cache"
    ]
    assert jieba.dt.initialized == global_before
    assert set(Path(tempfile.gettempdir()).glob("jieba*.cache")) == tmp_before
    # A second engine loads the cache written by the first.
    again = TextMetrics(tmp_path / "data" / "jieba")
    assert again.tokens.cut("人工智能") == engine.tokens.cut("人工智能")


def test_signature_states_the_convention(engine: TextMetrics) -> None:
    from evaldock.engines.signature import Signature

    assert engine.signature == signature()
    fields = Signature.parse(engine.signature)
    assert fields.kind == "metrics" and fields.get("metrics") == "text-rules.1"
    assert fields.get("tok") == "jieba-0.42.1+accurate+hmm+drop-space"
    assert fields.get("rouge") == "rouge-chinese-1.0.3+f+tokens"
    assert fields.get("bleu4") == "char+nltk-method3"
    assert fields.get("f1") == "squad+tokens"
    assert fields.version is not None


# --- judge and manual statistics --------------------------------------------------------


def test_judge_stats() -> None:
    stats = judge_stats([5, 3, None, 4, -1, 4, 9], min_score=1, max_score=5)
    valid = [5, 3, 4, 4]
    assert stats["avgJudgeScore"] == 4.0
    assert stats["stdJudgeScore"] == pytest.approx(
        math.sqrt(sum((v - 4.0) ** 2 for v in valid) / 4), abs=1e-12
    )
    assert stats["medianJudgeScore"] == 4.0
    # None, -1 and the off-scale 9 are the vendor's "-1" (invalid) bucket; zeros included.
    assert stats["scoreDistribution"] == {"-1": 3, "1": 0, "2": 0, "3": 1, "4": 2, "5": 1}
    assert list(stats["scoreDistribution"]) == ["-1", "1", "2", "3", "4", "5"]

    even = judge_stats([0, 1, 2, 5], 0, 5)
    assert even["medianJudgeScore"] == 1.5
    assert even["stdJudgeScore"] == pytest.approx(math.sqrt(3.5), abs=1e-12)

    empty = judge_stats([None, None], 0, 2)
    assert empty == {
        "avgJudgeScore": 0.0,
        "stdJudgeScore": 0.0,
        "medianJudgeScore": 0.0,
        "scoreDistribution": {"-1": 2, "0": 0, "1": 0, "2": 0},
    }
    with pytest.raises(ValueError, match="0 <= min <= max"):
        judge_stats([1], 3, 1)


def test_manual_stats_reproduce_the_vendor_report() -> None:
    # seeds/003: three cases, two dimensions; one case scored 满意度 1 and 安全性 0, two not.
    cases: list[dict[str, int | None]] = [
        {"满意度": 1, "安全性": 0},
        {},
        {"满意度": None, "安全性": -1},
    ]
    stats = manual_stats(cases, {"满意度": 1, "安全性": 1})
    assert stats == {
        "manualAvgScore": 0.5,
        "goodCaseProportion": 0,
        "manualScoreDistribution": [
            {"dimension": "满意度", "scoreDistribution": {"-1": 2, "1": 1}},
            {"dimension": "安全性", "scoreDistribution": {"-1": 2, "0": 1}},
        ],
    }


def test_manual_stats_good_cases_and_rounding() -> None:
    dims = {"quality": 5, "safety": 1}
    cases = [
        {"quality": 5, "safety": 1},  # good
        {"quality": 5},  # good: every scored dimension at the top
        {"quality": 4, "safety": 1},
        {},  # not scored: not in the proportion
    ]
    stats = manual_stats(cases, dims)
    assert stats["goodCaseProportion"] == 67  # 2 of 3, half up
    assert stats["manualAvgScore"] == pytest.approx((5 + 1 + 5 + 4 + 1) / 5)
    assert stats["manualScoreDistribution"][0]["scoreDistribution"] == {"-1": 1, "4": 1, "5": 2}
    assert stats["manualScoreDistribution"][1]["scoreDistribution"] == {"-1": 2, "1": 2}
    assert manual_stats([], dims) == {
        "manualAvgScore": 0.0,
        "goodCaseProportion": 0,
        "manualScoreDistribution": [
            {"dimension": "quality", "scoreDistribution": {"-1": 0}},
            {"dimension": "safety", "scoreDistribution": {"-1": 0}},
        ],
    }
    assert [percent_half_up(1, 8), percent_half_up(1, 3), percent_half_up(0, 0)] == [13, 33, 0]
    with pytest.raises(ValueError, match="undeclared dimensions"):
        manual_stats([{"fluency": 1}], dims)
