"""Text-similarity rule metrics and judge/manual score statistics (Qianfan's evaluation).

:mod:`.rules` holds the engine (:class:`TextMetrics`: tokenise once per case, then
accuracy, f1Score, rouge_1/2/l and bleu4, and their means) and the documented convention;
:mod:`.tokens` the private jieba tokenizer; :mod:`.rouge` and :mod:`.bleu` exact, fast
re-implementations of rouge-chinese 1.0.3 and NLTK's sentence BLEU; :mod:`.stats` the
judge-mode and manual-mode statistics. One implementation, no model: not a pluggable kind.
"""

from evaldock.engines.text_metrics.rules import (
    METRIC_KEYS,
    CaseMetrics,
    TextMetrics,
    aggregate,
    case_from_tokens,
    signature,
    token_f1,
)
from evaldock.engines.text_metrics.stats import (
    JudgeStats,
    ManualStats,
    judge_stats,
    manual_stats,
)

__all__ = [
    "METRIC_KEYS",
    "CaseMetrics",
    "JudgeStats",
    "ManualStats",
    "TextMetrics",
    "aggregate",
    "case_from_tokens",
    "judge_stats",
    "manual_stats",
    "signature",
    "token_f1",
]
