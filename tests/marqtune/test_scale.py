"""Evaluations in bounded memory: the columnar dataset, chunked embedding into a vector
file, the blocked top k over it, streaming metrics and resume after a kill. Each is held
to today's in-memory evaluation (:func:`ranking.evaluate`), number for number."""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from evaldock.engines.ir_metrics import gcl
from evaldock.engines.ranker import retrieval
from evaldock.engines.ranker.matrix import VectorFile
from evaldock.engines.ranker.mock import MockRanker
from evaldock.engines.ranker.retrieval import RunningTopK, topk_cosine
from evaldock.server.marqtune import columnar, datasets, evaluation, jobs, ranking
from tests.serverproc import ServerProcess

from .helpers import (
    AUTH,
    HYPER,
    SCHEMA,
    TAR_DOCUMENTS,
    TAR_QUERIES,
    TAR_SCHEMA,
    dataset_body,
    tar_bytes,
    wait_for,
)

EVAL = datasets.Schema("evaluation", SCHEMA, ["query"], ["title", "image"])
WORDS = [
    "red",
    "green",
    "blue",
    "black",
    "white",
    "shirt",
    "jeans",
    "hat",
    "boots",
    "dress",
    "coat",
    "scarf",
]


def scale_csv(rows: int, seed: int = 7) -> str:
    """One query per 10 rows, a document per row (the scale benchmark's shape)."""
    rnd = random.Random(seed)
    out = ["query,title,image,score"]
    for i in range(rows):
        q = i // 10
        t = " ".join(rnd.sample(WORDS, 3))
        out.append(
            f"{WORDS[q % 12]} {WORDS[(q * 5 + 1) % 12]} {q},{t} item{i % 700},"
            f"/img/{t.replace(' ', '_')}_{i}.png,{rnd.randint(0, 9)}"
        )
    return "\n".join(out) + "\n"


def columnar_copy(tmp: Path, data: bytes, schema: datasets.Schema = EVAL) -> Path:
    upload = tmp / "upload"
    upload.write_bytes(data)
    folder = tmp / "parsed"
    sink = columnar.ColumnarSink(tmp / ".parsing", schema)
    datasets.parse_into(upload, schema, sink)
    sink.commit(folder)
    return folder


def params(**extra: Any) -> ranking.EvalParams:
    return ranking.check_hyperparameters({**HYPER, **extra}, SCHEMA, ["query"], ["title", "image"])


def today(data: bytes, p: ranking.EvalParams, schema: datasets.Schema = EVAL) -> dict[str, Any]:
    _, parsed, _ = datasets.parse(data, schema)
    assert parsed is not None
    return ranking.evaluate(parsed, p, MockRanker({}), lambda _: None)


def chunked(folder: Path, work: Path, p: ranking.EvalParams, ranker: Any = None) -> dict:
    ranker = ranker or MockRanker({})
    return evaluation.evaluate(folder, work, p, ranker, ranker.signature, lambda _: None)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks, batches, ranking blocks and query passes far below the dataset's size."""
    monkeypatch.setattr(columnar, "BATCH_ROWS", 256)
    monkeypatch.setattr(evaluation, "ENCODE_CHUNK", 512)
    monkeypatch.setattr(evaluation, "RANK_BLOCK", 1024)
    # Query passes of 64, and today's topk_cosine in tiles of 64 queries too: BLAS may
    # round a score differently in another tile shape (the passes are multiples of the
    # tile, as in production, so the float32 scores are the same).
    monkeypatch.setattr(evaluation, "QUERY_BLOCK", 64)
    monkeypatch.setattr(retrieval, "QUERY_BLOCK", 64)
    monkeypatch.setattr(evaluation, "PASS_CELLS", 64 * 50)


def test_columnar_form_holds_what_the_parse_reads(tmp_path: Path) -> None:
    data = scale_csv(700).encode()
    folder = columnar_copy(tmp_path, data)
    _, parsed, stats = datasets.parse(data, EVAL)
    assert parsed is not None and stats["documentCount"] == 700
    ds = columnar.ColumnarDataset(folder)
    assert (ds.n_rows, ds.n_docs) == (700, 700)
    assert ds.query_values("query") == [q["query"] for q in parsed.queries]
    assert ds.scores("score") == parsed.scores["score"]
    assert ds.judgement_column("doc_id").to_pylist() == parsed.doc_ids
    assert ds.doc_ids().to_pylist() == parsed.documents
    assert [r for rows in ds.documents_from() for r in rows] == parsed.fields
    assert [r for rows in ds.documents_from(300) for r in rows] == parsed.fields[300:]
    assert ds.kinds == parsed.kinds


def test_tar_datasets_stream_too(tmp_path: Path) -> None:
    schema = datasets.Schema("evaluation", TAR_SCHEMA, ["query"], ["title", "image"])
    data = tar_bytes({"queries.csv": TAR_QUERIES, "documents.jsonl": TAR_DOCUMENTS})
    folder = columnar_copy(tmp_path, data, schema)
    p = params(topK=10)
    assert chunked(folder, tmp_path / "work", p) == today(data, p, schema)


@pytest.mark.parametrize("extra", [{}, {"topQ": 150, "topK": 30}, {"weightKey": None}])
def test_chunked_evaluation_equals_todays_exactly(
    tmp_path: Path, small_chunks: None, extra: dict[str, Any]
) -> None:
    """Several encode chunks, ranking blocks and query passes; the unrounded numbers are
    today's to the last bit (today's are pytrec_eval's: tests/engines/test_ir_metrics.py)."""
    data = scale_csv(3000).encode()
    p = params(**extra)
    expected = today(data, p)
    got = chunked(columnar_copy(tmp_path, data), tmp_path / "work", p)
    assert json.dumps(got) == json.dumps(expected)


def test_legacy_parsed_json_is_converted(tmp_path: Path) -> None:
    data = scale_csv(200).encode()
    _, parsed, _ = datasets.parse(data, EVAL)
    assert parsed is not None
    (tmp_path / jobs.LEGACY_PARSED).write_bytes(datasets.dump(parsed))
    folder = jobs.columnar(str(tmp_path / "parsed"))
    p = params(topK=10)
    assert chunked(folder, tmp_path / "work", p) == today(data, p)


class Crash(Exception):
    pass


class CountingRanker(MockRanker):
    """The mock ranker, counting the rows it embeds; crashes after ``crash_after`` calls."""

    def __init__(self, crash_after: int | None = None) -> None:
        super().__init__({})
        self.rows = 0
        self.calls = 0
        self.crash_after = crash_after

    def embed_fields(self, rows: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise Crash
        self.calls += 1
        self.rows += len(rows)
        return super().embed_fields(rows, *args, **kwargs)


def test_resumes_from_the_last_finished_chunk(tmp_path: Path, small_chunks: None) -> None:
    data = scale_csv(3000).encode()
    folder = columnar_copy(tmp_path, data)
    p = params()
    work = tmp_path / "work"
    # The queries, then two document chunks of 512; the third dies.
    with pytest.raises(Crash):
        chunked(folder, work, p, CountingRanker(crash_after=3))
    state = json.loads((work / evaluation.STATE).read_text())
    assert state["documents_done"] == 1024
    again = CountingRanker()
    assert chunked(folder, work, p, again) == today(data, p)
    assert again.rows == 300 + 3000 - 1024  # the sampled queries and the documents left
    # Finished: a third run reads output.json and embeds nothing.
    third = CountingRanker()
    assert chunked(folder, work, p, third) == today(data, p)
    assert third.rows == 0


def test_other_hyperparameters_start_over(tmp_path: Path, small_chunks: None) -> None:
    data = scale_csv(1000).encode()
    folder = columnar_copy(tmp_path, data)
    work = tmp_path / "work"
    chunked(folder, work, params())
    other = params(rightWeights=[0.5, 0.5])
    ranker = CountingRanker()
    assert chunked(folder, work, other, ranker) == today(data, other)
    assert ranker.rows == 100 + 1000


def test_running_topk_equals_topk_cosine_on_a_float16_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    q = rng.standard_normal((70, 16)).astype(np.float32)
    d = rng.standard_normal((5000, 16)).astype(np.float32)
    d[100:200] = d[0]  # ties, broken by index
    for dtype in ("float32", "float16"):
        vectors = VectorFile(tmp_path / dtype, len(d), 16, dtype)
        for start in range(0, len(d), 999):
            vectors.write(start, d[start : start + 999])
        stored = np.concatenate([block for _, block in vectors.blocks(777)])
        running = RunningTopK(q, 300, len(d), block=32, doc_block=512)
        for offset, block in vectors.blocks(1024):
            running.add(block, offset)
        expected = topk_cosine(q, stored, 300, block=32, doc_block=512)
        got = running.result()
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_streaming_metrics_equal_gcl_evaluate_over_blocks() -> None:
    from evaldock.engines.ir_metrics.stream import StreamingGcl

    rng = np.random.default_rng(5)
    corpus = [f"d{i}" for i in rng.permutation(400)]
    queries = [f"q{i}" for i in range(90)]
    truth = {
        q: {corpus[int(j)]: int(rng.integers(1, 5)) for j in rng.choice(400, 6, replace=False)}
        for q in queries
    }
    truth["q7"]["not-in-corpus"] = 3
    idx = np.stack([rng.choice(400, 40, replace=False) for _ in queries])
    scores = np.round(rng.random(idx.shape), 1).astype(np.float32)  # many ties
    expected = gcl.evaluate(truth, queries, idx, scores, corpus, top_k=40)
    stream = StreamingGcl(truth, top_k=40)
    for s in range(0, 90, 32):
        stream.add(
            queries[s : s + 32],
            idx[s : s + 32],
            scores[s : s + 32],
            lambda i: [corpus[j] for j in i],
        )
    assert json.dumps(stream.result()) == json.dumps(expected)


def test_a_killed_server_resumes_the_evaluation_from_its_last_chunk(tmp_path: Path) -> None:
    """SIGKILL of the server (its workers die with it) while documents are embedded;
    the restarted server resumes from the last whole chunk and gives the same numbers
    as an evaluation never interrupted."""
    chunk = 1000
    config = tmp_path / "evaldock.toml"
    config.write_text(f"[marqtune]\nencode_chunk = {chunk}\n")
    server = ServerProcess(tmp_path / "data", config=config).start()
    try:
        work = kill_and_resume(server, tmp_path / "data", chunk)
        assert not work.exists()  # removed once the metrics are committed
    finally:
        server.stop()


def kill_and_resume(server: ServerProcess, data: Path, chunk: int, rows: int = 8500) -> Path:
    """On ``server`` (encode_chunk ``chunk``): an evaluation of ``rows`` judgements,
    SIGKILLed once a chunk is embedded and started again; it resumes from a whole chunk
    at or after the one seen done, and its numbers equal a fresh evaluation's. Its work
    folder."""
    base = server.url
    created = httpx.post(f"{base}/datasets", json=dataset_body(), headers=AUTH).json()
    httpx.put(created["uploadUrl"], content=scale_csv(rows).encode()).raise_for_status()
    dataset_id = created["datasetId"]
    wait_for(httpx.get, f"{base}/datasets/{dataset_id}", ("Ready",), timeout=300)
    body = {"datasetId": dataset_id, "model": "ViT-B-32/openai", "hyperparameters": HYPER}
    first = httpx.post(f"{base}/evaluation", json=body, headers=AUTH).json()["evaluationId"]
    work = data / "marqtune" / "work" / first
    deadline = time.monotonic() + 300
    done = 0
    while time.monotonic() < deadline and done < chunk:
        # state.json is written atomically, but its folder is made fresh at the start.
        with contextlib.suppress(FileNotFoundError, ValueError):
            done = json.loads((work / evaluation.STATE).read_text())["documents_done"]
        time.sleep(0.05)
    assert chunk <= done < rows
    server.kill()
    server.start()
    url = f"{base}/evaluation/{first}"
    final = wait_for(httpx.get, url, ("Finished",), timeout=600)
    logs = [line["message"] for line in httpx.get(f"{url}/logs", headers=AUTH).json()]
    resumed = [int(m.split()[1]) for m in logs if m.startswith("Resuming: ")]
    assert resumed and done <= resumed[0] < rows, logs
    assert resumed[0] % chunk == 0
    second = httpx.post(f"{base}/evaluation", json=body, headers=AUTH).json()["evaluationId"]
    fresh = wait_for(httpx.get, f"{base}/evaluation/{second}", ("Finished",), timeout=600)
    assert final["evaluationMetrics"] == fresh["evaluationMetrics"]
    return work
