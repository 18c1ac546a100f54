"""The columnar query side (server/marqtune/queries.py) against GCL's list functions
(engines/ir_metrics/gcl.py, held to GCL by tests/engines): the same sampled queries in
the same order, the same ground truth, the same first rows, on data built here with
several batches, two key columns, ties, repeated documents and non-ASCII ids."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from evaldock.engines.ir_metrics import gcl
from evaldock.server.marqtune import columnar, queries
from evaldock.server.marqtune.columnar import ColumnarDataset, ColumnarSink
from evaldock.server.marqtune.datasets import Schema

# Code points whose UTF-16 order differs from their code point order (a sort by UTF-16
# units or by locale would put them elsewhere), an empty value and a separator look-alike.
VALUES = ["red", "Red", "", "é", "\uffff", "\U0001f600", "_{!@#~}", "a b", "zz", "ä"]


def build(tmp_path: Path, rows: int, seed: int, weights: bool) -> ColumnarDataset:
    rnd = random.Random(seed)
    columns = {"query": "text", "lang": "text", "title": "text"}
    if weights:
        columns["score"] = "score"
    schema = Schema("evaluation", columns, ["query", "lang"], ["title"])
    sink = ColumnarSink(tmp_path / "tmp", schema)
    for d in range(rows // 3 + 1):
        sink.document(f"doc{d}", {"title": f"t{d}"})
    for _ in range(rows):
        query = {"query": rnd.choice(VALUES), "lang": rnd.choice(VALUES[:4])}
        # Few distinct scores: many ties; a small id range: repeated documents.
        scores = [float(rnd.randint(0, 3))] if weights else []
        sink.judgement(query, f"doc{rnd.randint(0, rows // 3)}", scores)
    sink.commit(tmp_path / "parsed")
    return ColumnarDataset(tmp_path / "parsed")


@pytest.mark.parametrize(
    ("rows", "seed", "weights", "top_q", "top_k"),
    [
        (500, 1, True, 12, 5),
        (500, 2, False, -1, 1_000),
        (2_000, 3, True, 40, 3),
        (37, 4, True, 1_000, 10),
    ],
)
def test_the_columnar_query_side_equals_gcls_lists(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: int,
    seed: int,
    weights: bool,
    top_q: int,
    top_k: int,
) -> None:
    monkeypatch.setattr(columnar, "BATCH_ROWS", 64)  # many record batches
    ds = build(tmp_path, rows, seed, weights)
    keys, weight_key = ["query", "lang"], "score" if weights else None

    query_ids = gcl.make_query_ids([ds.query_values(c) for c in keys])
    rel = gcl.scale_relevance(ds.scores("score") if weights else None, n_rows=ds.n_rows)
    distinct = len(set(query_ids))
    want_queries = gcl.sample_test_queries(query_ids, rel, top_q=min(top_q, distinct))
    doc_ids = ds.judgement_column("doc_id").to_pylist()
    want_truth = gcl.build_ground_truth(query_ids, doc_ids, rel, want_queries, top_k=top_k)
    want_first = [query_ids.index(q) for q in want_queries]

    side = queries.query_side(ds, keys, weight_key, top_q, top_k)
    assert side.distinct == distinct
    assert side.test_queries == want_queries
    assert side.ground_truth == want_truth
    assert [list(t) for t in side.ground_truth.values()] == [list(t) for t in want_truth.values()]
    assert side.first_rows == want_first
    assert ds.query_rows(side.first_rows) == [
        {c: ds.query_values(c)[i] for c in keys} for i in want_first
    ]


def test_judgement_take_reads_rows_across_batches_in_the_order_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(columnar, "BATCH_ROWS", 16)
    ds = build(tmp_path, 300, 5, True)
    every = ds.judgement_column("doc_id").to_pylist()
    rows = np.array([299, 0, 17, 17, 150, 16, 15])
    assert ds.judgement_take("doc_id", rows) == [every[i] for i in rows]


def test_the_document_ids_kept_for_ranking_hold_no_other_column(tmp_path: Path) -> None:
    """A column read from an IPC file shares its batch's body: the ids kept through the
    ranking must be copied out, or they keep every title and image path alive."""
    import pyarrow as pa

    schema = Schema("evaluation", {"query": "text", "title": "text"}, ["query"], ["title"])
    sink = ColumnarSink(tmp_path / "tmp", schema)
    for d in range(20_000):
        sink.document(f"d{d}", {"title": "long title " * 40})
        sink.judgement({"query": "q"}, f"d{d}", [])
    sink.commit(tmp_path / "parsed")
    ds = ColumnarDataset(tmp_path / "parsed")
    before = pa.total_allocated_bytes()
    ids = ds.doc_ids()
    held = pa.total_allocated_bytes() - before
    assert ids.to_pylist()[:2] == ["d0", "d1"]
    # ~9 B an id with its offset (0.2 MB); the titles are 440 B a row (8.8 MB).
    assert held < 1_000_000, held
    before = pa.total_allocated_bytes()
    column = ds.judgement_column("doc_id")
    assert len(column) == 20_000 and pa.total_allocated_bytes() - before < 1_000_000
