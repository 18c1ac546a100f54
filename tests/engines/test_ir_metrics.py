"""IR metrics engine: exact agreement with pytrec_eval, BEIR's custom metrics, GCL's ERR/RBP
and the Marqtune (GCL ``eval_gs_v1.py``) layer.

References are pytrec_eval itself and plain-Python transcriptions of the definitions
(stable ``sorted(..., reverse=True)`` like BEIR and GCL). Generated runs have score ties,
graded labels (0..3, 1..100, some negative), queries without relevant docs, runs shorter
than the cutoffs, unjudged docs, run-only and qrels-only queries and empty entries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from evaldock.engines.ir_metrics import (
    PAD,
    Qrels,
    compute_dicts,
    evaluate_arrays,
    evaluate_dicts,
    gcl,
    lexicographic_ranks,
)
from evaldock.engines.signature import Signature, evaldock_version

pytrec_eval = pytest.importorskip("pytrec_eval")

KS = [1, 2, 3, 5, 10, 20, 50, 100]
TOL = 1e-9
QrelsDict = dict[str, dict[str, int]]
RunDict = dict[str, dict[str, float]]


# -- data ----------------------------------------------------------------------------


def make_data(
    seed: int, labels: tuple[int, int] = (0, 4), n_queries: int = 150
) -> tuple[QrelsDict, RunDict]:
    """qrels and run with ties, short lists and the awkward queries (by ``q % 10``)."""
    rng = np.random.default_rng(seed)
    qrels: QrelsDict = {}
    run: RunDict = {}
    for q in range(n_queries):
        qid = f"q{q}"
        kind = q % 10
        n_ret = int(rng.integers(0, 70))
        picked = rng.choice(400, size=n_ret, replace=False)
        ids = [f"d{x}" for x in picked]  # "d10" < "d9": codes are not in id order
        if kind == 4 and ids:
            ids[0] = qid  # the query's own id, dropped by ignore_identical_ids
        scores = (rng.integers(0, 12, n_ret) / 4.0).tolist()  # few values: many ties
        if kind != 1:
            run[qid] = dict(zip(ids, scores, strict=True))
        if kind == 0:
            continue  # run-only query
        if kind == 3:
            qrels[qid] = {}
            continue
        n_judged = int(rng.integers(1, 25))
        from_run = [ids[i] for i in rng.choice(max(n_ret, 1), size=min(n_ret, n_judged // 2))]
        others = [f"d{x}" for x in rng.integers(0, 400, n_judged - len(from_run))]
        lo, hi = labels
        lab = rng.integers(lo, hi, n_judged)
        if kind == 2:
            lab = np.zeros(n_judged, dtype=np.int64)  # judged, nothing relevant
        if kind == 5:
            lab[0] = -1  # trec_eval ignores negative gains
        qrels[qid] = {d: int(r) for d, r in zip(from_run + others, lab, strict=True)}
    return qrels, run


def pop_identical(run: RunDict) -> RunDict:
    return {q: {d: s for d, s in docs.items() if d != q} for q, docs in run.items()}


def ranked(docs: Mapping[str, float]) -> list[str]:
    """BEIR/GCL order: Python's stable sort by score, descending."""
    return [d for d, _ in sorted(docs.items(), key=lambda item: item[1], reverse=True)]


# -- plain-Python references -------------------------------------------------------------


def ref_mrr(qrels: QrelsDict, run: RunDict, ks: list[int]) -> dict[str, float]:
    out = dict.fromkeys((f"MRR@{k}" for k in ks), 0.0)
    for q, docs in run.items():
        relevant = {d for d, r in qrels.get(q, {}).items() if r > 0}
        top = ranked(docs)
        for k in ks:
            for rank, d in enumerate(top[:k], start=1):
                if d in relevant:
                    out[f"MRR@{k}"] += 1.0 / rank
                    break
    return {m: v / len(qrels) for m, v in out.items()}


def ref_hole(qrels: QrelsDict, run: RunDict, ks: list[int]) -> dict[str, float]:
    annotated = {d for docs in qrels.values() for d in docs}
    out = dict.fromkeys((f"Hole@{k}" for k in ks), 0.0)
    for docs in run.values():
        top = ranked(docs)
        for k in ks:
            out[f"Hole@{k}"] += sum(d not in annotated for d in top[:k]) / k
    return {m: v / len(qrels) for m, v in out.items()}


def ref_acc(qrels: QrelsDict, run: RunDict, ks: list[int]) -> dict[str, float]:
    out = dict.fromkeys((f"Accuracy@{k}" for k in ks), 0.0)
    for q, docs in run.items():
        relevant = {d for d, r in qrels.get(q, {}).items() if r > 0}
        top = ranked(docs)
        for k in ks:
            out[f"Accuracy@{k}"] += float(any(d in relevant for d in top[:k]))
    return {m: v / len(qrels) for m, v in out.items()}


def ref_err(qrels: QrelsDict, run: RunDict) -> float:
    total = 0.0
    for q, judged in qrels.items():
        if not judged:
            continue  # GCL would fail on max([]); the engine scores 0
        max_rel = max(judged.values())
        err, p = 0.0, 1.0
        for rank, d in enumerate(ranked(run.get(q, {})), start=1):
            r = (2 ** judged.get(d, 0) - 1) / 2**max_rel
            err += p * r / rank
            p *= 1 - r
        total += err
    return total / len(qrels)


def ref_rbp(qrels: QrelsDict, run: RunDict, p: float) -> float:
    total = 0.0
    for q, judged in qrels.items():
        if not judged or max(judged.values()) == 0:
            continue  # GCL would divide by zero; the engine scores 0
        max_rel = max(judged.values())
        rbp = 0.0
        for rank, d in enumerate(ranked(run.get(q, {})), start=1):
            rbp += judged.get(d, 0) / max_rel * p ** (rank - 1)
        total += rbp * (1 - p)
    return total / len(qrels)


def pytrec(qrels: QrelsDict, run: RunDict, ks: list[int]) -> dict[str, dict[str, float]]:
    spec = ",".join(map(str, ks))
    measures = {f"ndcg_cut.{spec}", f"map_cut.{spec}", f"recall.{spec}", f"P.{spec}"}
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


def beir_means(
    per_query: dict[str, dict[str, float]], ks: list[int]
) -> dict[str, dict[str, float]]:
    """BEIR's aggregation: sum over the queries pytrec_eval returns, over their number."""
    out: dict[str, dict[str, float]] = {}
    for group, label, measure in (
        ("ndcg", "NDCG", "ndcg_cut"),
        ("map", "MAP", "map_cut"),
        ("recall", "Recall", "recall"),
        ("precision", "P", "P"),
    ):
        out[group] = {
            f"{label}@{k}": sum(s[f"{measure}_{k}"] for s in per_query.values()) / len(per_query)
            for k in ks
        }
    return out


def assert_close(got: Mapping[str, float], want: Mapping[str, float]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=0, abs_tol=TOL), (key, got[key], value)


def assert_per_query(got: dict[str, dict[str, float]], want: dict[str, dict[str, float]]) -> None:
    assert got.keys() == want.keys()
    for q in want:
        assert_close(got[q], want[q])


def to_arrays(
    qrels: QrelsDict, run: RunDict, seed: int, sort_rows: bool
) -> tuple[dict[str, Any], list[str]]:
    """The same data as the ranker would hand it over: (Q, K) codes into a shuffled corpus
    (so codes are not in id order), padding at random places, qrels by code."""
    rng = np.random.default_rng(seed)
    ids = sorted(
        {d for docs in run.values() for d in docs} | {d for docs in qrels.values() for d in docs}
    )
    corpus = [ids[i] for i in rng.permutation(len(ids))]
    code = {d: i for i, d in enumerate(corpus)}
    qids = list(qrels) + [q for q in run if q not in qrels]
    width = max((len(d) for d in run.values()), default=0) + 3
    doc = np.full((len(qids), width), PAD, dtype=np.int64)
    score = np.full((len(qids), width), np.nan, dtype=np.float64)  # padding: never read
    for i, q in enumerate(qids):
        docs = run.get(q, {})
        items = [(d, docs[d]) for d in ranked(docs)] if sort_rows else list(docs.items())
        cols = np.sort(rng.choice(width, size=len(items), replace=False))
        for c, (d, s) in zip(cols, items, strict=True):
            doc[i, c] = code[d]
            score[i, c] = s
    kwargs = {
        "topk_doc_ids": doc,
        "topk_scores": score,
        "qrels": Qrels.from_rows([{code[d]: r for d, r in qrels.get(q, {}).items()} for q in qids]),
        "tie_rank": lexicographic_ranks(corpus),
        "in_run": np.array([q in run for q in qids]),
        "in_qrels": np.array([q in qrels for q in qids]),
        "query_codes": np.array([code.get(q, PAD) for q in qids]),
    }
    return kwargs, qids


# -- trec_eval measures --------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "labels"), [(0, (0, 4)), (1, (1, 101)), (2, (-1, 4))])
def test_dicts_match_pytrec_eval_per_query_and_mean(seed: int, labels: tuple[int, int]) -> None:
    qrels, run = make_data(seed, labels)
    ref = pytrec(qrels, pop_identical(run), KS)
    result = compute_dicts(qrels, run, KS)
    assert_per_query(result.trec_per_query(), ref)
    means = result.means()
    for group, values in beir_means(ref, KS).items():
        assert_close(means[group], values)


def test_identical_ids_kept_when_asked() -> None:
    qrels, run = make_data(3)
    ref = pytrec(qrels, run, KS)
    assert_per_query(
        compute_dicts(qrels, run, KS, ignore_identical_ids=False).trec_per_query(), ref
    )


@pytest.mark.parametrize("sort_rows", [False, True])
@pytest.mark.parametrize("seed", [4, 5])
def test_arrays_match_pytrec_eval(seed: int, sort_rows: bool) -> None:
    qrels, run = make_data(seed, (0, 4) if seed % 2 == 0 else (1, 101))
    kwargs, qids = to_arrays(qrels, run, seed, sort_rows)
    result = evaluate_arrays(ks=KS, **kwargs)
    result.query_ids = qids
    assert_per_query(result.trec_per_query(), pytrec(qrels, pop_identical(run), KS))


def test_ties_break_by_descending_id_like_trec_eval() -> None:
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 1.0, "b": 1.0}}  # trec_eval ranks "b" first
    assert pytrec(qrels, run, [1])["q"]["P_1"] == 0.0
    assert compute_dicts(qrels, run, [1]).trec_per_query()["q"]["P_1"] == 0.0
    # BEIR's own metrics keep the run's order: "a" first.
    assert evaluate_dicts(qrels, run, [1])["mrr"]["MRR@1"] == 1.0


def test_map_is_normalised_by_all_relevant_docs() -> None:
    qrels = {"q": {f"r{i}": 1 for i in range(10)}}
    run = {"q": {"r0": 3.0, "x": 2.0, "r1": 1.0}}
    per = compute_dicts(qrels, run, [2, 10]).trec_per_query()["q"]
    assert per["map_cut_2"] == pytest.approx(1.0 / 10)
    assert per["map_cut_10"] == pytest.approx((1.0 + 2 / 3) / 10)
    assert per["P_10"] == pytest.approx(0.2)  # k, not the 3 retrieved, divides


# -- BEIR custom metrics, ERR, RBP ----------------------------------------------------------


def custom_reference(qrels: QrelsDict, run: RunDict) -> dict[str, dict[str, float]]:
    return {
        "mrr": ref_mrr(qrels, run, KS),
        "hole": ref_hole(qrels, run, KS),
        "acc": ref_acc(qrels, run, KS),
        "err": {"mERR": ref_err(qrels, run)},
        "rbp": {f"mRBP{n}": ref_rbp(qrels, run, n / 10) for n in (7, 8, 9)},
    }


@pytest.mark.parametrize(("seed", "labels"), [(6, (0, 4)), (7, (1, 101)), (8, (-1, 4))])
def test_custom_metrics_match_python_references(seed: int, labels: tuple[int, int]) -> None:
    qrels, run = make_data(seed, labels)
    want = custom_reference(qrels, pop_identical(run))
    got = evaluate_dicts(qrels, run, KS)
    for group, values in want.items():
        assert_close(got[group], values)
    for sort_rows in (False, True):
        kwargs, _ = to_arrays(qrels, run, seed, sort_rows)
        got_arrays = evaluate_arrays(ks=KS, **kwargs).means()
        for group, values in want.items():
            assert_close(got_arrays[group], values)


def test_err_and_rbp_by_hand() -> None:
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": {"x": 0.9, "a": 0.8, "b": 0.7}}
    out = evaluate_dicts(qrels, run, [1])
    r_a, r_b = 3 / 4, 1 / 4
    assert out["err"]["mERR"] == pytest.approx(r_a / 2 + (1 - r_a) * r_b / 3, abs=1e-15)
    assert out["rbp"]["mRBP9"] == pytest.approx(0.1 * (1.0 * 0.9 + 0.5 * 0.81), abs=1e-15)


def test_selected_measures_only() -> None:
    qrels, run = make_data(9)
    out = evaluate_dicts(qrels, run, KS, measures={"ndcg", "err"})
    assert set(out) == {"ndcg", "err"}
    assert_close(out["ndcg"], evaluate_dicts(qrels, run, KS)["ndcg"])
    with pytest.raises(ValueError, match="unknown measures"):
        evaluate_dicts(qrels, run, KS, measures={"bogus"})


def test_empty_inputs_score_zero() -> None:
    out = evaluate_dicts({}, {}, [1, 10])
    assert out["ndcg"] == {"NDCG@1": 0.0, "NDCG@10": 0.0}
    assert out["err"] == {"mERR": 0.0}
    empty = evaluate_arrays(np.zeros((2, 0), dtype=np.int64), np.zeros((2, 0)), [{}, {1: 1}], [5])
    assert empty.means()["recall"] == {"Recall@5": 0.0}


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="integers"):
        Qrels(np.array([0, 1]), np.array([3]), np.array([1.5]))
    with pytest.raises(ValueError, match="finite"):
        evaluate_arrays(np.array([[0, 1]]), np.array([[np.nan, 1.0]]), [{0: 1}], [1])
    with pytest.raises(ValueError, match="cutoffs"):
        evaluate_dicts({"q": {"a": 1}}, {"q": {"a": 1.0}}, [0])


def test_large_codes_use_the_search_fallback() -> None:
    qrels, run = make_data(10)
    kwargs, _ = to_arrays(qrels, run, 10, sort_rows=False)
    big = 1 << 40  # far beyond any lookup table
    kwargs["topk_doc_ids"] = np.where(
        kwargs["topk_doc_ids"] >= 0, kwargs["topk_doc_ids"] + big, PAD
    )
    q = kwargs["qrels"]
    kwargs["qrels"] = Qrels(q.indptr, q.docs + big, q.rels)
    kwargs["tie_rank"] = None  # codes + big keep their order, but not the ids' order
    kwargs["query_codes"] = np.where(kwargs["query_codes"] >= 0, kwargs["query_codes"] + big, PAD)
    plain, _ = to_arrays(qrels, run, 10, sort_rows=False)
    plain["tie_rank"] = None
    a = evaluate_arrays(ks=KS, **kwargs).means()
    b = evaluate_arrays(ks=KS, **plain).means()
    for group in a:
        assert_close(a[group], b[group])


# -- Marqtune layer ------------------------------------------------------------------------


def test_scale_relevance() -> None:
    assert gcl.scale_relevance([0.0, 5.0, 10.0]).tolist() == [1, 50, 100]
    assert gcl.scale_relevance([2, 3]).tolist() == [1, 100]
    assert gcl.scale_relevance([7.0, 7.0, 7.0]).tolist() == [1, 1, 1]
    assert gcl.scale_relevance(None, n_rows=2).tolist() == [1, 1]
    w = np.random.default_rng(0).random(1000) * 37 - 5
    want = [int((x - w.min()) / (w.max() - w.min()) * 99 + 1) for x in w]
    assert gcl.scale_relevance(w).tolist() == want


def test_query_ids_follow_gcl() -> None:
    sep = "_{!@#~}_"
    assert gcl.make_query_id(["red shirt"]) == f"red shirt{sep}"
    assert gcl.make_query_ids([["a", "b"], ["x", "y"]]) == [f"a{sep}x{sep}", f"b{sep}y{sep}"]


def test_k_values() -> None:
    assert gcl.k_values(1000) == list(gcl.GCL_KS)
    assert gcl.k_values(100)[-1] == 100
    assert 200 not in gcl.k_values(199)


def table(seed: int, n_rows: int = 3000, n_queries: int = 120, n_docs: int = 500) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "query": [f"query {i}" for i in rng.integers(0, n_queries, n_rows)],
        "doc": [f"p{i}" for i in rng.integers(0, n_docs, n_rows)],
        "weight": rng.random(n_rows) * 10,
    }


def test_sampling_is_deterministic_and_weighted() -> None:
    t = table(0)
    qid = gcl.make_query_ids([t["query"]])
    rel = gcl.scale_relevance(t["weight"])
    first = gcl.sample_test_queries(qid, rel, top_q=30)
    assert first == gcl.sample_test_queries(qid, rel, top_q=30)
    assert len(set(first)) == 30
    assert first != gcl.sample_test_queries(qid, rel, top_q=30, seed=2)
    totals: dict[str, int] = {}
    for q, r in zip(qid, rel.tolist(), strict=True):
        totals[q] = totals.get(q, 0) + r
    assert [totals[q] for q in first] == sorted((totals[q] for q in first), reverse=True)
    assert sorted(gcl.sample_test_queries(qid, rel, top_q=-1)) == sorted(set(qid))
    with pytest.raises(ValueError, match="cannot sample"):
        gcl.sample_test_queries(qid, rel, top_q=10_000)


def test_sampling_matches_pandas() -> None:
    pd = pytest.importorskip("pandas")
    t = table(1)
    df = pd.DataFrame(
        {"query_id": gcl.make_query_ids([t["query"]]), "w": gcl.scale_relevance(t["weight"])}
    )
    grouped = df[["query_id", "w"]].groupby("query_id").sum()
    sampled = grouped.sample(n=40, weights=grouped["w"], random_state=1, replace=False)
    want = list(sampled.sort_values(by="w", ascending=False).index)
    assert gcl.sample_test_queries(list(df["query_id"]), df["w"].to_numpy(), top_q=40) == want


def test_ground_truth_sorted_and_cut() -> None:
    gt = gcl.build_ground_truth(
        ["a", "a", "a", "b", "a"], ["d1", "d2", "d3", "d1", "d4"], [5, 9, 1, 3, 7], ["a"], top_k=2
    )
    assert gt == {"a": {"d2": 9, "d4": 7}}
    assert list(gt["a"]) == ["d2", "d4"]


def marqtune_case(seed: int, top_k: int = 50) -> dict[str, Any]:
    t = table(seed)
    qid = gcl.make_query_ids([t["query"]])
    rel = gcl.scale_relevance(t["weight"])
    queries = gcl.sample_test_queries(qid, rel, top_q=40)
    gt = gcl.build_ground_truth(qid, t["doc"], rel, queries, top_k=top_k)
    rng = np.random.default_rng(seed)
    corpus = [f"p{i}" for i in rng.permutation(500)]
    corpus[7] = queries[0]  # a doc whose id is a query id: dropped from that query's run
    k = top_k + 5  # the ranker returned more than top_k: GCL's retrieval would not
    scores = np.round(rng.random((len(queries), 500)), 2).astype(np.float32)
    scores[0, 7] = 2.0  # the query's own doc on top
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {
        "gt": gt,
        "queries": queries,
        "corpus": corpus,
        "idx": idx,
        "scores": np.take_along_axis(scores, idx, axis=1),
        "top_k": top_k,
    }


def test_marqtune_arrays_and_dicts_agree_with_references() -> None:
    c = marqtune_case(2)
    top_k = c["top_k"]
    out = gcl.evaluate(c["gt"], c["queries"], c["idx"], c["scores"], c["corpus"], top_k=top_k)
    run = {
        q: {c["corpus"][d]: float(s) for d, s in zip(row, srow, strict=True)}
        for q, row, srow in zip(c["queries"], c["idx"].tolist(), c["scores"].tolist(), strict=True)
    }
    assert gcl.evaluate_run(c["gt"], run, top_k=top_k) == out

    # Reference: GCL retrieves top_k, then BEIR drops identical ids.
    cut = pop_identical({q: {d: docs[d] for d in ranked(docs)[:top_k]} for q, docs in run.items()})
    assert len(cut[c["queries"][0]]) == top_k - 1
    ks = gcl.k_values(top_k)
    ref = pytrec(c["gt"], cut, ks)
    means = beir_means(ref, ks)
    assert_close(out["mAP"], means["map"])
    assert_close(out["ndcg"], means["ndcg"])
    assert_close(out["precision"], means["precision"])
    assert_close(out["recall"], means["recall"])
    assert_close(out["mrr"], ref_mrr(c["gt"], cut, ks))
    assert_close(out["hole"], ref_hole(c["gt"], cut, ks))
    assert_close(out["acc"], ref_acc(c["gt"], cut, ks))
    s = out["summary"]
    assert list(s) == [f"mAP@{top_k}", f"mrr@{top_k}", "NDCG@10", "mERR", "mRBP7", "mRBP8", "mRBP9"]
    assert s[f"mAP@{top_k}"] == [out["mAP"][f"MAP@{top_k}"]]
    assert s["NDCG@10"] == [out["ndcg"]["NDCG@10"]]
    assert math.isclose(s["mERR"], ref_err(c["gt"], cut), abs_tol=TOL)
    assert math.isclose(s["mRBP8"], ref_rbp(c["gt"], cut, 0.8), abs_tol=TOL)


def test_marqtune_top_k_below_10_is_rejected() -> None:
    with pytest.raises(ValueError, match="top_k"):
        gcl.evaluate_run({"q": {"a": 1}}, {"q": {"a": 1.0}}, top_k=5)


def test_summary_log_line_round_trips() -> None:
    c = marqtune_case(3, top_k=1000)
    out = gcl.evaluate(c["gt"], c["queries"], c["idx"], c["scores"], c["corpus"], top_k=1000)
    summary = out["summary"]
    summary["mERR"] = np.float64(summary["mERR"])  # numpy scalars must not leak into the repr
    msg = "INFO:root:" + gcl.summary_log_line(summary)
    idx = msg.find("{'mAP@1000': ")
    assert idx >= 0
    parsed = json.loads(msg[idx:].replace("'", '"'))
    assert parsed == {k: (v if isinstance(v, list) else float(v)) for k, v in summary.items()}
    assert "np." not in msg


def test_rounded_follows_gcl_output() -> None:
    out = gcl.evaluate_run({"q": {"a": 3, "b": 1}}, {"q": {"b": 0.9, "a": 0.5, "c": 0.1}}, top_k=10)
    r = gcl.rounded(out)
    assert r["ndcg"]["NDCG@10"] == round(out["ndcg"]["NDCG@10"], 5)
    assert r["summary"]["NDCG@10"] == [round(out["summary"]["NDCG@10"][0], 5)]
    assert r["summary"]["mERR"] == out["summary"]["mERR"]  # GCL writes ERR/RBP unrounded
    assert gcl.rounded(out, all_values=True)["summary"]["mERR"] == round(out["summary"]["mERR"], 5)


def test_evaluation_signature_covers_the_ranker_and_the_metrics() -> None:
    ranker = Signature.of("ranker", "mock", model="m", dim=8)
    sig = gcl.signature(ranker, sample=2000, top_k=1000)
    assert sig.format() == (
        f"metrics:{gcl.METRICS_VERSION}|ks:{','.join(map(str, gcl.GCL_KS))}|top_k:1000"
        f"|sample:2000|seed:1|ranker:mock|model:m|dim:8|evaldock:{evaldock_version()}"
    )
    assert Signature.parse(sig.format()) == sig
    assert gcl.signature(ranker.format(), sample=2000, top_k=1000) == sig  # text works too
    small = gcl.signature(ranker, sample=5, top_k=20, seed=7)
    assert small.get("ks") == "1,2,3,4,5,6,8,10,12,20" and small.get("seed") == "7"
    with pytest.raises(ValueError, match="top_k"):
        gcl.signature(ranker, sample=5, top_k=5)
