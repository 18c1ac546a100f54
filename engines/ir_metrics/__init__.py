"""Exact, vectorised IR metrics (trec_eval/pytrec_eval, BEIR, GCL) and Marqtune's evaluation.

:mod:`.core` holds the metrics on (Q, K) run matrices and on pytrec_eval-style dicts;
:mod:`.gcl` the GCL ``evals/eval_gs_v1.py`` layer Marqtune runs (relevance scaling, query
ids, query sampling, ground truth, the ``output.json`` structure, its summary log line and
the evaluation's signature). A library the surfaces call directly, not an engine kind: it
declares no ``IMPLEMENTATIONS``.
"""

from .core import (
    DEFAULT_RBP_PS,
    PAD,
    Qrels,
    RunMetrics,
    compute_dicts,
    evaluate_arrays,
    evaluate_dicts,
    lexicographic_ranks,
)

__all__ = [
    "DEFAULT_RBP_PS",
    "PAD",
    "Qrels",
    "RunMetrics",
    "compute_dicts",
    "evaluate_arrays",
    "evaluate_dicts",
    "lexicographic_ranks",
]
