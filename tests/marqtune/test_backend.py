"""Marqtune's jobs in worker processes: the ranker lives in the worker and stays loaded
there, a task over a limit fails its job with a reason naming the setting while the
server carries on, and deleting a running resource kills its task."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaldock.server.app import create_app
from evaldock.server.marqtune import jobs as marqtune_jobs

from . import tasks
from .conftest import ready_dataset
from .helpers import AUTH, HYPER, dataset_body, wait_for

pytestmark = pytest.mark.inprocess  # each test builds its own app in this process

BASE = "Marqo/ViT-B-32.laion2b_s34b_b79k"


def start(settings_factory: Callable[..., Any], **flags: Any) -> TestClient:
    return TestClient(create_app(settings_factory(**{"server.surfaces": "marqtune", **flags})))


def evaluate(client: TestClient, dataset_id: str) -> str:
    body = {"datasetId": dataset_id, "model": BASE, "hyperparameters": HYPER}
    r = client.post("/evaluation", json=body, headers=AUTH)
    assert r.status_code == 202, r.text
    return str(r.json()["evaluationId"])


def messages(client: TestClient, path: str) -> list[str]:
    return [line["message"] for line in client.get(f"{path}/logs", headers=AUTH).json()]


def large_csv(rows: int) -> str:
    """``rows`` judgements of distinct queries and documents: ~1 s of CPU and ~200 MB for
    the mock ranker at 4,000 (measured), well over the limits the tests set."""
    return "query,title,image,score\n" + "".join(
        f"query {i},title {i} w{i * 7},img/p{i}.png,{i % 5 + 1}\n" for i in range(rows)
    )


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def worker_pid(client: TestClient, path: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in messages(client, path):
            found = re.fullmatch(r"worker pid (\d+)", message)
            if found:
                return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no worker pid in the logs of {path}")


def test_the_ranker_loads_in_the_worker_and_stays_loaded(settings_factory) -> None:
    # No engine at all in the API process: an evaluation reaching for one would fail.
    app = create_app(
        settings_factory(**{"server.surfaces": "marqtune", "jobs.workers": 1}), engines={}
    )
    with TestClient(app) as client:
        dataset_id = ready_dataset(client)
        first, second = (evaluate(client, dataset_id) for _ in range(2))
        for evaluation_id in (first, second):
            done = wait_for(client.get, f"/evaluation/{evaluation_id}", ("Finished", "Failed"))
            assert done["status"] == "Finished", done
            assert "|ranker:mock|" in done["rankerSignature"]
        loading = f"Loading model {BASE}"
        assert loading in messages(client, f"/evaluation/{first}")
        # The same worker ran the second one: the model was still loaded.
        assert loading not in messages(client, f"/evaluation/{second}")
        assert f"Ranker: ranker:mock|model:{BASE}" in " ".join(
            messages(client, f"/evaluation/{second}")
        )


@pytest.mark.parametrize(
    ("flags", "setting"),
    [
        ({"jobs.task_cpu_seconds": 0.5}, "[jobs] task_cpu_seconds"),
        ({"jobs.task_memory_mb": 150}, "[jobs] task_memory_mb"),
    ],
    ids=["cpu", "memory"],
)
def test_an_evaluation_over_a_task_limit_fails_naming_the_setting(
    settings_factory, flags: dict[str, Any], setting: str
) -> None:
    with start(settings_factory) as client:  # the default limits: the dataset is read
        dataset_id = ready_dataset(client, large_csv(4000))
    with start(settings_factory, **flags) as client:  # the same data, tight limits
        evaluation_id = evaluate(client, dataset_id)
        seen = wait_for(client.get, f"/evaluation/{evaluation_id}", ("Running", "Failed"))
        if seen["status"] == "Running":  # the server answers while the task runs
            assert client.get("/datasets", headers=AUTH).status_code == 200
        failed = wait_for(client.get, f"/evaluation/{evaluation_id}", ("Failed", "Finished"))
        assert (failed["status"], failed["secondaryStatus"]) == ("Failed", "Failed")
        reason = failed["failureReason"]
        assert reason.startswith("stopped: the task went over its") and f"raise {setting}" in reason
        assert messages(client, f"/evaluation/{evaluation_id}")[-1] == (
            "Evaluation failed: " + reason
        )
        assert "evaluationMetrics" not in failed
        # The worker was replaced; a small dataset is read under the same limits.
        small = ready_dataset(client)
        assert client.get(f"/datasets/{small}", headers=AUTH).json()["status"] == "Ready"


def test_deleting_a_running_evaluation_kills_its_task(settings_factory, monkeypatch) -> None:
    monkeypatch.setattr(marqtune_jobs, "evaluate", tasks.evaluate_forever)
    with start(settings_factory) as client:
        dataset_id = ready_dataset(client)
        evaluation_id = evaluate(client, dataset_id)
        pid = worker_pid(client, f"/evaluation/{evaluation_id}")
        assert alive(pid)
        assert client.delete(f"/evaluation/{evaluation_id}", headers=AUTH).status_code == 200
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
        runner = client.app.state.ctx.runner  # type: ignore[attr-defined]
        view = client.portal.call(runner.wait, evaluation_id, 10)  # type: ignore[union-attr]
        assert view is not None and view.status == "cancelled"
        gone = client.get(f"/evaluation/{evaluation_id}", headers=AUTH).json()
        assert gone["status"] == "Deleted"


def test_deleting_a_dataset_while_it_is_read_kills_the_parse(
    settings_factory, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(marqtune_jobs, "parse_dataset", tasks.parse_forever)
    with start(settings_factory) as client:
        created = client.post("/datasets", json=dataset_body(), headers=AUTH).json()
        dataset_id = created["datasetId"]
        assert client.put(created["uploadUrl"], content=b"query\nx\n").status_code == 200
        pid = worker_pid(client, f"/datasets/{dataset_id}")
        assert client.delete(f"/datasets/{dataset_id}", headers=AUTH).status_code == 200
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
        runner = client.app.state.ctx.runner  # type: ignore[attr-defined]
        view = client.portal.call(runner.wait, dataset_id, 10)  # type: ignore[union-attr]
        assert view is not None and view.status == "cancelled"
        assert not (tmp_path / "data" / "marqtune" / "datasets" / dataset_id).exists()
    assert os.path.isdir(tmp_path / "data" / "marqtune")


@pytest.mark.parametrize("module", ["backend", "provider", "cli"])
def test_the_api_side_of_the_surface_imports_no_model_library(module: str) -> None:
    """The ranker is built and used only in the workers (jobs.evaluate)."""
    code = (
        f"import sys, evaldock.server.marqtune.{module}; "
        "print(sorted({'torch', 'open_clip', 'PIL'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
