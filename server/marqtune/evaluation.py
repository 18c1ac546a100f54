"""A ranking evaluation in bounded memory, resumable chunk by chunk (runs in a worker).

:func:`evaluate` gives :func:`.ranking.evaluate`'s answer (GCL's ``output.json``, the same
numbers to the last bit) on a dataset in the columnar form (:mod:`.columnar`), holding at
once: the judgement columns that choose the queries and build the ground truth (Arrow
and numpy, ~70 B a judgement row, freed before the documents are embedded: :mod:`.queries`),
one chunk of documents and its vectors, the document ids (Arrow, ~34 B a document), and
one block of the vector matrix with the running top k.

Steps, under ``work`` (``<data>/marqtune/work/<evaluation id>/``):

1. queries: sampling and ground truth as :mod:`.ranking` does them, on Arrow columns
   (:mod:`.queries`); the sampled queries are embedded at once (at most ``topQ``,
   20,000: 40 MB at 512 dimensions);
2. documents: embedded :data:`ENCODE_CHUNK` at a time into ``documents.vectors``
   (:class:`~evaldock.engines.ranker.matrix.VectorFile`); after each chunk is flushed,
   ``state.json`` records the documents done, so a restart (the server or the worker
   killed) resumes from the last finished chunk, as Oxen's parts do;
3. ranking: the blocked top k (:class:`~evaldock.engines.ranker.retrieval.RunningTopK`)
   over the matrix read :data:`RANK_BLOCK` rows at a time, for :func:`query_pass` queries
   per pass;
4. metrics: each pass's per-query metrics (:class:`~evaldock.engines.ir_metrics.stream.
   StreamingGcl`), averaged at the end; ``output.json`` is written beside the state (a
   restart after it returns it at once).

``state.json`` carries a fingerprint of everything the vectors depend on (dataset, keys,
weights, ranker signature, dtype, chunk size); a different one starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evaldock.engines.ir_metrics.stream import StreamingGcl
from evaldock.engines.ranker.matrix import VectorFile
from evaldock.engines.ranker.retrieval import DOC_BLOCK, QUERY_BLOCK, RunningTopK

from . import queries
from .columnar import ColumnarDataset, take

if TYPE_CHECKING:
    from evaldock.engines.protocols import Ranker

    from .ranking import EvalParams

Say = Callable[[str], None]

# Documents embedded per chunk (a restart loses at most one; ``[marqtune] encode_chunk``):
# 16,384 documents are 32 MiB of float32 vectors at 512 dimensions and ~20 MB of Python
# dicts, and embed_fields holds about four vector-sized arrays at once (~130 MB in all).
ENCODE_CHUNK = 16_384
# Matrix rows read per ranking block: 32,768 x 512 float32 is 64 MiB. A multiple of
# DOC_BLOCK, so the score tiles (and the float32 scores) are topk_cosine's.
RANK_BLOCK = 4 * DOC_BLOCK
# Running top-k cells per pass (12 bytes each: 48 MB): 4,096 queries at top_k 1,000, so
# GCL's default 2,000 sampled queries rank in one pass over the matrix.
PASS_CELLS = 4_000_000
# The stored vectors' type. float16 halves the file and the reads, but its rounding
# (2^-11 relative) moves scores by ~1e-4, which reorders near-ties and changed the metrics
# (docs/marqtune.md has the measurement); float32 gives today's numbers exactly.
VECTOR_DTYPE = "float32"
STATE, OUTPUT, VECTORS = "state.json", "output.json", "documents.vectors"


def query_pass(top_k: int) -> int:
    """Queries ranked per pass over the matrix: a multiple of QUERY_BLOCK (the tiles of
    topk_cosine) within :data:`PASS_CELLS`."""
    return max(QUERY_BLOCK, PASS_CELLS // max(top_k, 1) // QUERY_BLOCK * QUERY_BLOCK)


def _write_json(path: Path, value: Any) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".state-")
    with os.fdopen(fd, "w") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(name, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fingerprint(
    folder: Path, params: EvalParams, ranker_signature: str, dim: int, chunk: int
) -> str:
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())
    what = [
        files,
        params.right_keys,
        params.right_weights,
        ranker_signature,
        dim,
        VECTOR_DTYPE,
        chunk,
    ]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()


def evaluate(
    folder: Path,
    work: Path,
    params: EvalParams,
    ranker: Ranker,
    ranker_signature: str,
    say: Say,
    check_cancelled: Callable[[], None] = lambda: None,
    *,
    encode_chunk: int | None = None,
) -> dict[str, Any]:
    """GCL's ``output.json`` (unrounded) for ``ranker`` on the columnar dataset ``folder``;
    documents are embedded ``encode_chunk`` (:data:`ENCODE_CHUNK`) at a time."""
    chunk = encode_chunk or ENCODE_CHUNK
    ds = ColumnarDataset(folder)
    work.mkdir(parents=True, exist_ok=True)
    stamp = fingerprint(folder, params, ranker_signature, ranker.dim, chunk)
    state = _read_json(work / STATE)
    if not isinstance(state, dict) or state.get("fingerprint") != stamp:
        shutil.rmtree(work)
        work.mkdir(parents=True)
        state = {"fingerprint": stamp, "documents_done": 0}
        _write_json(work / STATE, state)
    query = [params.left_keys, params.left_weights, params.top_q, params.top_k, params.weight_key]
    done = _read_json(work / OUTPUT)
    if isinstance(done, dict) and done.get("fingerprint") == stamp and done.get("query") == query:
        say("Results found from before the restart")
        return dict(done["result"])

    test_queries, ground_truth, query_rows = _queries(ds, params, say)
    check_cancelled()
    say(
        f"Embedding {len(query_rows)} queries: keys {params.left_keys}, "
        f"weights {params.left_weights}"
    )
    queries = np.asarray(
        ranker.embed_fields(query_rows, params.left_keys, params.left_weights, ds.kinds),
        dtype=np.float32,
    )
    del query_rows
    check_cancelled()

    vectors = VectorFile(work / VECTORS, ds.n_docs, ranker.dim, VECTOR_DTYPE)
    start = int(state["documents_done"])
    if start:
        say(f"Resuming: {start} of {ds.n_docs} documents were embedded before the restart")
    say(
        f"Embedding {ds.n_docs} documents: keys {params.right_keys}, "
        f"weights {params.right_weights}, {chunk} per chunk"
    )
    _embed_documents(ds, vectors, start, chunk, params, ranker, say, check_cancelled, work, state)

    kk = min(params.top_k, ds.n_docs)
    say(f"Retrieving the top {kk} documents per query")
    doc_ids = ds.doc_ids()
    metrics = StreamingGcl(ground_truth, top_k=params.top_k)
    per_pass = query_pass(params.top_k)
    for qs in range(0, len(test_queries), per_pass):
        running = RunningTopK(
            queries[qs : qs + per_pass], params.top_k, ds.n_docs, block=QUERY_BLOCK
        )
        for offset, block in vectors.blocks(RANK_BLOCK):
            running.add(block, offset)
            check_cancelled()
        indices, scores = running.result()
        del running
        metrics.add(
            test_queries[qs : qs + per_pass],
            indices,
            scores,
            lambda i: take(doc_ids, i),
        )
    say("Computing metrics")
    result = metrics.result()
    _write_json(work / OUTPUT, {"fingerprint": stamp, "query": query, "result": result})
    return result


def _queries(
    ds: ColumnarDataset, params: EvalParams, say: Say
) -> tuple[list[str], dict[str, dict[str, int]], list[dict[str, str]]]:
    """(sampled query ids, ground truth, their query-column values): :mod:`.ranking`'s
    steps on Arrow columns (:mod:`.queries`)."""
    side = queries.query_side(ds, params.left_keys, params.weight_key, params.top_q, params.top_k)
    say(
        f"Dataset: {ds.n_rows} judgements, {side.distinct} queries, "
        f"{ds.n_docs} documents; evaluating {len(side.test_queries)} sampled queries "
        f"(top_q={params.top_q}), top_k={params.top_k}"
    )
    return side.test_queries, side.ground_truth, ds.query_rows(side.first_rows)


def _embed_documents(
    ds: ColumnarDataset,
    vectors: VectorFile,
    start: int,
    size: int,
    params: EvalParams,
    ranker: Ranker,
    say: Say,
    check_cancelled: Callable[[], None],
    work: Path,
    state: dict[str, Any],
) -> None:
    if start >= ds.n_docs:
        return
    chunk: list[dict[str, str]] = []
    chunk_start = start
    reported = start
    step = max(ds.n_docs // 10, size)  # a progress line every ~10%

    def flush() -> None:
        nonlocal chunk, chunk_start, reported
        embedded = ranker.embed_fields(chunk, params.right_keys, params.right_weights, ds.kinds)
        vectors.write(chunk_start, np.asarray(embedded))
        chunk_start += len(chunk)
        chunk = []
        state["documents_done"] = chunk_start
        _write_json(work / STATE, state)
        if chunk_start - reported >= step and chunk_start < ds.n_docs:
            reported = chunk_start
            say(f"Embedded {chunk_start} of {ds.n_docs} documents")
        check_cancelled()

    for rows in ds.documents_from(start):
        while rows:
            take = size - len(chunk)
            chunk.extend(rows[:take])
            rows = rows[take:]
            if len(chunk) >= size:
                flush()
    if chunk:
        flush()
