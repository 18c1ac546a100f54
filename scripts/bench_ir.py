"""Benchmark the IR metrics engine against pytrec_eval, and check they agree.

Generates ``--queries`` x ``--docs`` retrieved documents over a ``--corpus`` of ids, with
float32 scores as the ranker returns them (a few ties; ``--decimals 3`` puts ties in every
query, the slow case for dicts) and graded qrels (labels 0..3, some judged documents not
retrieved), then evaluates NDCG/MAP/Recall/P at GCL's cutoffs with
pytrec_eval and with ours, asserts every per-query value and every mean agree (1e-9), and
prints the timings:

* pytrec_eval: ``RelevanceEvaluator`` construction + ``evaluate`` from dicts.
* ours, from dicts: :func:`compute_dicts` on the same dicts: the same four measures, all
  but Hole, and all (MRR/Hole/Accuracy/ERR/RBP too). Only Hole needs every retrieved id
  looked up (a set probe each, as slow as pytrec_eval's own per-document work); the
  others read only the scores and the judged ids.
* ours, from arrays: what the ranker hands over, a (Q, K) doc index matrix and scores,
  qrels as ``{doc index: label}`` rows and the corpus ids (sorted here for trec_eval's
  tie-break), all measures.

``--shape ranx`` is ranx's own benchmark shape instead: 10,000 queries x 100 docs, tie-free
scores, five measures (``ndcg@10 map@100 recall@100 precision@10 mrr@10``; ours computes
its NDCG/MAP/Recall/P/MRR groups at 10 and 100, a superset), and adds ranx (not a project
dependency: ``.venv/bin/pip install ranx``; without it the column is skipped) in the same
run, both warm (numba compiled by a first call):

* ranx from dicts: ``ranx.evaluate(qrels_dict, run_dict, metrics)``;
* ranx prebuilt: ``ranx.evaluate(Qrels, Run, metrics)`` on objects built before the timer,
  the way ranx's own benchmark times it (the harder reference: ours still starts from
  the dicts). The five means must equal ours (1e-9).

Each timing is the best of ``--repeat`` runs (shared machines are noisy).

    .venv/bin/python scripts/bench_ir.py
    .venv/bin/python scripts/bench_ir.py --queries 2000 --docs 100
    .venv/bin/python scripts/bench_ir.py --shape ranx
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytrec_eval

from evaldock.engines.ir_metrics import (
    Qrels,
    RunMetrics,
    compute_dicts,
    evaluate_arrays,
    lexicographic_ranks,
)
from evaldock.engines.ir_metrics.core import MEASURES
from evaldock.engines.ir_metrics.core import TREC_MEASURES as TREC
from evaldock.engines.ir_metrics.gcl import k_values


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def make_run(
    n_queries: int,
    n_docs: int,
    n_corpus: int,
    seed: int = 0,
    decimals: int | None = None,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray, list[dict[int, int]]]:
    """(doc index (Q, K), scores (Q, K) sorted desc with ties by ascending index, qrels).
    ``dtype=np.float64``: no ties (the chance of one in 1M draws is ~1e-4)."""
    rng = np.random.default_rng(seed)
    docs = np.empty((n_queries, n_docs), dtype=np.int64)
    for q in range(n_queries):
        # Distinct docs per row without permuting the whole corpus each time.
        pick = np.unique(rng.integers(0, n_corpus, n_docs + n_docs // 4 + 16))
        while pick.size < n_docs:
            pick = np.union1d(pick, rng.integers(0, n_corpus, n_docs))
        docs[q] = rng.permutation(pick)[:n_docs]
    scores = rng.random((n_queries, n_docs), dtype=dtype)
    if decimals is not None:
        scores = np.round(scores, decimals)
    order = np.lexsort((docs, -scores), axis=1)  # the ranker's order
    docs = np.take_along_axis(docs, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    qrels: list[dict[int, int]] = []
    for q in range(n_queries):
        n_judged = int(rng.integers(1, 50))
        hit = docs[q, rng.integers(0, n_docs, n_judged // 2)]
        miss = rng.integers(0, n_corpus, n_judged - n_judged // 2)
        labels = rng.integers(0, 4, n_judged)
        qrels.append(dict(zip(np.concatenate([hit, miss]).tolist(), labels.tolist(), strict=True)))
    return docs, scores, qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shape", choices=("gcl", "ranx"), default="gcl", help="ranx: its benchmark, ranx too"
    )
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument(
        "--docs", type=int, default=None, help="retrieved per query (1,000; ranx shape: 100)"
    )
    parser.add_argument("--corpus", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--decimals", type=int, default=None, help="round scores (3: ties in every query)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs per timing")
    args = parser.parse_args()
    if args.shape == "ranx":
        bench_ranx_shape(args)
        return
    args.docs = args.docs or 1_000
    ks = k_values(args.docs)
    corpus = [f"doc{i}" for i in range(args.corpus)]
    qids = [f"q{i}" for i in range(args.queries)]

    t_gen, (docs, scores, qrels_idx) = timed(
        lambda: make_run(args.queries, args.docs, args.corpus, args.seed, args.decimals)
    )
    run = {
        q: dict(zip([corpus[d] for d in row], srow, strict=True))
        for q, row, srow in zip(
            qids, docs.tolist(), scores.astype(np.float64).tolist(), strict=True
        )
    }
    qrels = {
        q: {corpus[d]: r for d, r in rel.items()} for q, rel in zip(qids, qrels_idx, strict=True)
    }
    n = args.queries * args.docs
    print(f"{args.queries} queries x {args.docs} docs ({n:,} scored pairs), ks={ks}")
    print(f"generated in {t_gen:.1f}s")

    spec = ",".join(map(str, ks))
    measures = {f"ndcg_cut.{spec}", f"map_cut.{spec}", f"recall.{spec}", f"P.{spec}"}

    def run_pytrec() -> dict[str, dict[str, float]]:
        return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)

    rep = args.repeat
    t_ref, ref = timed(run_pytrec, rep)
    t_same, ours_same = timed(
        lambda: compute_dicts(qrels, run, ks, ignore_identical_ids=False, measures=TREC), rep
    )
    no_hole = [m for m in MEASURES if m != "hole"]
    t_no_hole, _ = timed(
        lambda: compute_dicts(qrels, run, ks, ignore_identical_ids=False, measures=no_hole), rep
    )
    t_dicts, ours_d = timed(lambda: compute_dicts(qrels, run, ks, ignore_identical_ids=False), rep)

    def from_arrays() -> RunMetrics:
        tie = lexicographic_ranks(corpus)
        return evaluate_arrays(docs, scores, Qrels.from_rows(qrels_idx), ks, tie_rank=tie)

    t_arr, ours_a = timed(from_arrays, rep)
    ours_a.query_ids = qids

    worst = 0.0
    runs = (("from dicts, 4", ours_same), ("from dicts, all", ours_d), ("from arrays", ours_a))
    for name, ours in runs:
        per_query = ours.trec_per_query()
        assert per_query.keys() == ref.keys(), f"{name}: different query sets"
        diff = max(abs(v - per_query[q][m]) for q, ms in ref.items() for m, v in ms.items())
        means = ours.means()
        for k in ks:  # BEIR's aggregation: sum over returned queries / their number
            for group, label, measure in (
                ("ndcg", "NDCG", "ndcg_cut"),
                ("map", "MAP", "map_cut"),
                ("recall", "Recall", "recall"),
                ("precision", "P", "P"),
            ):
                mean_ref = sum(s[f"{measure}_{k}"] for s in ref.values()) / len(ref)
                diff = max(diff, abs(means[group][f"{label}@{k}"] - mean_ref))
        print(f"max abs diff vs pytrec_eval ({name}): {diff:.3g}")
        worst = max(worst, diff)
    assert worst <= 1e-9, f"metrics differ from pytrec_eval by {worst}"

    for label, t in (
        ("pytrec_eval (NDCG/MAP/Recall/P)", t_ref),
        ("ours from dicts (NDCG/MAP/Recall/P)", t_same),
        ("ours from dicts (all but Hole)", t_no_hole),
        ("ours from dicts (all, Hole included)", t_dicts),
        ("ours from arrays (all)", t_arr),
    ):
        print(f"{label + ':':40s} {t:7.2f}s")
    for label, t in (
        ("from dicts, same measures", t_same),
        ("from dicts, all but Hole", t_no_hole),
        ("from dicts, all", t_dicts),
        ("from arrays, all", t_arr),
    ):
        print(f"ours is {speed(t_ref, t)} than pytrec_eval ({label})")


RANX_METRICS = {  # ranx's name -> (our group, our key)
    "ndcg@10": ("ndcg", "NDCG@10"),
    "map@100": ("map", "MAP@100"),
    "recall@100": ("recall", "Recall@100"),
    "precision@10": ("precision", "P@10"),
    "mrr@10": ("mrr", "MRR@10"),
}


def bench_ranx_shape(args: argparse.Namespace) -> None:
    """ranx's benchmark: ours from dicts vs ranx (from dicts and prebuilt) and pytrec_eval."""
    n_docs = args.docs or 100
    ks = (10, 100)
    corpus = [f"doc{i}" for i in range(args.corpus)]
    qids = [f"q{i}" for i in range(args.queries)]
    docs, scores, qrels_idx = make_run(
        args.queries, n_docs, args.corpus, args.seed, dtype=np.float64
    )
    run = {
        q: dict(zip([corpus[d] for d in row], srow, strict=True))
        for q, row, srow in zip(qids, docs.tolist(), scores.tolist(), strict=True)
    }
    qrels = {
        q: {corpus[d]: r for d, r in rel.items()} for q, rel in zip(qids, qrels_idx, strict=True)
    }
    print(f"ranx shape: {args.queries} queries x {n_docs} docs, measures {', '.join(RANX_METRICS)}")
    groups = sorted({g for g, _ in RANX_METRICS.values()})
    rep = max(args.repeat, 3)

    def ours() -> RunMetrics:
        return compute_dicts(qrels, run, ks, ignore_identical_ids=False, measures=groups)

    spec = ",".join(map(str, ks))
    trec = {f"ndcg_cut.{spec}", f"map_cut.{spec}", f"recall.{spec}", f"P.{spec}"}
    t_ref, ref = timed(lambda: pytrec_eval.RelevanceEvaluator(qrels, trec).evaluate(run), rep)
    t_ours, result = timed(ours, rep)
    per_query = result.trec_per_query()
    assert per_query.keys() == ref.keys(), "different query sets"
    diff = max(abs(v - per_query[q][m]) for q, ms in ref.items() for m, v in ms.items())
    print(f"max abs diff vs pytrec_eval (per query): {diff:.3g}")
    assert diff <= 1e-9, f"metrics differ from pytrec_eval by {diff}"
    rows = [("pytrec_eval (NDCG/MAP/Recall/P)", t_ref), ("ours from dicts (5 groups)", t_ours)]
    try:
        import ranx
    except ImportError:
        print("ranx not installed (.venv/bin/pip install ranx): ranx columns skipped")
        ranx = None
    if ranx is not None:
        metrics = list(RANX_METRICS)
        ranx.evaluate(qrels, run, metrics)  # numba compiles here, outside the timers
        t_rd, got = timed(lambda: ranx.evaluate(qrels, run, metrics), rep)
        built_qrels, built_run = ranx.Qrels(qrels), ranx.Run(run)

        def prebuilt() -> dict[str, float]:
            return dict(ranx.evaluate(built_qrels, built_run, metrics, save_results_in_run=False))

        t_rp, _ = timed(prebuilt, rep)
        means = result.means()
        worst = max(
            abs(float(v) - means[g][k])
            for (g, k), v in zip(RANX_METRICS.values(), got.values(), strict=True)
        )
        print(f"max abs diff vs ranx (means): {worst:.3g}")
        assert worst <= 1e-9, f"metrics differ from ranx by {worst}"
        rows += [("ranx from dicts (warm)", t_rd), ("ranx prebuilt Qrels/Run (warm)", t_rp)]
    for label, t in rows:
        print(f"{label + ':':40s} {t:7.3f}s")
    print(f"ours is {speed(t_ref, t_ours)} than pytrec_eval")
    if ranx is not None:
        print(f"ours / ranx from dicts: {t_rd / t_ours:.2f}x")
        print(f"ours / ranx prebuilt:   {t_rp / t_ours:.2f}x (target >= 1.2x)")


def speed(reference: float, ours: float) -> str:
    if ours <= reference:
        return f"{reference / ours:.1f}x faster"
    return f"{ours / reference:.1f}x slower"


if __name__ == "__main__":
    main()
