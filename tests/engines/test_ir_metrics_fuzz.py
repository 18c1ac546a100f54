"""The dict front end of the IR metrics on random runs: equal to pytrec_eval and to the
plain-Python references, ties everywhere.

Runs draw scores from a handful of values (most hits share their score with other
docs), ids that sort differently as strings than by insertion, rows in any order, the
query's own id, empty runs, run-only and qrels-only queries, zero and negative labels;
``depth`` is checked against a run cut by hand in BEIR's stable order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaldock.engines.ir_metrics import compute_dicts, evaluate_arrays, evaluate_dicts

from .test_ir_metrics import (
    QrelsDict,
    RunDict,
    assert_close,
    assert_per_query,
    beir_means,
    custom_reference,
    pop_identical,
    pytrec,
    ranked,
)

pytest.importorskip("pytrec_eval")

KS = [1, 2, 3, 5, 10, 20, 50, 100]
IDS = [f"d{i}" for i in range(30)] + ["q1", "D", "d", "d01", "é"]


@st.composite
def runs(draw: Any) -> tuple[QrelsDict, RunDict]:
    n = draw(st.integers(1, 6))
    values = draw(
        st.one_of(
            st.just([0.0, 0.5, 1.0, 1.5]),  # ties in most rows
            # Apart as doubles, tied as C floats: trec_eval ranks float32 scores, BEIR's
            # and GCL's Python sorts the doubles.
            st.just([0.1, 0.1 + 1e-12, 0.1 + 2e-12, 2e-311, 0.0]),
            st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40),
        )
    )
    qrels: QrelsDict = {}
    run: RunDict = {}
    for q in range(n):
        qid = f"q{q}"
        if draw(st.booleans()) or q == 0:
            docs = draw(st.lists(st.sampled_from(IDS), max_size=len(IDS), unique=True))
            run[qid] = {d: draw(st.sampled_from(values)) for d in docs}
        if draw(st.integers(0, 4)) > 0:
            judged = draw(st.lists(st.sampled_from(IDS), max_size=20, unique=True))
            qrels[qid] = {d: draw(st.integers(-1, 3)) for d in judged}
    return qrels, run


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(runs(), st.booleans())
def test_dicts_equal_pytrec_eval(data: tuple[QrelsDict, RunDict], own: bool) -> None:
    qrels, run = data
    ref = pytrec(qrels, pop_identical(run) if own else run, KS)
    result = compute_dicts(qrels, run, KS, ignore_identical_ids=own)
    assert_per_query(result.trec_per_query(), ref)
    if ref:
        means = result.means()
        for group, values in beir_means(ref, KS).items():
            assert_close(means[group], values)


@FUZZ
@given(runs())
def test_dicts_equal_python_references(data: tuple[QrelsDict, RunDict]) -> None:
    qrels, run = data
    if not qrels:
        return  # the references divide by the number of qrels queries
    got = evaluate_dicts(qrels, run, KS)
    for group, values in custom_reference(qrels, pop_identical(run)).items():
        assert_close(got[group], values)


@FUZZ
@given(runs(), st.integers(1, 12))
def test_depth_cuts_in_stable_order(data: tuple[QrelsDict, RunDict], depth: int) -> None:
    qrels, run = data
    cut = {q: {d: docs[d] for d in ranked(docs)[:depth]} for q, docs in run.items()}
    ref = pytrec(qrels, pop_identical(cut), KS)
    got = compute_dicts(qrels, run, KS, depth=depth)
    assert_per_query(got.trec_per_query(), ref)


def test_trec_ranks_float32_scores_like_trec_eval() -> None:
    # 0.1 + 1e-12 and 0.1 are one C float: trec_eval ties them, "b" > "a" ranks first.
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 0.1 + 1e-12, "b": 0.1}}
    assert pytrec(qrels, run, [1])["q"]["P_1"] == 0.0
    assert compute_dicts(qrels, run, [1]).trec_per_query()["q"]["P_1"] == 0.0
    assert evaluate_dicts(qrels, run, [1])["mrr"]["MRR@1"] == 1.0  # BEIR: the doubles
    got = evaluate_arrays(
        np.array([[0, 1]]), np.array([[0.1 + 1e-12, 0.1]]), [{0: 1}], [1], tie_rank=np.arange(2)
    )
    assert got.trec_per_query()["0"]["P_1"] == 0.0
    assert got.means()["mrr"]["MRR@1"] == 1.0
