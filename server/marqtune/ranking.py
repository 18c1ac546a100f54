"""Ranking evaluation: GCL's ``evals/eval_gs_v1.py`` on a parsed dataset, and the checks
of its hyperparameters.

:func:`evaluate` is synchronous and runs in a worker process (the ``evaluate`` task of
:mod:`.jobs`): relevance labels from ``weightKey``, query ids from the left keys,
weighted query sampling, ground truth, embeddings of both sides with the ranker
(``embed_fields``: the weighted sum of each key's normalised embedding, normalised),
cosine top-k, then GCL's ``output.json`` from :mod:`engines.ir_metrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from evaldock.engines.ir_metrics import gcl

from .datasets import ParsedDataset, iter_columns

if TYPE_CHECKING:
    from evaldock.engines.protocols import Ranker

Say = Callable[[str], None]


class HyperparameterInvalid(ValueError):
    """The hyperparameters do not fit the dataset (answered as a 400)."""


@dataclass(frozen=True)
class EvalParams:
    left_keys: list[str]
    left_weights: list[float]
    right_keys: list[str]
    right_weights: list[float]
    weight_key: str | None
    top_q: int = gcl.DEFAULT_TOP_Q
    top_k: int = gcl.DEFAULT_TOP_K


def _weights(hp: Mapping[str, Any], side: str, keys: list[str]) -> list[float]:
    weights = hp.get(f"{side}Weights")
    if weights is None:
        return [1.0] * len(keys)  # not given: every key counts the same
    if len(weights) != len(keys):
        raise HyperparameterInvalid(
            f"{side}Weights has {len(weights)} values but {side}Keys has {len(keys)} keys; "
            "give one weight per key"
        )
    return [float(w) for w in weights]


def check_hyperparameters(
    hp: Mapping[str, Any],
    data_schema: Mapping[str, str],
    query_columns: Sequence[str],
    result_columns: Sequence[str],
) -> EvalParams:
    """Validate against the dataset; the messages name the key and the columns to use."""
    left = [str(k) for k in hp["leftKeys"]]
    right = [str(k) for k in hp["rightKeys"]]
    # Every check is one pass with set/dict lookups: keys.count(k) per key took 45 s for
    # 60,000 keys. The spec bounds the lists as well (maxItems).
    for side, keys, allowed, name in (
        ("leftKeys", left, query_columns, "queryColumns"),
        ("rightKeys", right, result_columns, "resultColumns"),
    ):
        unknown = [k for k in keys if k not in data_schema]
        if unknown:
            raise HyperparameterInvalid(
                f"Unknown columns in {side}: {', '.join(unknown)}. "
                f"The dataset's columns are: {', '.join(data_schema)}"
            )
        allowed_set = set(allowed)
        outside = [k for k in keys if k not in allowed_set]
        if outside:
            raise HyperparameterInvalid(
                f"{side} must be among the dataset's {name} ({', '.join(allowed)}); "
                f"not: {', '.join(outside)}"
            )
        dupes = sorted(k for k, n in Counter(keys).items() if n > 1)
        if dupes:
            raise HyperparameterInvalid(f"{side} repeats {', '.join(dupes)}")
    weight_key = hp.get("weightKey") or None
    if weight_key is not None:
        if weight_key not in data_schema:
            raise HyperparameterInvalid(
                f"Unknown column in weightKey: {weight_key}. "
                f"The dataset's columns are: {', '.join(data_schema)}"
            )
        if data_schema[weight_key] != "score":
            raise HyperparameterInvalid(
                f"weightKey must be a score column; {weight_key} is {data_schema[weight_key]}"
            )
    return EvalParams(
        left_keys=left,
        left_weights=_weights(hp, "left", left),
        right_keys=right,
        right_weights=_weights(hp, "right", right),
        weight_key=weight_key,
        top_q=int(hp.get("topQ") or gcl.DEFAULT_TOP_Q),
        top_k=int(hp.get("topK") or gcl.DEFAULT_TOP_K),
    )


def evaluate(
    ds: ParsedDataset,
    params: EvalParams,
    ranker: Ranker,
    say: Say,
    check_cancelled: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """GCL's ``output.json`` (unrounded) for ``ranker`` on ``ds``."""
    weights = ds.scores.get(params.weight_key) if params.weight_key else None
    relevance = gcl.scale_relevance(weights, n_rows=len(ds.doc_ids))
    query_ids = gcl.make_query_ids(list(iter_columns(ds, params.left_keys)))
    distinct = len(set(query_ids))
    top_q = min(params.top_q, distinct)
    test_queries = gcl.sample_test_queries(query_ids, relevance, top_q=top_q)
    say(
        f"Dataset: {len(ds.doc_ids)} judgements, {distinct} queries, "
        f"{len(ds.documents)} documents; evaluating {len(test_queries)} sampled queries "
        f"(top_q={params.top_q}), top_k={params.top_k}"
    )
    ground_truth = gcl.build_ground_truth(
        query_ids, ds.doc_ids, relevance, test_queries, top_k=params.top_k
    )
    first_row: dict[str, int] = {}
    for i, q in enumerate(query_ids):
        first_row.setdefault(q, i)
    query_rows = [ds.queries[first_row[q]] for q in test_queries]
    check_cancelled()
    say(
        f"Embedding {len(query_rows)} queries: keys {params.left_keys}, "
        f"weights {params.left_weights}"
    )
    query_vectors = ranker.embed_fields(query_rows, params.left_keys, params.left_weights, ds.kinds)
    check_cancelled()
    say(
        f"Embedding {len(ds.documents)} documents: keys {params.right_keys}, "
        f"weights {params.right_weights}"
    )
    doc_vectors = ranker.embed_fields(ds.fields, params.right_keys, params.right_weights, ds.kinds)
    check_cancelled()
    say(f"Retrieving the top {min(params.top_k, len(ds.documents))} documents per query")
    indices, scores = ranker.topk(
        np.asarray(query_vectors, dtype=np.float32),
        np.asarray(doc_vectors, dtype=np.float32),
        params.top_k,
    )
    check_cancelled()
    say("Computing metrics")
    return gcl.evaluate(
        ground_truth, test_queries, indices, scores, ds.documents, top_k=params.top_k
    )
