"""GCL's ``output.json`` from a run that arrives a block of queries at a time.

:func:`evaldock.engines.ir_metrics.gcl.evaluate` wants every query's top k at once and a
code for every corpus document (a dict of 1,000,000 ids at a million rows). Here each
block brings its queries' top k (corpus indices) and only the ids of the documents the
block retrieved; the per-query metrics of each block (a few floats a query) are kept and
averaged at the end, over the same arrays in the same order as ``gcl.evaluate``'s, so the
numbers are the same to the last bit.

Why a block's own ids suffice: codes only need to be distinct per id, and ties between
equal scores are broken by the ids' lexicographic order (``tie_rank``), which the ranks
among a subset keep. A judged document the block did not retrieve gets a fresh code, as
``gcl.evaluate`` gives one missing from the corpus: both are judged and never retrieved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import gcl
from .core import PAD, Qrels, RunMetrics, evaluate_arrays, lexicographic_ranks

__all__ = ["StreamingGcl"]


class StreamingGcl:
    """Feed :meth:`add` blocks of queries (each query once), then take :meth:`result`."""

    def __init__(
        self, ground_truth: Mapping[str, Mapping[str, int]], *, top_k: int = gcl.DEFAULT_TOP_K
    ) -> None:
        self.ground_truth = ground_truth
        self.top_k = top_k
        self.ks = gcl._ks_for(top_k)
        self.parts: list[RunMetrics] = []
        self.seen: set[str] = set()
        # Hole@k counts retrieved documents no query judged, over the whole run: each
        # block gets one more qrels row holding every judged document (dropped after).
        self.judged = list(dict.fromkeys(d for docs in ground_truth.values() for d in docs))

    def add(
        self,
        query_ids: Sequence[str],
        topk_doc_ids: np.ndarray,
        topk_scores: np.ndarray,
        doc_id_of: Any,
    ) -> None:
        """Row i of ``topk_doc_ids``/``topk_scores`` (corpus indices, ``-1`` pads) is the
        retrieval for ``query_ids[i]``; ``doc_id_of(indices)`` answers the ids of sorted,
        distinct corpus indices (e.g. ``lambda i: doc_ids.take(i).to_pylist()``)."""
        doc = np.asarray(topk_doc_ids, dtype=np.int64)
        score = np.asarray(topk_scores)
        if doc.ndim != 2 or doc.shape != score.shape or doc.shape[0] != len(query_ids):
            raise ValueError("need (len(query_ids), K) doc indices and scores")
        rows = list(query_ids)
        if len(set(rows)) != len(rows) or self.seen.intersection(rows):
            raise ValueError("query ids must be unique")
        self.seen.update(rows)
        present = doc >= 0
        uniq = np.unique(doc[present])
        codes = np.full(doc.shape, PAD, dtype=np.int64)
        codes[present] = np.searchsorted(uniq, doc[present])
        corpus = [str(d) for d in doc_id_of(uniq)] if uniq.size else []
        self.parts.append(self._metrics(rows, codes, score, corpus, in_run=True))

    def _metrics(
        self,
        rows: list[str],
        doc: np.ndarray,
        score: np.ndarray,
        corpus: list[str],
        *,
        in_run: bool,
    ) -> RunMetrics:
        # gcl.evaluate's construction, on this block's corpus.
        code = {d: i for i, d in enumerate(corpus)}
        qrel_rows: list[dict[int, int]] = []
        for q in rows:
            judged: dict[int, int] = {}
            for d, r in self.ground_truth.get(q, {}).items():
                c = code.get(d)
                if c is None:
                    c = code[d] = len(code)
                judged[c] = r
            qrel_rows.append(judged)
        everything: dict[int, int] = {}
        for d in self.judged:
            c = code.get(d)
            if c is None:
                c = code[d] = len(code)
            everything[c] = 1
        qrel_rows.append(everything)
        n = len(rows)
        metrics = evaluate_arrays(
            np.vstack([doc, np.full((1, doc.shape[1]), PAD, dtype=np.int64)]),
            np.vstack([score, np.zeros((1, score.shape[1]), dtype=score.dtype)]),
            Qrels.from_rows(qrel_rows),
            self.ks,
            tie_rank=lexicographic_ranks(corpus),
            in_run=np.append(np.full(n, in_run), False),
            in_qrels=np.append(
                np.fromiter((q in self.ground_truth for q in rows), dtype=bool, count=n), False
            ),
            query_codes=np.append(
                np.fromiter((code.get(q, PAD) for q in rows), dtype=np.int64, count=n), PAD
            ),
            depth=self.top_k,
        )
        return _rows(metrics, n)

    def result(self) -> dict[str, Any]:
        """GCL's ``output.json`` (unrounded), as ``gcl.evaluate`` answers for the whole run."""
        parts = list(self.parts)
        extra = [q for q in self.ground_truth if q not in self.seen]
        if extra:  # judged queries the run never had: no documents, still averaged
            empty = np.full((len(extra), 1), PAD, dtype=np.int64)
            parts.append(
                self._metrics(extra, empty, np.zeros(empty.shape, np.float32), [], in_run=False)
            )
        if not parts:
            raise ValueError("no queries")
        return gcl._output(_concatenate(parts))


def _rows(m: RunMetrics, n: int) -> RunMetrics:
    """The first ``n`` query rows of ``m``."""
    return RunMetrics(
        ks=m.ks,
        ndcg=m.ndcg[:n],
        map=m.map[:n],
        recall=m.recall[:n],
        precision=m.precision[:n],
        mrr=m.mrr[:n],
        hole=m.hole[:n],
        acc=m.acc[:n],
        err=m.err[:n],
        rbp={p: v[:n] for p, v in m.rbp.items()},
        trec_mask=m.trec_mask[:n],
        in_run=m.in_run[:n],
        in_qrels=m.in_qrels[:n],
        measures=m.measures,
        query_ids=None,
    )


def _concatenate(parts: Sequence[RunMetrics]) -> RunMetrics:
    first = parts[0]
    if len(parts) == 1:
        return first

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts], axis=0)

    return RunMetrics(
        ks=first.ks,
        ndcg=cat("ndcg"),
        map=cat("map"),
        recall=cat("recall"),
        precision=cat("precision"),
        mrr=cat("mrr"),
        hole=cat("hole"),
        acc=cat("acc"),
        err=cat("err"),
        rbp={p: np.concatenate([q.rbp[p] for q in parts], axis=0) for p in first.rbp},
        trec_mask=cat("trec_mask"),
        in_run=cat("in_run"),
        in_qrels=cat("in_qrels"),
        measures=first.measures,
        query_ids=None,
    )
