"""Each lever through the official clients over real HTTP (issue: control plane):
a fault the marqtune client raises as its own error, a held Objective evaluation the
SDK keeps polling until advanced, the journal showing what a client sent."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

HERE = Path(__file__).parent
CTRL = {"X-Evaldock-Control-Key": "walk-key"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    config = tmp_path / "evaldock.toml"
    config.write_text(
        '[control]\nkey = "walk-key"\n[server]\nsurfaces = ["objective", "marqtune"]\n'
    )
    with ServerProcess(tmp_path / "data", config=config) as proc:
        yield proc


def _walk(python: str, *args: str) -> dict:
    proc = subprocess.run(
        [python, str(HERE / "clients_walk.py"), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_marqtune_client_raises_its_own_error_for_a_fault(server, clients_python) -> None:
    fault = {
        "surface": "marqtune",
        "method": "GET",
        "path": "/datasets",
        "status": 503,
        "message": "try again later",
        "count": 1,
    }
    assert httpx.post(server.url + "/_evaldock/faults", json=fault, headers=CTRL).is_success
    seen = _walk(clients_python, "marqtune-fault", server.url)
    assert seen["error"] == ["HTTPError", 503, ["try again later"]]
    assert seen["after"] == {"datasets": []}
    journal = httpx.get(server.url + "/_evaldock/journal?surface=marqtune", headers=CTRL).json()
    statuses = [(e["path"], e["status"]) for e in journal["entries"]]
    assert statuses == [("/datasets", 503), ("/datasets", 200)]
    assert all(e["headers"]["x-api-key"] == "****" for e in journal["entries"])
    assert "python-requests" in journal["entries"][0]["headers"]["user-agent"]


def test_objective_sdk_polls_a_held_evaluation_until_advanced(server, clients_python) -> None:
    httpx.put(server.url + "/_evaldock/jobs/objective/timing", json={"mode": "hold"}, headers=CTRL)
    proc = subprocess.Popen(
        [clients_python, str(HERE / "clients_walk.py"), "objective-held", server.url + "/v1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    evaluation = json.loads(proc.stdout.readline())["id"]
    advance = f"{server.url}/_evaldock/jobs/objective/{evaluation}/advance"
    polled = lambda: [  # noqa: E731
        e
        for e in httpx.get(
            server.url + "/_evaldock/journal?operation=get_evaluation", headers=CTRL
        ).json()["entries"]
    ]
    for _ in range(2):  # each step only after the SDK has seen the current state
        before = len(polled())
        deadline = time.monotonic() + 30
        while len(polled()) < before + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.post(advance, headers=CTRL).is_success
    out, _ = proc.communicate(timeout=60)
    assert json.loads(out.strip().splitlines()[-1])["seen"] == [
        "accepted",
        "processing",
        "completed",
    ]
    entries = polled()
    assert entries[0]["headers"]["authorization"] == "****"
    assert all(e["path"] == f"/v1/evaluations/{evaluation}" for e in entries)
