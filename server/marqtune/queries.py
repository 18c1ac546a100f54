"""An evaluation's query side on a columnar dataset, without a Python object per row.

GCL samples ``topQ`` queries weighted by their summed relevance and builds each one's
ground truth (:mod:`evaldock.engines.ir_metrics.gcl`). Over Python lists that held ~200 B
a judgement row: ~2 GB at ten million rows, which the worker's heap then kept through
the whole evaluation (freed small objects stay in CPython's arenas; measured 2.9 GB RSS
while embedding a 10,000,000-row dataset). Here the query ids are Arrow strings, grouped
by Arrow's hash table into integer codes (~30 B a row, freed to the OS on return), and
only the sampled queries (at most ``topQ``) become Python objects. Same queries, same
ground truth, same order as the list path (tests/marqtune/test_queries.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from evaldock.engines.ir_metrics import gcl

from .columnar import ColumnarDataset, _q, _s


@dataclass
class Grouped:
    """Judgement rows grouped by query id, as :func:`gcl._group_rows` groups them."""

    ids: pa.Array  # the distinct query ids, sorted (Python's str order: code points)
    rows: np.ndarray  # row indices grouped by query, in row order within a query
    starts: np.ndarray  # each group's offset into ``rows`` (one more than the groups)


@dataclass
class QuerySide:
    test_queries: list[str]
    ground_truth: dict[str, dict[str, int]]
    first_rows: list[int]  # each test query's first judgement row
    distinct: int


def group(ds: ColumnarDataset, left_keys: list[str]) -> Grouped:
    """The rows grouped by GCL's synthetic query id (each left-key value followed by the
    separator). Query columns are non-null ``string`` (what :class:`.ColumnarSink`
    writes)."""
    chunks: list[pa.Array] = []
    names = [_q(c) for c in left_keys]
    for columns in ds.judgement_batches(names):
        # join(v1, v2, "", separator) is v1 SEP v2 SEP: make_query_id's text.
        chunks.append(pc.binary_join_element_wise(*columns, "", gcl.QUERY_KEY_SEPARATOR))
    ids = pa.chunked_array(chunks, type=pa.string())
    del chunks
    distinct = pc.unique(ids)
    codes = pc.index_in(ids, value_set=distinct)
    del ids  # ~29 B a row: the largest thing here
    # Arrow sorts strings by their UTF-8 bytes, which is code point order: sorted()'s.
    order = pc.sort_indices(distinct).to_numpy()
    rank = np.empty(len(distinct), dtype=np.int32)  # int32: 4 B a row below, not 8
    rank[order] = np.arange(len(distinct), dtype=np.int32)
    per_row = np.empty(len(codes), dtype=np.int32)
    at = 0
    for chunk in codes.chunks:
        per_row[at : at + len(chunk)] = rank[chunk.to_numpy()]
        at += len(chunk)
    del codes
    rows = np.argsort(per_row, kind="stable")
    starts = np.zeros(len(distinct) + 1, dtype=np.int64)
    np.cumsum(np.bincount(per_row, minlength=len(distinct)), out=starts[1:])
    return Grouped(distinct.take(pa.array(order)), rows, starts)


def relevance(ds: ColumnarDataset, weight_key: str | None) -> np.ndarray:
    """GCL's 1..100 labels from the weight column (float64, a batch at a time)."""
    if not weight_key:
        return gcl.scale_relevance(None, n_rows=ds.n_rows)
    weights = np.empty(ds.n_rows, dtype=np.float64)
    at = 0
    for (col,) in ds.judgement_batches([_s(weight_key)]):
        weights[at : at + len(col)] = col.to_numpy(zero_copy_only=False)
        at += len(col)
    return gcl.scale_relevance(weights)


def query_side(
    ds: ColumnarDataset, left_keys: list[str], weight_key: str | None, top_q: int, top_k: int
) -> QuerySide:
    """The sampled test queries, their ground truth and first rows."""
    grouped = group(ds, left_keys)
    rel = relevance(ds, weight_key)
    distinct = len(grouped.ids)
    picked = gcl.sample_groups(rel, grouped.rows, grouped.starts, min(top_q, distinct))
    test_queries: list[str] = grouped.ids.take(pa.array(picked, pa.int64())).to_pylist()
    truth = [gcl.truth_rows(rel, grouped.rows, grouped.starts, int(g), top_k) for g in picked]
    flat = np.concatenate(truth) if truth else np.zeros(0, dtype=np.int64)
    doc_ids = iter(ds.judgement_take("doc_id", flat))
    ground_truth: dict[str, dict[str, int]] = {}
    for q, mine in zip(test_queries, truth, strict=True):
        # A document listed twice keeps its first position and its last label (GCL).
        ground_truth[q] = {str(next(doc_ids)): int(rel[i]) for i in mine}
    first_rows = [int(grouped.rows[grouped.starts[g]]) for g in picked]
    return QuerySide(test_queries, ground_truth, first_rows, distinct)
