"""The Objective surface over real HTTP: a real ``evaldock serve`` process on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.serverproc import ServerProcess

from .helpers import AUTH, DEMO, poll


def _pairs(n: int) -> dict:
    return {
        "configuration": {"eval_name": f"{n} pairs"},
        "data": [
            {"query": f"red shirt {i}", "object_id": str(i), "object": {"title": f"shirt {i}"}}
            for i in range(n)
        ],
    }


def test_lifecycle_and_restart(server: ServerProcess) -> None:
    created = httpx.post(f"{server.url}/v1/evaluations", json=DEMO, headers=AUTH).json()
    assert created["results"] == f"{server.url}/v1/evaluations/{created['id']}"
    final = poll(httpx.get, created["results"], AUTH)
    assert final["status"] == "completed"
    listed = httpx.get(f"{server.url}/v1/evaluations?limit=1", headers=AUTH).json()
    assert listed["pagination"] == {"current_page": 1, "total_pages": 1, "total_records": 1}

    server.stop()
    server.start()
    again = httpx.get(created["results"], headers=AUTH).json()
    assert again == final


def test_status_moves_through_processing(tmp_path: Path) -> None:
    # 64 pairs, 4 at a time, 150 ms each: ~2.4 s of processing, long enough to be seen
    # by a poller on a loaded machine (64 at a time finished within one 150 ms step).
    env = {"EVALDOCK_ENGINES__JUDGE__DELAY_MS": "150", "EVALDOCK_OBJECTIVE__CONCURRENCY": "4"}
    with ServerProcess(tmp_path / "data", env=env) as server:
        created = httpx.post(f"{server.url}/v1/evaluations", json=_pairs(64), headers=AUTH).json()
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = httpx.get(created["results"], headers=AUTH).json()
            if not seen or seen[-1] != body["status"]:
                seen.append(body["status"])
            if body["status"] == "completed":
                break
            time.sleep(0.02)
        assert seen[-1] == "completed"
        assert "processing" in seen
        assert seen == [s for s in ("accepted", "processing", "completed") if s in seen]


def _wait_processing(url: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(url, headers=AUTH).json()
        if body["status"] == "processing" and body["progress"]["processed"] > 0:
            return body
        time.sleep(0.02)
    raise AssertionError("never saw the job processing")


def test_sigkill_mid_job_is_resumed_on_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    slow = {"EVALDOCK_ENGINES__JUDGE__DELAY_MS": "300"}
    server = ServerProcess(data, env=slow).start()
    created = httpx.post(f"{server.url}/v1/evaluations", json=_pairs(160), headers=AUTH).json()
    before = _wait_processing(created["results"])
    assert before["progress"]["processed"] < 160
    server.kill()

    with ServerProcess(data) as restarted:
        url = f"{restarted.url}/v1/evaluations/{created['id']}"
        final = poll(httpx.get, url, AUTH)
    assert final["status"] == "completed"
    assert len(final["judgements"]) == 160
    assert [j["object_id"] for j in final["judgements"]] == [str(i) for i in range(160)]
    assert all(j["judgement"]["score"] in (0, 1, 2) for j in final["judgements"])


def test_sigkill_past_max_attempts_fails_with_reason(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"EVALDOCK_ENGINES__JUDGE__DELAY_MS": "300", "EVALDOCK_JOBS__MAX_ATTEMPTS": "1"}
    server = ServerProcess(data, env=env).start()
    created = httpx.post(f"{server.url}/v1/evaluations", json=_pairs(160), headers=AUTH).json()
    _wait_processing(created["results"])
    server.kill()

    with ServerProcess(data, env={"EVALDOCK_JOBS__MAX_ATTEMPTS": "1"}) as restarted:
        url = f"{restarted.url}/v1/evaluations/{created['id']}"
        final = poll(httpx.get, url, AUTH)
    assert final["status"] == "error"
    assert "interrupted by a server restart" in final["errors"][0]["message"]
    # What was judged before the crash is still there.
    assert any(j["judgement"] for j in final["judgements"])
