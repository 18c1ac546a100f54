"""Objective in ``--mode real``: the configured OpenAI-compatible judge when a URL is set,
the embedded similarity judge otherwise; the cache makes a rerun free and identical."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ServerProcess

from .helpers import AUTH, DEMO, poll


def _evaluate(server: ServerProcess) -> dict:
    created = httpx.post(f"{server.url}/v1/evaluations", json=DEMO, headers=AUTH).json()
    return poll(httpx.get, created["results"], AUTH)


def test_served_model_judges_and_cache_makes_reruns_free(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        env = {"EVALDOCK_JUDGE_URLS": fake.url, "EVALDOCK_JUDGE_MODEL": "fake-model"}
        with ServerProcess(tmp_path / "data", mode="real", env=env) as server:
            first = _evaluate(server)
            calls = len(fake.requests)
            second = _evaluate(server)
        assert first["status"] == "completed"
        assert first["metadata"]["judge"] == "openai:fake-model"
        assert [j["judgement"]["score"] for j in first["judgements"]] == [2, 1, 0]
        assert calls == 3
        assert len(fake.requests) == calls  # the rerun was answered from the cache
        assert [j["judgement"] for j in second["judgements"]] == [
            j["judgement"] for j in first["judgements"]
        ]


def test_judge_failures_become_item_errors(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        fake.script.extend(["400"])  # the first pair's request is refused outright
        env = {
            "EVALDOCK_JUDGE_URLS": fake.url,
            "EVALDOCK_JUDGE_MODEL": "fake-model",
            "EVALDOCK_OBJECTIVE__CONCURRENCY": "1",
        }
        with ServerProcess(tmp_path / "data", mode="real", env=env) as server:
            final = _evaluate(server)
    assert final["status"] == "error"
    assert final["errors"][0]["index"] == 0 and "HTTP 400" in final["errors"][0]["message"]
    assert final["judgements"][0]["judgement"] is None
    assert final["judgements"][1]["judgement"]["score"] == 1


def test_unreachable_judge_stops_start_up(tmp_path: Path) -> None:
    env = {"EVALDOCK_JUDGE_URLS": "http://127.0.0.1:9/v1", "EVALDOCK_JUDGE_MODEL": "m"}
    server = ServerProcess(tmp_path / "data", mode="real", env=env)
    with pytest.raises(RuntimeError, match="did not answer GET /models"):
        server.start(timeout=30)


def test_similarity_judge_is_the_offline_default(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    with ServerProcess(tmp_path / "data", mode="real", env={"EVALDOCK_JUDGE_URLS": ""}) as srv:
        final = _evaluate(srv)
        # The model ran in a worker process: the API process never mapped torch.
        assert srv.proc is not None
        maps = Path(f"/proc/{srv.proc.pid}/maps").read_text()
        assert "libtorch" not in maps and "sentence_transformers" not in maps
    assert final["metadata"]["judge"] == "evaldock-similarity-minilm-l6-v2"
    assert final["judgements"][0]["judgement"]["label"] == "GREAT"
    assert final["judgements"][0]["judgement"]["explanation"].startswith("Similarity judgement")
