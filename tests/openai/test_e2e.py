"""The OpenAI surface over real HTTP (``evaldock serve`` processes): the official client's
walk in its own environment, and a run cut off by SIGKILL graded after the restart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

from .helpers import AUTH, BASE, CTRL, CTRL_KEY, ROWS, eval_body, poll_run

HERE = Path(__file__).parent


def _has_openai(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import openai"], capture_output=True)
    return probe.returncode == 0


def test_the_official_client_walk(tmp_path: Path, clients_python: str) -> None:
    if not _has_openai(clients_python):
        pytest.skip("the clients' environment lacks openai: pip install openai==3.57.0")
    env = {"EVALDOCK_CONTROL__KEY": CTRL_KEY}
    with ServerProcess(tmp_path / "data", env=env) as server:
        proc = subprocess.run(
            [clients_python, str(HERE / "openai_walk.py"), server.url, CTRL_KEY],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["file"] == {
        "filename": "upload",
        "bytes": out["file"]["bytes"],
        "status": "processed",
    }
    assert out["content"] is True
    assert out["criteria"] == ["Exact", "Fuzzy", "BLEU", "Cosine"]
    assert out["schema_keys"] == ["item", "sample"]
    assert out["created_status"] == "queued"
    assert out["run"]["status"] == "completed"
    assert out["run"]["result_counts"] == {"total": 3, "passed": 1, "failed": 2, "errored": 0}
    assert out["run"]["per_criteria"][:2] == [["Exact", 1, 2], ["Fuzzy", 2, 1]]
    assert out["pass_ids"] == [0] and out["fail_ids"] == [1, 2]
    assert out["item_sample"] == "madrid"
    assert out["report"] is True and out["listed_runs"] == [True]
    generated = out["generated"]
    assert generated["status"] == "completed" and generated["model"] == "gpt-4o-mini"
    assert generated["total"] == 3 and generated["usage"] == [["gpt-4o-mini", 3]]
    assert generated["input"] == ["Answer with the capital only.", "Capital of France?"]
    assert generated["echoes"] is True  # the mock echoes the last message
    assert generated["max_tokens"] == 16 and generated["finish"] == "stop"
    assert out["cancel_finished"] == [400, True]
    assert out["canceled"] == ["canceled", "canceled"]
    # ilike matches "PARIS"; sacreBLEU is case-sensitive: 0.5 * 1 + 0.5 * 0.
    assert out["grader_run"] == pytest.approx(0.5)
    assert out["validated"] == "text_similarity" and out["validate_refused"] == 400
    assert out["deleted"] is True and out["after_delete"] == 404 and out["evals_left"] == []


def test_a_run_cut_off_by_sigkill_is_graded_after_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", env={"EVALDOCK_CONTROL__KEY": CTRL_KEY})
    server.start()
    try:
        url = server.url
        r = httpx.put(f"{url}/_evaldock/jobs/openai/timing", headers=CTRL, json={"mode": "hold"})
        assert r.status_code == 200, r.text
        ev = httpx.post(f"{url}{BASE}/evals", headers=AUTH, json=eval_body()).json()
        source = {"type": "file_content", "content": ROWS * 100}
        run = httpx.post(
            f"{url}{BASE}/evals/{ev['id']}/runs",
            headers=AUTH,
            json={"data_source": {"type": "jsonl", "source": source}},
        ).json()
        assert run["status"] == "queued"
        # One step: claimed and held running, as a job a crash cuts off.
        r = httpx.post(f"{url}/_evaldock/jobs/openai/{run['id']}/advance", headers=CTRL)
        assert r.status_code == 200, r.text
        got = httpx.get(f"{url}{BASE}/evals/{ev['id']}/runs/{run['id']}", headers=AUTH).json()
        assert got["status"] == "in_progress"
        server.kill()
        server.start()
        with httpx.Client(base_url=url, timeout=30) as c:
            final = poll_run(c, ev["id"], run["id"])
        assert final["status"] == "completed"
        assert final["result_counts"] == {"total": 300, "passed": 100, "failed": 200, "errored": 0}
        items = httpx.get(
            f"{url}{BASE}/evals/{ev['id']}/runs/{run['id']}/output_items",
            headers=AUTH,
            params={"limit": 100, "order": "desc"},
        ).json()
        assert items["data"][0]["datasource_item_id"] == 299 and items["has_more"] is True
    finally:
        server.stop()
