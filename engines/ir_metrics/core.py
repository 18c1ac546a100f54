"""Exact, vectorised retrieval metrics: trec_eval's (as pytrec_eval reports them) and BEIR's.

Input is either pytrec_eval-style dicts (:func:`evaluate_dicts`, :func:`compute_dicts`) or
what a ranker produces (:func:`evaluate_arrays`): a (Q, K) matrix of document codes
(``-1`` pads short rows), a matching score matrix, and a CSR :class:`Qrels` over the same
rows and codes.

Every metric except Hole depends only on the retrieved documents whose label is non-zero
(an unjudged or zero-label document adds nothing and, for ERR, multiplies by exactly 1).
So both front ends reduce the run to those "cells" -- (row, rank, label) -- and each
cutoff is then one ``bincount`` over a few hundred thousand entries instead of a pass over
Q x K. Sums run in rank order, as trec_eval and the Python references add them.

Two rankings are kept because the reference implementations differ:

* trec_eval (pytrec_eval, BEIR's NDCG/MAP/Recall/P) sorts by score descending and breaks
  ties by document id descending, comparing the id *strings*. For matrices, ``tie_rank``
  gives each code the position of its id in lexicographic order (see
  :func:`lexicographic_ranks`); without it the codes are taken to be in that order.
* BEIR's custom metrics (MRR, Hole, Accuracy) and GCL's ERR/RBP use Python's stable
  ``sorted(..., reverse=True)``: ties keep the run's own order (dict insertion order,
  column order for matrices).

Definitions (``rel`` is the qrels label, 0 when unjudged; labels are integers):

* NDCG@k: gain ``rel`` where ``rel > 0`` (trec_eval ignores zero and negative labels, in
  the ideal list too), discount ``log2(rank + 1)``, ideal from the qrels sorted descending.
* MAP@k: AP cut at k, divided by the number of relevant docs (``rel >= 1``) in the qrels.
* Recall@k, P@k: relevant in the top k over the relevant count, and over k itself.
* MRR@k: 1/rank of the first doc with ``rel > 0`` in the top k; Accuracy@k: 1 when there
  is one; Hole@k: share of the top k judged for no query at all (judged = in any query's
  qrels, whatever the label), over k.
* ERR: ``R = (2**rel - 1) / 2**max_rel``, ``ERR = sum(p * R / rank)`` with ``p`` the
  product of ``1 - R`` above the rank; RBP_p: ``(1 - p) * sum(rel / max_rel * p**(rank-1))``
  over all retrieved docs, ``max_rel`` being the query's largest qrels label.

Averages follow BEIR 2.0.0's ``EvaluateRetrieval`` (the version GCL pins): trec metrics
over the queries pytrec_eval reports (in the run, at least one judgement); MRR, Hole and
Accuracy summed over the run's queries and divided by the number of qrels queries (GCL
gives both the same queries); ERR and RBP averaged over the qrels queries, a query without
a run scoring 0 (GCL). Where the references would raise (no queries to average, a run
query missing from the qrels for MRR, ``max_rel == 0`` for RBP, an empty qrels entry for
ERR) the value is 0. Accuracy is BEIR 2.0.0's; the sort by the id's second character was
only in BEIR 0.2.1-0.2.2. Results are unrounded (BEIR rounds to 5 places).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, islice, repeat
from typing import Any

import numpy as np

PAD = -1
RELEVANCE_LEVEL = 1  # trec_eval's default: labels >= 1 count as relevant
DEFAULT_RBP_PS = (0.7, 0.8, 0.9)
MEASURES = ("ndcg", "map", "recall", "precision", "mrr", "hole", "acc", "err", "rbp")
TREC_MEASURES = frozenset({"ndcg", "map", "recall", "precision"})
# Cells per block of matrix rows: temporaries of a few MiB, cache friendly.
_BLOCK_CELLS = 1 << 18
# Above this many codes a dense "judged by some query" table would be wasteful.
_DENSE_CODES = 1 << 26
# Entries of the (rows x codes) label table used to find judged cells (8 MiB of int64).
_TABLE_CELLS = 1 << 20

_EMPTY: Mapping[str, int] = {}
_EMPTY_RUN: Mapping[str, float] = {}
_NAN = float("nan")


@dataclass(frozen=True)
class Qrels:
    """Judgements for Q query rows in CSR form: row i owns ``docs/rels[indptr[i]:indptr[i+1]]``.

    ``docs`` are document codes (the ones used in the run matrix), ``rels`` integer labels.
    A row must not repeat a document.
    """

    indptr: np.ndarray
    docs: np.ndarray
    rels: np.ndarray

    def __post_init__(self) -> None:
        indptr = np.asarray(self.indptr, dtype=np.int64)
        docs = np.asarray(self.docs, dtype=np.int64)
        rels = np.asarray(self.rels)
        integral = np.issubdtype(rels.dtype, np.integer)
        if rels.size and not integral and not np.array_equal(rels, np.trunc(rels)):
            raise ValueError("qrels labels must be integers (as in trec_eval)")
        rels = rels.astype(np.int64, copy=False)
        if indptr.ndim != 1 or indptr.size < 1 or indptr[0] != 0 or indptr[-1] != docs.size:
            raise ValueError("indptr must start at 0 and end at the number of judgements")
        if docs.shape != rels.shape or docs.ndim != 1:
            raise ValueError("docs and rels must be 1-D and of equal length")
        if np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must be non-decreasing")
        if docs.size and docs.min() < 0:
            raise ValueError("document codes must be >= 0")
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "docs", docs)
        object.__setattr__(self, "rels", rels)

    @property
    def n_queries(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[int, int]]) -> Qrels:
        """One ``{doc code: label}`` mapping per query row."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        n = int(indptr[-1])
        docs = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=n)
        rels = np.fromiter(chain.from_iterable(r.values() for r in rows), dtype=np.int64, count=n)
        return cls(indptr, docs, rels)

    @classmethod
    def from_coo(cls, query: np.ndarray, doc: np.ndarray, rel: np.ndarray, n_queries: int) -> Qrels:
        """From parallel (query row, doc code, label) arrays in any order."""
        query = np.asarray(query, dtype=np.int64)
        if query.size and (query.min() < 0 or query.max() >= n_queries):
            raise ValueError("query rows must be in [0, n_queries)")
        order = np.argsort(query, kind="stable")
        indptr = np.zeros(n_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(query, minlength=n_queries), out=indptr[1:])
        return cls(indptr, np.asarray(doc)[order], np.asarray(rel)[order])


@dataclass
class RunMetrics:
    """Per-query metrics: one row per query, one column per cutoff in ``ks``.

    ``trec_mask``: rows pytrec_eval reports (in the run, at least one judgement);
    ``in_run``/``in_qrels``: rows present in the run / in the qrels mapping.
    Only the groups in ``measures`` were computed; the others are zeros.
    """

    ks: tuple[int, ...]
    ndcg: np.ndarray
    map: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    mrr: np.ndarray
    hole: np.ndarray
    acc: np.ndarray
    err: np.ndarray
    rbp: dict[float, np.ndarray]
    trec_mask: np.ndarray
    in_run: np.ndarray
    in_qrels: np.ndarray
    measures: frozenset[str] = field(default_factory=lambda: frozenset(MEASURES))
    query_ids: list[str] | None = None

    def means(self) -> dict[str, dict[str, float]]:
        """BEIR-style averages (unrounded) of the computed groups, e.g.
        ``{"ndcg": {"NDCG@10": ..}, "map": {"MAP@10": ..}, ..., "err": {"mERR": ..},
        "rbp": {"mRBP7": ..}}``.
        """
        n_trec = int(self.trec_mask.sum())
        n_qrels = int(self.in_qrels.sum())

        def avg(values: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
            if n == 0:
                return np.zeros(values.shape[1:])
            return values[mask].sum(axis=0) / n

        def group(prefix: str, values: np.ndarray, mask: np.ndarray, n: int) -> dict[str, float]:
            return {
                f"{prefix}@{k}": float(v)
                for k, v in zip(self.ks, avg(values, mask, n), strict=True)
            }

        out: dict[str, dict[str, float]] = {}
        trec = self.trec_mask
        for name, prefix, values, mask, n in (
            ("ndcg", "NDCG", self.ndcg, trec, n_trec),
            ("map", "MAP", self.map, trec, n_trec),
            ("recall", "Recall", self.recall, trec, n_trec),
            ("precision", "P", self.precision, trec, n_trec),
            ("mrr", "MRR", self.mrr, self.in_run, n_qrels),
            ("hole", "Hole", self.hole, self.in_run, n_qrels),
            ("acc", "Accuracy", self.acc, self.in_run, n_qrels),
        ):
            if name in self.measures:
                out[name] = group(prefix, values, mask, n)
        if "err" in self.measures:
            out["err"] = {"mERR": float(avg(self.err, self.in_qrels, n_qrels))}
        if "rbp" in self.measures:
            out["rbp"] = {
                rbp_name(p): float(avg(v, self.in_qrels, n_qrels)) for p, v in self.rbp.items()
            }
        return out

    def trec_per_query(self) -> dict[str, dict[str, float]]:
        """pytrec_eval's per-query output (``ndcg_cut_k``, ``map_cut_k``, ``recall_k``, ``P_k``)."""
        ids = self.query_ids or [str(i) for i in range(self.trec_mask.size)]
        out: dict[str, dict[str, float]] = {}
        for row in np.flatnonzero(self.trec_mask):
            m: dict[str, float] = {}
            for j, k in enumerate(self.ks):
                m[f"ndcg_cut_{k}"] = float(self.ndcg[row, j])
                m[f"map_cut_{k}"] = float(self.map[row, j])
                m[f"recall_{k}"] = float(self.recall[row, j])
                m[f"P_{k}"] = float(self.precision[row, j])
            out[ids[row]] = m
        return out


def rbp_name(p: float) -> str:
    """GCL's key for RBP at persistence p: 0.7 -> ``mRBP7``."""
    return f"mRBP{p * 10:g}"


def lexicographic_ranks(ids: Sequence[str]) -> np.ndarray:
    """Position of each id in sorted order: the ``tie_rank`` for a corpus.

    ``str`` order is code point order, the same as ``strcmp`` on UTF-8, which trec_eval
    uses to break score ties.
    """
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[order] = np.arange(len(ids), dtype=np.int64)
    return ranks


def evaluate_arrays(
    topk_doc_ids: np.ndarray,
    topk_scores: np.ndarray,
    qrels: Qrels | Sequence[Mapping[int, int]],
    ks: Sequence[int],
    *,
    tie_rank: np.ndarray | None = None,
    rbp_ps: Sequence[float] = DEFAULT_RBP_PS,
    measures: Collection[str] | None = None,
    in_run: np.ndarray | None = None,
    in_qrels: np.ndarray | None = None,
    query_codes: np.ndarray | None = None,
    depth: int | None = None,
) -> RunMetrics:
    """All metrics for a run given as matrices.

    ``topk_doc_ids`` (Q, K) integer codes, ``-1`` for padding, no code twice in a row;
    rows need not be sorted (sorted rows skip the sort). ``topk_scores`` (Q, K), finite
    where a code is. ``qrels``: one row per query row. ``tie_rank[code]``: lexicographic
    position of the code's id (module doc). ``measures``: subset of :data:`MEASURES`
    (default all). ``in_run``/``in_qrels``: which rows the run / the qrels mapping hold
    (default all). ``depth``: keep each row's first ``depth`` docs by score (stable), as a
    retrieval of ``depth`` returns them; then ``query_codes[row]``, the code whose id equals
    the query id (``-1``: none), is dropped from the row (BEIR's ``ignore_identical_ids``).
    """
    doc = np.asarray(topk_doc_ids)
    score = np.asarray(topk_scores)
    if doc.ndim != 2 or doc.shape != score.shape:
        raise ValueError(f"need (Q, K) ids and scores of one shape, got {doc.shape}, {score.shape}")
    if not np.issubdtype(doc.dtype, np.integer):
        raise TypeError("document codes must be integers")
    q_rows = doc.shape[0]
    if not isinstance(qrels, Qrels):
        qrels = Qrels.from_rows(qrels)
    if qrels.n_queries != q_rows:
        raise ValueError(f"qrels has {qrels.n_queries} rows, the run {q_rows}")
    ks_t = _check_ks(ks)
    wanted = _check_measures(measures)
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    qc = None if query_codes is None else np.asarray(query_codes, dtype=np.int64)
    if qc is not None and qc.shape != (q_rows,):
        raise ValueError("query_codes needs one code per row")
    cells, unann = _cells_from_matrix(
        doc,
        score,
        qrels,
        ks_t,
        tie_rank=tie_rank,
        query_codes=qc,
        depth=depth,
        want_hole="hole" in wanted,
    )
    stats = _QrelStats(qrels.indptr, qrels.rels, ks_t)
    return _finish(
        cells, stats, unann, ks_t, rbp_ps, wanted, _mask(in_run, q_rows), _mask(in_qrels, q_rows)
    )


def _mask(mask: np.ndarray | None, q_rows: int) -> np.ndarray:
    if mask is None:
        return np.ones(q_rows, dtype=bool)
    out = np.asarray(mask, dtype=bool)
    if out.shape != (q_rows,):
        raise ValueError(f"row masks need shape ({q_rows},), got {out.shape}")
    return out


def compute_dicts(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    ks: Sequence[int],
    *,
    ignore_identical_ids: bool = True,
    rbp_ps: Sequence[float] = DEFAULT_RBP_PS,
    measures: Collection[str] | None = None,
    depth: int | None = None,
) -> RunMetrics:
    """Per-query metrics for pytrec_eval-style dicts (``query_ids`` set on the result).

    Rows are the qrels queries, then the run-only ones. ``depth`` cuts each run to its
    best ``depth`` docs before identical ids are dropped. The dicts are not modified (BEIR
    pops identical ids in place).
    """
    ks_t = _check_ks(ks)
    wanted = _check_measures(measures)
    qids = list(qrels)
    qids += [q for q in run if q not in qrels]
    run_rows = [run.get(q) for q in qids]
    qrel_rows = [qrels.get(q, _EMPTY) for q in qids]
    lengths = np.fromiter(map(len, qrel_rows), dtype=np.int64, count=len(qids))
    indptr = np.zeros(len(qids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    rels = np.fromiter(
        chain.from_iterable(r.values() for r in qrel_rows), dtype=np.int64, count=int(indptr[-1])
    )
    cells, unann = _cells_from_dicts(
        qids,
        run_rows,
        qrel_rows,
        lengths,
        rels,
        ks_t,
        ignore_identical_ids=ignore_identical_ids,
        depth=depth,
        want_hole="hole" in wanted,
    )
    result = _finish(
        cells,
        _QrelStats(indptr, rels, ks_t),
        unann,
        ks_t,
        rbp_ps,
        wanted,
        np.fromiter((r is not None for r in run_rows), dtype=bool, count=len(qids)),
        np.fromiter((q in qrels for q in qids), dtype=bool, count=len(qids)),
    )
    result.query_ids = qids
    return result


def evaluate_dicts(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    ks: Sequence[int],
    *,
    ignore_identical_ids: bool = True,
    rbp_ps: Sequence[float] = DEFAULT_RBP_PS,
    measures: Collection[str] | None = None,
) -> dict[str, dict[str, float]]:
    """BEIR ``EvaluateRetrieval.evaluate`` + ``evaluate_custom`` + GCL ERR/RBP, unrounded.

    Returns ``{"ndcg": {"NDCG@k"}, "map": {"MAP@k"}, "recall": {"Recall@k"},
    "precision": {"P@k"}, "mrr": {"MRR@k"}, "hole": {"Hole@k"}, "acc": {"Accuracy@k"},
    "err": {"mERR"}, "rbp": {"mRBP7", "mRBP8", "mRBP9"}}`` (the groups in ``measures``).
    """
    return compute_dicts(
        qrels,
        run,
        ks,
        ignore_identical_ids=ignore_identical_ids,
        rbp_ps=rbp_ps,
        measures=measures,
    ).means()


# -- internals ---------------------------------------------------------------------------


@dataclass
class _Cells:
    """Retrieved docs with a non-zero label: row, 0-based rank in the stable (BEIR/GCL)
    order, 0-based rank in trec_eval's order, label."""

    row: np.ndarray
    srank: np.ndarray
    trank: np.ndarray
    rel: np.ndarray

    @classmethod
    def concat(cls, parts: list[_Cells]) -> _Cells:
        if not parts:
            e = np.zeros(0, dtype=np.int64)
            return cls(e, e, e, e)
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("row", "srank", "trank", "rel")
            )
        )


class _QrelStats:
    """What the metrics need from the qrels alone, per row."""

    def __init__(self, indptr: np.ndarray, rels: np.ndarray, ks: tuple[int, ...]) -> None:
        q_rows = indptr.size - 1
        lengths = np.diff(indptr)
        row_of = np.repeat(np.arange(q_rows, dtype=np.int64), lengths)
        self.n = q_rows
        self.has = lengths > 0
        self.n_rel = np.bincount(row_of[rels >= RELEVANCE_LEVEL], minlength=q_rows)
        self.max_rel = np.zeros(q_rows, dtype=np.int64)
        if self.has.any():
            # Segments start at non-empty rows only: empty rows own no entries.
            self.max_rel[self.has] = np.maximum.reduceat(rels, indptr[:-1][self.has])
        # Ideal DCG at each cutoff: positive labels, descending, summed in rank order.
        gains = np.where(rels > 0, rels, 0)
        top = int(gains.max(initial=0))
        if (q_rows + 1) * (top + 1) < 1 << 62:
            # One stable sort of (row, gain descending) as a single integer key: rows
            # arrive in order, so timsort mostly merges runs (~3x a two-key lexsort).
            order = np.argsort(row_of * (top + 1) + (top - gains), kind="stable")
        else:
            order = np.lexsort((-gains, row_of))
        pos = np.arange(rels.size, dtype=np.int64) - np.repeat(indptr[:-1], lengths)
        contrib = gains[order] / np.log2(pos + 2.0)
        self.ideal = np.zeros((q_rows, len(ks)))
        for j, k in enumerate(ks):
            keep = (pos < k) & (contrib > 0)
            self.ideal[:, j] = np.bincount(row_of[keep], weights=contrib[keep], minlength=q_rows)


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or min(out) < 1:
        raise ValueError(f"cutoffs must be >= 1, got {list(out)}")
    return out


def _check_measures(measures: Collection[str] | None) -> frozenset[str]:
    if measures is None:
        return frozenset(MEASURES)
    wanted = frozenset(measures)
    unknown = wanted - set(MEASURES)
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)}; known: {list(MEASURES)}")
    return wanted


def _group_starts(row: np.ndarray) -> np.ndarray:
    """For an array sorted by row: index of the first element of each element's row."""
    if row.size == 0:
        return row
    first = np.ones(row.size, dtype=bool)
    first[1:] = row[1:] != row[:-1]
    return np.maximum.accumulate(np.where(first, np.arange(row.size), 0))


def _finish(
    cells: _Cells,
    stats: _QrelStats,
    unann: np.ndarray | None,
    ks: tuple[int, ...],
    rbp_ps: Sequence[float],
    wanted: frozenset[str],
    in_run: np.ndarray,
    in_qrels: np.ndarray,
) -> RunMetrics:
    q_rows, n_k = stats.n, len(ks)
    z = {name: np.zeros((q_rows, n_k)) for name in ("ndcg", "map", "recall", "precision")}
    z.update({name: np.zeros((q_rows, n_k)) for name in ("mrr", "hole", "acc")})
    err = np.zeros(q_rows)
    rbp = {float(p): np.zeros(q_rows) for p in rbp_ps}

    if wanted & TREC_MEASURES:
        _trec(cells, stats, ks, z)
    if wanted & {"mrr", "acc"}:
        pos = cells.rel > 0
        row, srank = cells.row[pos], cells.srank[pos]
        first = np.full(q_rows, np.inf)
        np.minimum.at(first, row, srank.astype(np.float64))
        for j, k in enumerate(ks):
            found = first < k
            z["mrr"][:, j] = np.where(found, 1.0 / (first + 1.0), 0.0)
            z["acc"][:, j] = found
    if wanted & {"err", "rbp"}:
        _err_rbp(cells, stats, err, rbp if "rbp" in wanted else {}, "err" in wanted)
    if "hole" in wanted and unann is not None:
        z["hole"][:] = unann / np.asarray(ks, dtype=np.float64)

    return RunMetrics(
        ks=ks,
        ndcg=z["ndcg"],
        map=z["map"],
        recall=z["recall"],
        precision=z["precision"],
        mrr=z["mrr"],
        hole=z["hole"],
        acc=z["acc"],
        err=err,
        rbp=rbp,
        trec_mask=in_run & in_qrels & stats.has,
        in_run=in_run,
        in_qrels=in_qrels,
        measures=wanted,
    )


def _trec(cells: _Cells, stats: _QrelStats, ks: tuple[int, ...], z: dict[str, np.ndarray]) -> None:
    q_rows = stats.n
    # Labels are integers, so "relevant" (>= 1) and "positive gain" (> 0) coincide.
    pos = cells.rel >= RELEVANCE_LEVEL
    row, trank, rel = cells.row[pos], cells.trank[pos], cells.rel[pos]
    order = np.lexsort((trank, row))
    row, trank, rel = row[order], trank[order], rel[order]
    hits = np.arange(row.size) - _group_starts(row) + 1  # relevant so far, this one included
    rank = trank + 1.0
    prec = hits / rank
    gain = rel / np.log2(rank + 1.0)
    n_rel = stats.n_rel.astype(np.float64)
    has_rel = n_rel > 0
    safe = np.where(has_rel, n_rel, 1.0)
    ideal = stats.ideal
    for j, k in enumerate(ks):
        m = trank < k
        r = row[m]
        count = np.bincount(r, minlength=q_rows)
        z["precision"][:, j] = count / k
        z["recall"][:, j] = np.where(has_rel, count / safe, 0.0)
        ap = np.bincount(r, weights=prec[m], minlength=q_rows)
        z["map"][:, j] = np.where(has_rel, ap / safe, 0.0)
        dcg = np.bincount(r, weights=gain[m], minlength=q_rows)
        ok = ideal[:, j] > 0
        z["ndcg"][:, j] = np.where(ok, dcg / np.where(ok, ideal[:, j], 1.0), 0.0)


def _err_rbp(
    cells: _Cells,
    stats: _QrelStats,
    err: np.ndarray,
    rbp: dict[float, np.ndarray],
    want_err: bool,
) -> None:
    q_rows = stats.n
    order = np.lexsort((cells.srank, cells.row))
    row, srank, rel = cells.row[order], cells.srank[order], cells.rel[order]
    if row.size == 0:
        return
    max_rel = stats.max_rel[row]
    rank = srank + 1.0
    if want_err:
        mr = max_rel.astype(np.float64)
        # (2**rel - 1) / 2**max_rel as a difference of two exact powers of two: rounded
        # once, like Python's exact integer division in GCL.
        r_prob = np.exp2(rel - mr) - np.exp2(-mr)
        # Chance to reach each cell: product of (1 - R) over the row's earlier cells
        # (unjudged docs multiply by exactly 1), row by row in a padded matrix.
        within = np.arange(row.size) - _group_starts(row)
        rows_u, slot = np.unique(row, return_inverse=True)
        stay = np.ones((rows_u.size, int(within.max()) + 1))
        stay[slot, within] = 1.0 - r_prob
        np.cumprod(stay, axis=1, out=stay)
        before = np.where(within > 0, stay[slot, np.maximum(within - 1, 0)], 1.0)
        err[:] = np.bincount(row, weights=before * r_prob / rank, minlength=q_rows)
    if rbp:
        usable = max_rel != 0  # GCL divides by max_rel and would raise
        norm = np.where(usable, rel / np.where(usable, max_rel, 1), 0.0)
        for p, dest in rbp.items():
            total = np.bincount(
                row, weights=norm * np.power(p, srank.astype(np.float64)), minlength=q_rows
            )
            dest[:] = total * (1.0 - p)


# -- matrix front end --------------------------------------------------------------------


def _cells_from_matrix(
    doc: np.ndarray,
    score: np.ndarray,
    qrels: Qrels,
    ks: tuple[int, ...],
    *,
    tie_rank: np.ndarray | None,
    query_codes: np.ndarray | None,
    depth: int | None,
    want_hole: bool,
) -> tuple[_Cells, np.ndarray | None]:
    q_rows, k_in = doc.shape
    tie = None if tie_rank is None else np.asarray(tie_rank, dtype=np.int64)
    lookup = _Lookup(qrels, max(int(doc.max(initial=PAD)), int(qrels.docs.max(initial=PAD))))
    annotated: np.ndarray | None = None
    if want_hole and lookup.width <= _DENSE_CODES:
        annotated = np.zeros(lookup.width, dtype=bool)
        annotated[qrels.docs] = True
    elif want_hole:
        annotated = np.unique(qrels.docs)
    unann = np.zeros((q_rows, len(ks)), dtype=np.int64) if want_hole else None

    parts: list[_Cells] = []
    step = max(1, _BLOCK_CELLS // max(k_in, 1))
    for r0 in range(0, q_rows, step):
        r1 = min(q_rows, r0 + step)
        d, s = _normalise(
            doc[r0:r1], score[r0:r1], depth, None if query_codes is None else query_codes[r0:r1]
        )
        if d.shape[1] == 0:
            continue
        ci, cj, rel = lookup.find(d, r0)
        if ci.size:
            trank = _trec_ranks(s, d, ci, cj, tie)
            parts.append(_Cells(ci + r0, cj, trank, rel))
        if unann is not None and annotated is not None:
            valid = d >= 0
            safe = np.where(valid, d, 0)
            dense = annotated.dtype == bool
            judged = annotated[safe] if dense else np.isin(safe, annotated)
            counts = np.cumsum(valid & ~judged, axis=1, dtype=np.int64)
            unann[r0:r1] = counts[:, np.minimum(np.asarray(ks), d.shape[1]) - 1]
    return _Cells.concat(parts), unann


class _Lookup:
    """Finds the run cells whose (row, code) has a non-zero label.

    A few rows at a time, the labels' positions go into a (rows x codes) table that the
    cells then index: one gather per cell instead of a binary search. The table is
    cleared entry by entry, so it is allocated once. Codes beyond ``_TABLE_CELLS`` fall
    back to a sorted-key search.
    """

    def __init__(self, qrels: Qrels, max_code: int) -> None:
        q_rows = qrels.n_queries
        keep = qrels.rels != 0
        self.row = np.repeat(np.arange(q_rows, dtype=np.int64), qrels.lengths)[keep]
        self.doc = qrels.docs[keep]
        self.rel = qrels.rels[keep]
        self.ptr = np.searchsorted(self.row, np.arange(q_rows + 1))
        # Slot = row * width + code + 1: padding (-1) lands on slot row * width, never set.
        self.width = max_code + 2
        self.rows_per_table = max(1, _TABLE_CELLS // self.width)
        self.table: np.ndarray | None = None
        if self.width <= _TABLE_CELLS:
            self.table = np.zeros(self.rows_per_table * self.width, dtype=np.int64)

    def find(self, d: np.ndarray, r0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row in block, column, label) of the labelled cells of rows r0.. of ``d``."""
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        b = d.shape[0]
        sub = self.rows_per_table if self.table is not None else b
        for s0 in range(0, b, sub):
            s1 = min(b, s0 + sub)
            lo, hi = int(self.ptr[r0 + s0]), int(self.ptr[r0 + s1])
            if hi == lo:
                continue
            slots = (self.row[lo:hi] - (r0 + s0)) * self.width + self.doc[lo:hi] + 1
            cells = np.arange(s1 - s0, dtype=np.int64)[:, None] * self.width + (d[s0:s1] + 1)
            if self.table is not None:
                self.table[slots] = np.arange(lo + 1, hi + 1)
                at = self.table[cells]
                self.table[slots] = 0
                ci, cj = np.nonzero(at)
                idx = at[ci, cj] - 1
            else:
                order = np.argsort(slots)
                keys = slots[order]
                at = np.minimum(np.searchsorted(keys, cells), keys.size - 1)
                ci, cj = np.nonzero(keys[at] == cells)
                idx = lo + order[at[ci, cj]]
            found.append((ci + s0, cj, self.rel[idx]))
        if not found:
            e = np.zeros(0, dtype=np.int64)
            return e, e, e
        return tuple(np.concatenate(x) for x in zip(*found, strict=True))  # type: ignore[return-value]


def _normalise(
    doc: np.ndarray, score: np.ndarray, depth: int | None, query_codes: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows in the stable order (score desc, ties by column), padding last; cut at
    ``depth``; identical ids dropped. Returns fresh (codes int64, scores float64, -inf pad)."""
    d = np.array(doc, dtype=np.int64)
    valid = d >= 0
    s = np.where(valid, np.asarray(score, dtype=np.float64), -np.inf)
    if not (np.isfinite(s) | ~valid).all():
        raise ValueError("scores must be finite")
    if d.shape[1] > 1:
        unsorted = ~(s[:, :-1] >= s[:, 1:]).all(axis=1)
        if unsorted.any():
            rows = np.flatnonzero(unsorted)
            perm = np.argsort(-s[rows], axis=1, kind="stable")
            s[rows] = np.take_along_axis(s[rows], perm, axis=1)
            d[rows] = np.take_along_axis(d[rows], perm, axis=1)
    if depth is not None and d.shape[1] > depth:
        d, s = d[:, :depth].copy(), s[:, :depth].copy()
    if query_codes is not None:
        same = (d == query_codes[:, None]) & (d >= 0)
        if same.any():
            d[same] = PAD
            s[same] = -np.inf
            rows = np.flatnonzero(same.any(axis=1))
            # Close the gap, keeping order: valid cells first, stably.
            perm = np.argsort(d[rows] < 0, axis=1, kind="stable")
            s[rows] = np.take_along_axis(s[rows], perm, axis=1)
            d[rows] = np.take_along_axis(d[rows], perm, axis=1)
    return d, s


def _trec_ranks(
    s: np.ndarray, d: np.ndarray, ci: np.ndarray, cj: np.ndarray, tie: np.ndarray | None
) -> np.ndarray:
    """trec_eval rank of cells (ci, cj) in score-sorted rows: the start of the cell's run of
    equal scores plus the number of that run's docs with a higher id."""

    def key(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        codes = d[rows, cols]
        return codes if tie is None else tie[codes]

    with np.errstate(over="ignore"):
        s = s.astype(np.float32)  # trec_eval ranks C floats (see _cells_from_dicts)
    sc = s[ci, cj]
    mine = key(ci, cj)
    start = cj.astype(np.int64)
    higher = np.zeros(ci.size, dtype=np.int64)
    k_cols = s.shape[1]
    for step in (-1, 1):
        idx = np.arange(ci.size)
        col = cj.astype(np.int64)
        while idx.size:
            col = col + step
            ok = (col >= 0) & (col < k_cols)
            idx, col = idx[ok], col[ok]
            ok = s[ci[idx], col] == sc[idx]
            idx, col = idx[ok], col[ok]
            if step < 0:
                start[idx] = col
            higher[idx] += key(ci[idx], col) > mine[idx]
    return start + higher


# -- dict front end ----------------------------------------------------------------------


def _cells_from_dicts(
    qids: list[str],
    run_rows: list[Mapping[str, float] | None],
    qrel_rows: list[Mapping[str, int]],
    qrel_lengths: np.ndarray,
    labels: np.ndarray,
    ks: tuple[int, ...],
    *,
    ignore_identical_ids: bool,
    depth: int | None,
    want_hole: bool,
) -> tuple[_Cells, np.ndarray | None]:
    """The cells of dict rows, all rows at once over a flat (CSR) layout.

    ``qrel_lengths``/``labels``: the qrels rows' sizes and their labels, flat. A per-row
    loop of numpy calls cost ~30 us a query (10,000 queries x 100 docs: 0.4 s, slower
    than ranx); here Python touches each score once (one ``fromiter`` over all rows) and
    each non-zero judgement once (one ``dict.get`` through ``map``), and the rest is a few
    array passes over all rows. Ids are read only for Hole and for tied hits.
    """
    q_rows = len(qids)
    unann = np.zeros((q_rows, len(ks)), dtype=np.int64) if want_hole else None
    runs: list[Mapping[str, float]] = [r or _EMPTY_RUN for r in run_rows]
    if depth is not None or ignore_identical_ids:
        # Rare: rebuild such rows in stable order, cut, then drop the query's own id.
        for i, r in enumerate(runs):
            if (depth is not None and len(r) > depth) or (ignore_identical_ids and qids[i] in r):
                runs[i] = _trimmed(qids[i], r, depth, ignore_identical_ids)
    lengths = np.fromiter(map(len, runs), dtype=np.int64, count=q_rows)
    off = np.zeros(q_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=off[1:])
    n_cells = int(off[-1])
    if n_cells == 0:
        return _Cells.concat([]), unann
    values = np.fromiter(
        chain.from_iterable(r.values() for r in runs), dtype=np.float64, count=n_cells
    )
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.searchsorted(off, np.argmin(finite), "right")) - 1
        raise ValueError(f"scores must be finite (query {qids[bad]!r})")
    order = _stable_desc_order(values, off, lengths)
    neg = -(values if order is None else values[order])  # ascending within each row

    # Judgements with a non-zero label, looked up in their row's run: the hits.
    nonzero = labels != 0
    asked = np.flatnonzero(nonzero)
    select = nonzero.tolist()
    owners = compress(chain.from_iterable(map(repeat, runs, qrel_lengths.tolist())), select)
    docs = compress(chain.from_iterable(qrel_rows), select)
    got: Iterator[Any]
    if all(type(r) is dict for r in runs):
        get: Callable[..., Any] = dict.get  # C-level calls: no Python frame a lookup
        got = map(get, owners, docs, repeat(_NAN))
    else:
        got = (r.get(d, _NAN) for r, d in zip(owners, docs, strict=True))
    found = np.fromiter(got, dtype=np.float64, count=asked.size)
    hit = ~np.isnan(found)
    hit_at = asked[hit]  # positions in the flat qrels
    hit_row = np.repeat(np.arange(q_rows, dtype=np.int64), qrel_lengths)[hit_at]
    x = -found[hit]
    lo, hi = off[hit_row], off[hit_row + 1]
    above = _segment_search(neg, lo, hi, x, right=False)
    upto = _segment_search(neg, lo, hi, x, right=True)
    # trec_eval keeps scores as C floats: it ranks (and ties) the float32-rounded scores
    # (0.1 + 1e-12 ties 0.1 there). Rounding keeps the order, so the rows stay sorted.
    with np.errstate(over="ignore"):
        neg32, x32 = neg.astype(np.float32), x.astype(np.float32)
    above32 = _segment_search(neg32, lo, hi, x32, right=False)
    upto32 = _segment_search(neg32, lo, hi, x32, right=True)
    srank = above - lo
    trank = above32 - lo
    tied = np.flatnonzero(upto32 - above32 > 1)  # float64 ties are float32 ties too
    if tied.size:
        _break_ties(
            tied, hit_row, hit_at, (above, upto), (above32, upto32), lo, order, runs,
            lengths, qrel_rows, qrel_lengths, srank, trank,
        )  # fmt: skip
    if unann is not None:
        annotated: set[str] = set().union(*qrel_rows)
        known = np.fromiter(
            map(annotated.__contains__, chain.from_iterable(runs)), dtype=bool, count=n_cells
        )
        if order is not None:
            known = known[order]
        counts = np.zeros(n_cells + 1, dtype=np.int64)
        np.cumsum(~known, out=counts[1:])
        cut = np.minimum(np.asarray(ks, dtype=np.int64)[None, :], lengths[:, None])
        unann[:] = counts[off[:-1, None] + cut] - counts[off[:-1], None]
    return _Cells(hit_row, srank, trank, labels[hit_at]), unann


def _break_ties(
    tied: np.ndarray,
    hit_row: np.ndarray,
    hit_at: np.ndarray,
    span64: tuple[np.ndarray, np.ndarray],
    span32: tuple[np.ndarray, np.ndarray],
    lo: np.ndarray,
    order: np.ndarray | None,
    runs: list[Mapping[str, float]],
    lengths: np.ndarray,
    qrel_rows: list[Mapping[str, int]],
    qrel_lengths: np.ndarray,
    srank: np.ndarray,
    trank: np.ndarray,
) -> None:
    """Ranks of hits whose score other docs of the row share: in the stable order (exact
    scores), the run's own order among them; in trec_eval's (float32 scores), after
    every tied id greater than theirs. ``span64``/``span32``: each hit's run of equal
    scores in the sorted row (the first inside the second). Reads the ids of those rows
    only (a row at a time, from its shorter end)."""
    q_start = np.zeros(qrel_lengths.size + 1, dtype=np.int64)
    np.cumsum(qrel_lengths, out=q_start[1:])
    t_rows = hit_row[tied].tolist()
    t_lo = span32[0][tied].tolist()
    t_hi = span32[1][tied].tolist()
    e_lo = span64[0][tied].tolist()
    e_hi = span64[1][tied].tolist()
    t_base = lo[tied].tolist()
    t_in_q = (hit_at[tied] - q_start[hit_row[tied]]).tolist()
    g = 0
    while g < tied.size:
        r = t_rows[g]
        e = g
        while e < tied.size and t_rows[e] == r:
            e += 1
        base = t_base[g]
        places = [
            list(range(t_lo[h] - base, t_hi[h] - base))
            if order is None
            else (order[t_lo[h] : t_hi[h]] - base).tolist()
            for h in range(g, e)
        ]
        key_at = _key_reader(runs[r], None, int(lengths[r]), places)
        judged = list(qrel_rows[r])
        for h, where in zip(range(g, e), places, strict=True):
            ids = [key_at(p) for p in where]
            d = judged[t_in_q[h]]
            exact = ids[e_lo[h] - t_lo[h] : e_hi[h] - t_lo[h]]
            srank[tied[h]] = e_lo[h] - base + exact.index(d)
            trank[tied[h]] = t_lo[h] - base + sum(t > d for t in ids)
        g = e


def _trimmed(
    qid: str, run_q: Mapping[str, float], depth: int | None, drop_own: bool
) -> dict[str, float]:
    """The row in stable score order, cut at ``depth``, without the query's own id."""
    sc = np.fromiter(run_q.values(), dtype=np.float64, count=len(run_q))
    if not np.isfinite(sc).all():
        raise ValueError(f"scores must be finite (query {qid!r})")
    order = np.argsort(-sc, kind="stable")[:depth].tolist()
    all_keys = list(run_q)
    out = {all_keys[p]: v for p, v in zip(order, sc[order].tolist(), strict=True)}
    if drop_own:
        out.pop(qid, None)
    return out


def _stable_desc_order(
    values: np.ndarray, off: np.ndarray, lengths: np.ndarray
) -> np.ndarray | None:
    """Flat positions of each row's cells by score descending, ties in the row's order;
    None when every row is sorted already (a ranker's output usually is)."""
    rises = values[:-1] < values[1:]
    # A row's last cell against the next row's first is no rise.
    starts = off[1:-1]
    rises[starts[(lengths[1:] > 0) & (starts > 0)] - 1] = False
    if not rises.any():
        return None
    n_rows = lengths.size
    row_of = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    width = int(lengths.max())
    if n_rows * width <= 2 * values.size:
        # Rows of similar length: one stable sort along a padded matrix's rows.
        col = np.arange(values.size, dtype=np.int64) - off[row_of]
        mat = np.full((n_rows, width), np.inf)
        mat[row_of, col] = -values
        perm = np.argsort(mat, axis=1, kind="stable")
        keep = perm < lengths[:, None]
        return (perm + off[:-1, None])[keep]
    return np.lexsort((-values, row_of))


def _segment_search(
    a: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray, *, right: bool
) -> np.ndarray:
    """``np.searchsorted(a[lo[i]:hi[i]], x[i]) + lo[i]`` for every i at once (each segment
    ascending): a branch-free binary search in lock step, log2(longest segment) passes."""
    if lo.size == 0:
        return lo.copy()
    size = hi - lo
    base = lo.copy()
    last = a.size - 1
    # Invariant: the answer is in [base, base + size]; halve size each pass.
    while True:
        longest = int(size.max())
        if longest == 0:
            return base
        half = size >> 1
        probe = a[np.minimum(base + half, last)]
        go = (probe <= x) if right else (probe < x)
        go &= size > 0
        base += np.where(go, size - half, 0)
        size = half


def _key_reader(
    run_q: Mapping[str, float], keys: list[str] | None, n: int, places: list[list[int]]
) -> Callable[[int], str]:
    """Key at a position of the row. Listing keys touches every key object on the way
    (slow on big heaps), so only the shorter end of the row that covers ``places`` is read.
    """
    if keys is not None:
        return keys.__getitem__
    first = min(min(p) for p in places)
    last = max(max(p) for p in places)
    if last + 1 <= n - first or not hasattr(run_q, "__reversed__"):
        head = list(islice(run_q, last + 1))
        return head.__getitem__
    tail = list(islice(reversed(run_q), n - first))  # tail[j] is position n - 1 - j
    return lambda p: tail[n - 1 - p]
