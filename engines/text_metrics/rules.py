"""Rule metrics (accuracy, f1Score, rouge_1/2/l, bleu4) of one prediction against one reference.

The vendor publishes no formulas; this is the common Chinese convention (ChatGLM /
LLaMA-Factory ``compute_metrics``), stated once so every number can be reproduced:

* tokens: :mod:`.tokens` (jieba 0.42.1, accurate mode, HMM, whitespace tokens dropped);
* ``accuracy``: 1 when ``reference.strip() in prediction`` (so an empty reference counts as
  contained), else 0;
* ``f1Score``: SQuAD overlap F1 of the token multisets (precision over prediction tokens,
  recall over reference tokens); 0 when nothing overlaps, both sides empty included;
* ``rouge_1/2/l``: the ``f`` of ``rouge-chinese`` 1.0.3 on the space-joined tokens
  (:mod:`.rouge`); 0 when either side has no token;
* ``bleu4``: NLTK ``sentence_bleu`` with method3 smoothing over the characters as given
  (:mod:`.bleu`); 0 when either side is empty;
* a run's value is the mean over its cases. All values lie in [0, 1]. English goes
  through the same pipeline, with no lower-casing.

Each case is tokenised once and the tokens shared by F1 and ROUGE. A reference pipeline
that tokenises separately for each, runs rouge-chinese (a Python dict LCS) and NLTK is
2-3.5x slower on 20,000 short pairs (jieba, which both run, is half of our time) and
~200x slower on one 6,000-character pair (scripts/bench_text_metrics.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from evaldock.engines.signature import Signature
from evaldock.engines.text_metrics.bleu import bleu4
from evaldock.engines.text_metrics.rouge import rouge_f, rouge_words
from evaldock.engines.text_metrics.tokens import JiebaTokens, jieba_version

# Bump when any definition above changes; it is part of every signature.
METRICS_VERSION = "1"
ROUGE_CHINESE = "1.0.3"

METRIC_KEYS = ("accuracy", "f1Score", "rouge_1", "rouge_2", "rouge_l", "bleu4")


def signature(jieba: str | None = None) -> str:
    """The convention as a :class:`Signature` text, e.g. for a report's provenance::

    metrics:text-rules.1|tok:jieba-0.42.1+accurate+hmm+drop-space|rouge:rouge-chinese-
    1.0.3+f+tokens|bleu4:char+nltk-method3|f1:squad+tokens|accuracy:ref.strip-in-pred|
    mean:cases|evaldock:0.1.0
    """
    return Signature.of(
        "metrics",
        f"text-rules.{METRICS_VERSION}",
        tok=f"jieba-{jieba or jieba_version()}+accurate+hmm+drop-space",
        rouge=f"rouge-chinese-{ROUGE_CHINESE}+f+tokens",
        bleu4="char+nltk-method3",
        f1="squad+tokens",
        accuracy="ref.strip-in-pred",
        mean="cases",
    ).format()


@dataclass(frozen=True, slots=True)
class CaseMetrics:
    """One case's rule metrics (attribute names are the report's keys)."""

    accuracy: float
    f1Score: float  # the report's key, hence camelCase
    rouge_1: float
    rouge_2: float
    rouge_l: float
    bleu4: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def contains_reference(prediction: str, reference: str) -> float:
    return 1.0 if reference.strip() in prediction else 0.0


def token_f1(pred_tokens: Sequence[str], ref_tokens: Sequence[str]) -> float:
    """SQuAD-style F1 of two token multisets (no normalisation beyond tokenisation)."""
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return (2 * precision * recall) / (precision + recall)


def case_from_tokens(
    prediction: str, reference: str, pred_tokens: Sequence[str], ref_tokens: Sequence[str]
) -> CaseMetrics:
    """All six metrics from texts already tokenised with :class:`JiebaTokens`."""
    rouge_1, rouge_2, rouge_l = rouge_f(rouge_words(pred_tokens), rouge_words(ref_tokens))
    return CaseMetrics(
        accuracy=contains_reference(prediction, reference),
        f1Score=token_f1(pred_tokens, ref_tokens),
        rouge_1=rouge_1,
        rouge_2=rouge_2,
        rouge_l=rouge_l,
        bleu4=bleu4(prediction, reference),
    )


def aggregate(cases: Iterable[CaseMetrics]) -> dict[str, float]:
    """Mean of each metric over the cases (``math.fsum``); all 0.0 for no cases."""
    rows = list(cases)
    if not rows:
        return dict.fromkeys(METRIC_KEYS, 0.0)
    return {key: math.fsum(getattr(c, key) for c in rows) / len(rows) for key in METRIC_KEYS}


class TextMetrics:
    """The rule-metrics engine: per-case values and their means.

    ``cache_dir`` holds jieba's prefix-dictionary cache (give it the server's data
    directory, e.g. ``<data>/jieba``). Safe to share between threads; CPU-bound (~0.1-0.3 ms
    per short pair, dominated by jieba), so callers run batches in an executor.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.tokens = JiebaTokens(cache_dir)
        self._signature: str | None = None

    @property
    def signature(self) -> str:
        if self._signature is None:
            self._signature = signature()
        return self._signature

    def warm(self) -> None:
        """Load jieba's dictionary now rather than on the first case."""
        self.tokens.warm()

    def per_case(self, prediction: str, reference: str) -> CaseMetrics:
        return case_from_tokens(
            prediction, reference, self.tokens.cut(prediction), self.tokens.cut(reference)
        )

    def per_cases(self, pairs: Iterable[tuple[str, str]]) -> list[CaseMetrics]:
        return [self.per_case(prediction, reference) for prediction, reference in pairs]

    @staticmethod
    def aggregate(cases: Iterable[CaseMetrics]) -> dict[str, float]:
        return aggregate(cases)
