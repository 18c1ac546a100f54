"""GCL's evaluation (``evals/eval_gs_v1.py``, what Marqtune runs) on top of :mod:`.core`.

The pipeline GCL runs, step by step, without pandas:

1. :func:`scale_relevance`: a weight column, if present and not constant, becomes
   ``int((w - min) / (max - min) * 99 + 1)`` (1..100); otherwise every label is 1.
2. :func:`make_query_id`: without a query id column the id is every left-key value
   followed by ``_{!@#~}_`` (GCL appends the separator after each value, the last too).
3. :func:`sample_test_queries`: ``top_q`` queries drawn without replacement, weighted by
   their summed relevance, seed 1, then sorted by that sum descending.
4. :func:`build_ground_truth`: per test query its rows by relevance descending, first
   ``top_k``, as ``{doc id: label}``.
5. :func:`evaluate` / :func:`evaluate_run`: the run cut at ``top_k``, docs whose id equals
   the query id dropped (BEIR's default), BEIR metrics at :func:`k_values`, ERR and RBP;
   the result has GCL's ``output.json`` structure, unrounded (see :func:`rounded`).
6. :func:`signature`: what produced the numbers: the ranker's signature, the cutoffs,
   the query sample and its seed, ``top_k`` and :data:`METRICS_VERSION`.

Pandas equivalence: ``DataFrame.sample(weights=..., random_state=1)`` is
``RandomState(1).choice(n, size, replace=False, p=w / w.sum())`` over the groups in sorted
key order, and ``sort_values(ascending=False)`` is pandas' ``nargsort`` (reverse,
``argsort(kind="quicksort")``, reverse). Both are reproduced call for call on int64
values: the sampled queries, their order and the ground truth were checked identical to
GCL's pandas code under pandas 2.3 (GCL pins 2.2). The order among equal weights comes
from numpy's unstable quicksort, so it matches pandas on the same numpy build. pandas >= 3
refuses such a sample when ``top_q * max share > 1`` (``top_q=-1`` always); GCL's pandas
did not, nor does this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaldock.engines.signature import Signature

from .core import (
    DEFAULT_RBP_PS,
    PAD,
    Qrels,
    RunMetrics,
    compute_dicts,
    evaluate_arrays,
    lexicographic_ranks,
    rbp_name,
)

QUERY_KEY_SEPARATOR = "_{!@#~}_"
GCL_KS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 500, 1000)
DEFAULT_TOP_Q = 2000
DEFAULT_TOP_K = 1000
SAMPLE_SEED = 1
# Bump when a number this module computes could change for the same inputs.
METRICS_VERSION = "gcl-eval_gs_v1.1"

__all__ = [
    "DEFAULT_TOP_K",
    "DEFAULT_TOP_Q",
    "GCL_KS",
    "METRICS_VERSION",
    "QUERY_KEY_SEPARATOR",
    "SAMPLE_SEED",
    "build_ground_truth",
    "evaluate",
    "evaluate_run",
    "k_values",
    "make_query_id",
    "make_query_ids",
    "rounded",
    "sample_groups",
    "sample_test_queries",
    "scale_relevance",
    "signature",
    "summary_log_line",
    "truth_rows",
]


def k_values(top_k: int = DEFAULT_TOP_K) -> list[int]:
    """GCL's cutoffs up to ``top_k``."""
    return [k for k in GCL_KS if k <= top_k]


def scale_relevance(
    weights: Sequence[float] | np.ndarray | None, n_rows: int | None = None
) -> np.ndarray:
    """Labels 1..100 from a weight column, or all 1 when it is absent (None) or constant.

    ``n_rows`` is needed only when ``weights`` is None.
    """
    if weights is None:
        if n_rows is None:
            raise ValueError("without weights, n_rows is needed")
        return np.ones(n_rows, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    if np.isnan(w).any():
        raise ValueError("weights contain NaN")
    if w.size == 0:
        return np.ones(0, dtype=np.int64)
    lo, hi = w.min(), w.max()
    if lo == hi:  # one distinct value (no NaN here): constant
        return np.ones(w.size, dtype=np.int64)
    # Same float64 steps as the pandas expression, in place (one temporary, not three: 80
    # MB each at ten million rows); astype(int) truncates (values are >= 1).
    x = w - lo
    x /= hi - lo
    x *= 99
    x += 1
    return x.astype(np.int64)


def make_query_id(left_values: Sequence[str]) -> str:
    """GCL's synthetic query id: each left-key value followed by the separator."""
    return "".join(f"{v}{QUERY_KEY_SEPARATOR}" for v in left_values)


def make_query_ids(left_columns: Sequence[Sequence[str]]) -> list[str]:
    """Query id per row from the left-key columns (one sequence of values per column)."""
    if not left_columns:
        raise ValueError("need at least one left key column")
    return [make_query_id(values) for values in zip(*left_columns, strict=True)]


def _nargsort_desc(values: np.ndarray) -> np.ndarray:
    """pandas ``nargsort(values, kind="quicksort", ascending=False)`` without NaN."""
    idx = np.arange(values.size)[::-1]
    return idx[values[::-1].argsort(kind="quicksort")][::-1]


def _group_rows(query_ids: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(sorted unique ids, row indices grouped by id in row order, group start offsets)."""
    uniq = sorted(set(query_ids))
    pos = {q: i for i, q in enumerate(uniq)}
    group = np.fromiter((pos[q] for q in query_ids), dtype=np.int64, count=len(query_ids))
    rows = np.argsort(group, kind="stable")
    starts = np.zeros(len(uniq) + 1, dtype=np.int64)
    np.cumsum(np.bincount(group, minlength=len(uniq)), out=starts[1:])
    return uniq, rows, starts


def sample_test_queries(
    query_ids: Sequence[str],
    relevance: Sequence[int] | np.ndarray,
    top_q: int = DEFAULT_TOP_Q,
    seed: int = SAMPLE_SEED,
) -> list[str]:
    """GCL ``get_test_queries``: ``top_q`` queries (-1: all) weighted by summed relevance.

    Deterministic for a given seed; raises ValueError when ``top_q`` exceeds the number of
    distinct queries (as pandas does).
    """
    rel = np.asarray(relevance, dtype=np.int64)
    if rel.size != len(query_ids):
        raise ValueError("one relevance value per row")
    uniq, rows, starts = _group_rows(query_ids)
    return [uniq[i] for i in sample_groups(rel, rows, starts, top_q, seed)]


def sample_groups(
    rel: np.ndarray,
    rows: np.ndarray,
    starts: np.ndarray,
    top_q: int = DEFAULT_TOP_Q,
    seed: int = SAMPLE_SEED,
) -> np.ndarray:
    """:func:`sample_test_queries` on queries already grouped: ``rows`` are the row
    indices grouped by query (queries in sorted id order, rows in row order within one),
    ``starts`` each group's offset (one more than the groups); the picked groups' indices
    in GCL's order. A caller that groups without Python strings (a columnar dataset of
    millions of rows) gets the same queries."""
    n_groups = len(starts) - 1
    if n_groups <= 0:
        return np.zeros(0, dtype=np.int64)
    totals = np.add.reduceat(rel[rows], starts[:-1])  # groupby(...).sum(), int64
    n = n_groups if top_q == -1 else top_q
    if n < 0 or n > n_groups:
        raise ValueError(f"cannot sample {top_q} queries from {n_groups} without replacement")
    weights = totals.astype(np.float64)
    if (weights < 0).any():
        raise ValueError("summed relevance must be >= 0")
    weight_sum = weights.sum()
    if weight_sum == 0:
        raise ValueError("relevance sums to zero")
    picked = np.random.RandomState(seed).choice(
        n_groups, size=n, replace=False, p=weights / weight_sum
    )
    order = _nargsort_desc(totals[picked])
    return np.asarray(picked[order], dtype=np.int64)


def truth_rows(
    rel: np.ndarray, rows: np.ndarray, starts: np.ndarray, group: int, top_k: int
) -> np.ndarray:
    """The rows of ``group`` that make its ground truth: by relevance descending (ties
    in pandas' order), the first ``top_k``."""
    mine = rows[starts[group] : starts[group + 1]]
    return np.asarray(mine[_nargsort_desc(rel[mine])][:top_k])


def build_ground_truth(
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    relevance: Sequence[int] | np.ndarray,
    test_queries: Sequence[str],
    top_k: int = DEFAULT_TOP_K,
) -> dict[str, dict[str, int]]:
    """GCL's ``gt_results``: per test query, its first ``top_k`` rows by relevance desc.

    A document listed twice keeps its first position and its last label (GCL's dict
    comprehension).
    """
    rel = np.asarray(relevance, dtype=np.int64)
    if not (len(query_ids) == len(doc_ids) == rel.size):
        raise ValueError("query_ids, doc_ids and relevance need one entry per row")
    uniq, rows, starts = _group_rows(query_ids)
    where = {q: i for i, q in enumerate(uniq)}
    gt: dict[str, dict[str, int]] = {}
    for q in test_queries:
        g = where.get(q)
        if g is None:
            raise KeyError(f"test query {q!r} has no rows")
        top = truth_rows(rel, rows, starts, g, top_k)
        gt[q] = {str(doc_ids[i]): int(rel[i]) for i in top}
    return gt


def evaluate(
    ground_truth: Mapping[str, Mapping[str, int]],
    query_ids: Sequence[str],
    topk_doc_ids: np.ndarray,
    topk_scores: np.ndarray,
    corpus_ids: Sequence[str],
    *,
    top_k: int = DEFAULT_TOP_K,
    tie_rank: np.ndarray | None = None,
) -> dict[str, Any]:
    """GCL's ``output.json`` for a run from the ranker.

    Row i of ``topk_doc_ids``/``topk_scores`` (indices into ``corpus_ids``, ``-1`` pads)
    is the retrieval for ``query_ids[i]``. ``tie_rank``: :func:`.lexicographic_ranks` of
    ``corpus_ids``, computed here when not given (pass it to reuse it across calls).
    Ground-truth docs missing from the corpus still count as relevant and judged.
    """
    ks = _ks_for(top_k)
    doc = np.asarray(topk_doc_ids, dtype=np.int64)
    score = np.asarray(topk_scores)
    if doc.ndim != 2 or doc.shape != score.shape or doc.shape[0] != len(query_ids):
        raise ValueError("need (len(query_ids), K) doc indices and scores")
    if len(set(query_ids)) != len(query_ids):
        raise ValueError("query ids must be unique")
    if doc.size and doc.max() >= len(corpus_ids):
        raise ValueError("doc indices must be < len(corpus_ids)")
    code = {d: i for i, d in enumerate(corpus_ids)}
    rows = list(query_ids)
    seen = set(rows)
    rows += [q for q in ground_truth if q not in seen]
    in_run = np.arange(len(rows)) < len(query_ids)
    qrel_rows: list[dict[int, int]] = []
    for q in rows:
        judged: dict[int, int] = {}
        for d, r in ground_truth.get(q, {}).items():
            c = code.get(d)
            if c is None:
                c = code[d] = len(code)  # judged but not in the corpus: a fresh code
            judged[c] = r
        qrel_rows.append(judged)
    extra = len(rows) - doc.shape[0]
    if extra:
        doc = np.vstack([doc, np.full((extra, doc.shape[1]), PAD, dtype=np.int64)])
        score = np.vstack([score, np.zeros((extra, score.shape[1]), dtype=score.dtype)])
    if tie_rank is None:
        tie_rank = lexicographic_ranks(corpus_ids)
    metrics = evaluate_arrays(
        doc,
        score,
        Qrels.from_rows(qrel_rows),
        ks,
        tie_rank=tie_rank,
        in_run=in_run,
        in_qrels=np.fromiter((q in ground_truth for q in rows), dtype=bool, count=len(rows)),
        query_codes=np.fromiter((code.get(q, PAD) for q in rows), dtype=np.int64),
        depth=top_k,
    )
    return _output(metrics)


def evaluate_run(
    ground_truth: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    *,
    top_k: int = DEFAULT_TOP_K,
) -> dict[str, Any]:
    """GCL's ``output.json`` for a run given as ``{query id: {doc id: score}}``."""
    ks = _ks_for(top_k)
    return _output(compute_dicts(ground_truth, run, ks, ignore_identical_ids=True, depth=top_k))


def _ks_for(top_k: int) -> list[int]:
    ks = k_values(top_k)
    if 10 not in ks:
        # GCL reads NDCG@10 for its summary and fails below that.
        raise ValueError(f"top_k must be >= 10, got {top_k}")
    return ks


def _output(metrics: RunMetrics) -> dict[str, Any]:
    m = metrics.means()
    last = metrics.ks[-1]
    summary: dict[str, Any] = {
        f"mAP@{last}": [m["map"][f"MAP@{last}"]],
        f"mrr@{last}": [m["mrr"][f"MRR@{last}"]],
        "NDCG@10": [m["ndcg"]["NDCG@10"]],
        "mERR": m["err"]["mERR"],
    }
    for p in DEFAULT_RBP_PS:
        summary[rbp_name(p)] = m["rbp"][rbp_name(p)]
    return {
        "mAP": m["map"],
        "ndcg": m["ndcg"],
        "precision": m["precision"],
        "recall": m["recall"],
        "mrr": m["mrr"],
        "hole": m["hole"],
        "acc": m["acc"],
        "summary": summary,
    }


def rounded(result: Mapping[str, Any], places: int = 5, *, all_values: bool = False) -> dict:
    """``result`` with Python's ``round`` applied as GCL's output.json has it.

    BEIR rounds its groups (and so the summary's list values) to 5 places, while mERR and
    the mRBPs are written unrounded; ``all_values=True`` rounds those too.
    """
    out: dict[str, Any] = {}
    for group, values in result.items():
        if group == "summary":
            out[group] = {
                k: [round(x, places) for x in v]
                if isinstance(v, list)
                else (round(v, places) if all_values else v)
                for k, v in values.items()
            }
        elif isinstance(values, Mapping):
            out[group] = {k: round(v, places) for k, v in values.items()}
        else:
            out[group] = values
    return out


def summary_log_line(summary: Mapping[str, Any]) -> str:
    """The summary as GCL logs it (``logging.info(dict)``), e.g. ``{'mAP@1000': [0.1], ...}``.

    Clients find ``"{'mAP@1000': "`` and ``json.loads`` the rest with ``'`` replaced by
    ``"``; values are plain Python floats so the repr is valid JSON after that.
    """
    clean = {
        str(k): [float(x) for x in v] if isinstance(v, list) else float(v)
        for k, v in summary.items()
    }
    for v in clean.values():
        for x in v if isinstance(v, list) else [v]:
            if not np.isfinite(x):
                raise ValueError("summary values must be finite to round-trip through JSON")
    return repr(clean)


def signature(
    ranker_signature: str,
    *,
    sample: int,
    top_k: int = DEFAULT_TOP_K,
    seed: int = SAMPLE_SEED,
    ks: Sequence[int] | None = None,
) -> Signature:
    """What produced an evaluation: metrics, cutoffs, query sample, then the ranker.

    ``sample`` is the number of test queries drawn (``top_q`` capped at the distinct
    queries), ``seed`` the sampling seed, ``ks`` the cutoffs (GCL's up to ``top_k`` when
    None); ``ranker_signature`` is the ranker's (text or :class:`Signature`), whose fields
    follow. E.g. ``metrics:gcl-eval_gs_v1.1|ks:1,2,...,1000|top_k:1000|sample:2000|seed:1|
    ranker:clip|model:ViT-B-32/laion2b_s34b_b79k|...|evaldock:0.1.0``.
    """
    cutoffs = list(ks) if ks is not None else _ks_for(top_k)
    head = Signature(
        [
            ("metrics", METRICS_VERSION),
            ("ks", ",".join(str(int(k)) for k in cutoffs)),
            ("top_k", int(top_k)),
            ("sample", int(sample)),
            ("seed", int(seed)),
        ]
    )
    return head.extended(Signature.parse(ranker_signature))
