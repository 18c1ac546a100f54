"""The control plane on both existing surfaces: guard, reset, journal, faults, timing,
jobs, metrics. In-process; tests/control/test_clients.py drives it through the
official clients over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaldock.server.app import create_app
from tests.marqtune.helpers import AUTH as MQ_AUTH
from tests.marqtune.helpers import dataset_body
from tests.objective.helpers import AUTH, DEMO

KEY = "control-test-key"
CTRL = {"X-Evaldock-Control-Key": KEY}
BOTH = ["objective", "marqtune"]


@pytest.fixture
def app_client(settings_factory) -> Iterator[Any]:
    def make(**flags: Any) -> TestClient:
        base = {"server.surfaces": BOTH, "control.key": KEY}
        client = TestClient(create_app(settings_factory(**{**base, **flags})))
        client.__enter__()
        opened.append(client)
        return client

    opened: list[TestClient] = []
    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(app_client) -> TestClient:
    return app_client()  # type: ignore[no-any-return]


def test_guard_needs_the_key_but_health_version_surfaces_metrics_are_open(client) -> None:
    for path in ("/_evaldock/health", "/_evaldock/version", "/_evaldock/surfaces", "/metrics"):
        assert client.get(path).status_code == 200, path
    r = client.get("/_evaldock/journal")
    assert r.status_code == 401 and "control.key" in r.json()["message"]
    assert (
        client.get("/_evaldock/journal", headers={"X-Evaldock-Control-Key": "x"}).status_code == 401
    )
    assert client.get("/_evaldock/journal", headers=CTRL).status_code == 200


def test_key_is_written_0600_to_the_data_dir(settings_factory, tmp_path) -> None:
    with TestClient(create_app(settings_factory(**{"server.surfaces": BOTH}))) as c:
        key_file = tmp_path / "data" / "control.key"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        key = key_file.read_text().strip()
        assert c.get("/_evaldock/jobs", headers={"X-Evaldock-Control-Key": key}).status_code == 200


def test_open_lifts_the_guard(app_client) -> None:
    client = app_client(**{"control.open": True})
    assert client.get("/_evaldock/journal").status_code == 200


def test_disabled_control_plane_keeps_health(app_client) -> None:
    client = app_client(**{"control.enabled": False})
    assert client.get("/_evaldock/health").status_code == 200
    assert client.get("/_evaldock/journal", headers=CTRL).status_code == 404
    client.post("/v1/evaluations", json=DEMO, headers=AUTH)
    assert "X-Request-Id" not in client.get("/v1/evaluations", headers=AUTH).headers


def _evaluation(client: TestClient, headers: dict[str, str] = AUTH) -> str:
    r = client.post("/v1/evaluations", json=DEMO, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_reset_all_one_surface_or_one_tenant(app_client) -> None:
    client = app_client(**{"auth.objective.keys": ["test", "other"]})
    mine, theirs = _evaluation(client), _evaluation(client, {"Authorization": "Bearer other"})
    dataset = client.post("/datasets", json=dataset_body(), headers=MQ_AUTH).json()["datasetId"]
    r = client.post("/_evaldock/reset", json={"surface": "objective", "key": "other"}, headers=CTRL)
    assert r.json() == {"reset": [{"surface": "objective", "scope": "tenant"}]}
    assert client.get(f"/v1/evaluations/{mine}", headers=AUTH).status_code == 200
    gone = client.get(f"/v1/evaluations/{theirs}", headers={"Authorization": "Bearer other"})
    assert gone.status_code == 404
    client.post("/_evaldock/reset?surface=objective", headers=CTRL)
    assert client.get(f"/v1/evaluations/{mine}", headers=AUTH).status_code == 404
    assert client.get(f"/datasets/{dataset}", headers=MQ_AUTH).status_code == 200
    client.post("/_evaldock/reset", headers=CTRL)
    assert client.get(f"/datasets/{dataset}", headers=MQ_AUTH).status_code == 404
    assert (
        client.post("/_evaldock/reset", json={"surface": "nope"}, headers=CTRL).status_code == 404
    )
    assert client.post("/_evaldock/reset", json={"key": "x"}, headers=CTRL).status_code == 400


def test_journal_records_what_clients_sent_with_secrets_masked(client) -> None:
    evaluation = _evaluation(client)
    client.get(f"/v1/evaluations/{evaluation}", headers=AUTH)
    client.get("/_evaldock/surfaces")  # the control plane is not journalled
    entries = client.get("/_evaldock/journal", headers=CTRL).json()["entries"]
    assert [(e["method"], e["operation"], e["status"]) for e in entries] == [
        ("POST", "create_evaluation", 200),
        ("GET", "get_evaluation", 200),
    ]
    assert entries[0]["headers"]["authorization"] == "****"
    assert '"shirts with stripes"' in entries[0]["body"]
    only = client.get("/_evaldock/journal?operation=get_evaluation", headers=CTRL).json()
    assert len(only["entries"]) == 1
    by_path = client.get("/_evaldock/journal", params={"path": "/v1/evaluations/*"}, headers=CTRL)
    assert len(by_path.json()["entries"]) == 1
    assert client.delete("/_evaldock/journal", headers=CTRL).json() == {"cleared": 2}


def test_signed_url_signatures_are_masked_in_the_journal(client) -> None:
    created = client.post("/datasets", json=dataset_body(), headers=MQ_AUTH).json()
    client.put(created["uploadUrl"], content=b"query,title,image,score\n")
    entry = client.get("/_evaldock/journal?operation=upload_dataset_file", headers=CTRL).json()
    query = entry["entries"][0]["query"]
    signature = created["uploadUrl"].split("signature=")[1]
    assert "signature=" in query and signature not in query


def test_fault_renders_in_the_vendor_envelope_and_is_bounded(client) -> None:
    r = client.post(
        "/_evaldock/faults",
        json={"surface": "objective", "path": "/v1/evaluations", "status": 503, "count": 2},
        headers=CTRL,
    )
    assert r.status_code == 200 and r.json()["remaining"] == 2
    for _ in range(2):
        hit = client.get("/v1/evaluations", headers=AUTH)
        assert hit.status_code == 503 and set(hit.json()) == {"message", "type"}
    assert client.get("/v1/evaluations", headers=AUTH).status_code == 200
    assert client.get("/_evaldock/faults", headers=CTRL).json() == {"faults": []}
    # Marqtune's envelope: a top-level message.
    client.post(
        "/_evaldock/faults", json={"surface": "marqtune", "status": 429, "count": 1}, headers=CTRL
    )
    hit = client.get("/datasets", headers=MQ_AUTH)
    assert hit.status_code == 429 and set(hit.json()) == {"message"}
    # Never on the control plane itself.
    client.post("/_evaldock/faults", json={"surface": "*", "status": 500, "count": 5}, headers=CTRL)
    assert client.get("/_evaldock/faults", headers=CTRL).status_code == 200
    assert client.delete("/_evaldock/faults", headers=CTRL).json() == {"cleared": 1}
    # One fault at a time, by its id; a gone one is a 404 that says where to look.
    one = client.post(
        "/_evaldock/faults", json={"surface": "marqtune", "status": 503, "count": 3}, headers=CTRL
    ).json()
    assert client.delete(f"/_evaldock/faults/{one['id']}", headers=CTRL).json() == {"cleared": 1}
    assert client.get("/datasets", headers=MQ_AUTH).status_code != 503
    gone = client.delete(f"/_evaldock/faults/{one['id']}", headers=CTRL)
    assert gone.status_code == 404 and "GET /_evaldock/faults" in gone.json()["message"]


def test_fault_bounds_are_in_the_spec(client) -> None:
    for body in (
        {"surface": "objective", "count": 101},
        {"surface": "objective", "latency_ms": 6000},
    ):
        assert client.post("/_evaldock/faults", json=body, headers=CTRL).status_code == 400
    unknown = client.post("/_evaldock/faults", json={"surface": "nope"}, headers=CTRL)
    assert unknown.status_code == 404


def test_latency_and_slow_body_faults_still_answer(client) -> None:
    for kind in ("latency", "slow_body"):
        client.post(
            "/_evaldock/faults",
            json={"surface": "objective", "kind": kind, "latency_ms": 50, "count": 1},
            headers=CTRL,
        )
        r = client.get("/v1/evaluations", headers=AUTH)
        assert r.status_code == 200 and "evaluations" in r.json()


def test_hold_and_advance_step_through_the_status_map(client) -> None:
    assert client.put(
        "/_evaldock/jobs/objective/timing", json={"mode": "hold"}, headers=CTRL
    ).json() == {"mode": "hold", "n": 0}
    evaluation = _evaluation(client)
    status = lambda: client.get(f"/v1/evaluations/{evaluation}", headers=AUTH).json()["status"]  # noqa: E731
    assert status() == "accepted"
    assert status() == "accepted"  # held: no worker takes it
    step = client.post(f"/_evaldock/jobs/objective/{evaluation}/advance", headers=CTRL).json()
    assert (step["status"], step["vendor_status"], step["held"]) == ("running", "processing", True)
    assert status() == "processing"
    step = client.post(f"/_evaldock/jobs/objective/{evaluation}/advance", headers=CTRL).json()
    assert (step["status"], step["vendor_status"]) == ("completed", "completed")
    assert status() == "completed"
    again = client.post(f"/_evaldock/jobs/objective/{evaluation}/advance", headers=CTRL)
    assert again.status_code == 409


def test_polls_mode_completes_after_n_reads(client) -> None:
    client.put("/_evaldock/jobs/objective/timing", json={"mode": "polls", "n": 3}, headers=CTRL)
    evaluation = _evaluation(client)
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen.append(client.get(f"/v1/evaluations/{evaluation}", headers=AUTH).json()["status"])
        if seen[-1] == "completed":
            break
        time.sleep(0.02)
    assert seen[-1] == "completed"
    # Held while running until read three times, then judged.
    assert seen.count("processing") >= 2


def test_fail_a_job_with_a_reason(client) -> None:
    client.put("/_evaldock/jobs/marqtune/timing", json={"mode": "hold"}, headers=CTRL)
    created = client.post("/datasets", json=dataset_body(), headers=MQ_AUTH).json()
    client.put(created["uploadUrl"], content=b"query,title,image,score\nq,t,i.png,1\n")
    failed = client.post(
        f"/_evaldock/jobs/marqtune/{created['datasetId']}/fail",
        json={"reason": "disk on fire"},
        headers=CTRL,
    ).json()
    assert (failed["status"], failed["vendor_status"]) == ("failed", ["Failed", "Failed"])
    body = client.get(f"/datasets/{created['datasetId']}", headers=MQ_AUTH).json()
    assert (body["status"], body["failureReason"]) == ("Failed", "disk on fire")
    missing = client.post("/_evaldock/jobs/marqtune/nope/advance", headers=CTRL)
    assert missing.status_code == 404


def test_jobs_list_and_metrics(client) -> None:
    client.put("/_evaldock/jobs/objective/timing", json={"mode": "hold"}, headers=CTRL)
    evaluation = _evaluation(client)
    jobs = client.get("/_evaldock/jobs", headers=CTRL).json()["jobs"]
    assert [(j["surface"], j["id"], j["status"]) for j in jobs] == [
        ("objective", evaluation, "queued")
    ]
    text = client.get("/metrics").text
    labels = 'operation="create_evaluation",status="200",surface="objective"'
    assert "evaldock_requests_total{" + labels + "} 1.0" in text
    assert 'evaldock_jobs{state="queued",surface="objective"} 1.0' in text
    assert "evaldock_queue_depth 1.0" in text
    assert "evaldock_request_seconds_bucket" in text


def test_request_id_is_echoed(client) -> None:
    r = client.get("/v1/evaluations", headers={**AUTH, "X-Request-Id": "abc"})
    assert r.headers["X-Request-Id"] == "abc"
    assert len(client.get("/v1/evaluations", headers=AUTH).headers["X-Request-Id"]) == 32


def test_timing_from_configuration(app_client) -> None:
    client = app_client(**{"control.timing": {"objective": {"mode": "hold"}}})
    timing = client.get("/_evaldock/jobs/objective/timing", headers=CTRL).json()
    assert timing == {"mode": "hold", "n": 0}


def test_qianfan_business_code_fault_at_http_200(settings_factory) -> None:
    settings = settings_factory(**{"server.surfaces": ["qianfan"], "control.key": KEY})
    with TestClient(create_app(settings)) as client:
        client.post(
            "/_evaldock/faults",
            json={"surface": "qianfan", "status": 200, "code": 336100, "message": "busy"},
            headers=CTRL,
        )
        # Faults answer after authentication: an unsigned call still gets IAM's 401.
        assert (
            client.post("/qianfan/wenxinworkshop/modelrepo/eval/detail", json={}).status_code == 401
        )
        fault = client.app.state.control.faults.active()[0]
        body = client.app.state.runtimes[0].provider.errors.injected(200, "busy", fault.code)
        assert body.status_code == 200 and b'"error_code":336100' in body.body


def test_request_latency_buckets_are_cumulative_and_inclusive() -> None:
    from prometheus_client import generate_latest

    from evaldock.server.control.metrics import Metrics

    metrics = Metrics()
    stats = metrics.request_stats
    for seconds in (0.0005, 0.001, 0.003, 20.0):
        stats.observe("objective", "get_evaluation", 200, seconds)
    stats.observe("objective", "get_evaluation", 404, 0.002)
    text = generate_latest(metrics.registry).decode()
    labels = 'operation="get_evaluation",surface="objective"'
    assert f'evaldock_request_seconds_bucket{{le="0.001",{labels}}} 2.0' in text  # le: <=
    assert f'evaldock_request_seconds_bucket{{le="0.005",{labels}}} 4.0' in text
    assert f'evaldock_request_seconds_bucket{{le="10.0",{labels}}} 4.0' in text
    assert f'evaldock_request_seconds_bucket{{le="+Inf",{labels}}} 5.0' in text
    assert f"evaldock_request_seconds_count{{{labels}}} 5.0" in text
    assert (
        'evaldock_requests_total{operation="get_evaluation",status="404",surface="objective"} 1.0'
        in text
    )


def test_fault_list_is_bounded(client) -> None:
    from evaldock.server.control.faults import MAX_FAULTS

    body = {"surface": "objective", "path": "/nowhere", "ttl_seconds": 600}
    for _ in range(MAX_FAULTS):
        assert client.post("/_evaldock/faults", json=body, headers=CTRL).status_code == 200
    over = client.post("/_evaldock/faults", json=body, headers=CTRL)
    assert over.status_code == 400 and "DELETE /_evaldock/faults" in over.json()["message"]
    assert client.get("/v1/evaluations", headers=AUTH).status_code == 200  # none matches
    client.delete("/_evaldock/faults", headers=CTRL)
    assert client.post("/_evaldock/faults", json=body, headers=CTRL).status_code == 200


def test_spent_and_expired_faults_leave_the_list(client) -> None:
    client.post("/_evaldock/faults", json={"surface": "objective", "count": 1}, headers=CTRL)
    short = {"surface": "objective", "path": "/nowhere", "ttl_seconds": 0.1}
    client.post("/_evaldock/faults", json=short, headers=CTRL)
    assert client.get("/v1/evaluations", headers=AUTH).status_code == 500
    time.sleep(0.15)
    assert client.get("/v1/evaluations", headers=AUTH).status_code == 200
    assert client.get("/_evaldock/faults", headers=CTRL).json() == {"faults": []}


def test_journal_masks_control_key_bce_token_and_secret_key(client) -> None:
    client.get(
        "/v1/evaluations?sk=s3cr3t-sk-value",
        headers={**AUTH, **CTRL, "X-Bce-Security-Token": "bce-session-token-value"},
    )
    entry = client.get("/_evaldock/journal", headers=CTRL).json()["entries"][-1]
    shown = str(entry)
    for secret in (KEY, "bce-session-token-value", "s3cr3t-sk-value"):
        assert secret not in shown
    assert entry["query"] == "sk=****"


def test_unrouted_answers_are_journalled(app_client) -> None:
    client = app_client(**{"server.surfaces": ["objective", "oxen"]})
    oxen = {"Authorization": "Bearer test"}
    r = client.get("/api/repos/ox/data/workspaces/w", headers=oxen)
    assert r.status_code == 501
    client.delete("/v1/evaluations", headers=AUTH)  # a method the path does not serve
    for surface, status in (("oxen", 501), ("objective", 405)):
        entries = client.get(f"/_evaldock/journal?surface={surface}", headers=CTRL).json()
        assert [(e["operation"], e["status"]) for e in entries["entries"]] == [("unrouted", status)]
    assert len(client.get("/_evaldock/journal", headers=CTRL).json()["entries"]) == 2


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_fault_keeps_the_connection_usable(tmp_path, status: int) -> None:
    """A 204/304 sent with a body left the body to be read as the next answer's start."""
    import httpx

    from tests.serverproc import ServerProcess

    with (
        ServerProcess(tmp_path / "data", env={"EVALDOCK_CONTROL__KEY": KEY}) as proc,
        httpx.Client(base_url=proc.url) as http,  # one kept-alive connection
    ):
        fault = {"surface": "objective", "status": status, "count": 1}
        assert http.post("/_evaldock/faults", json=fault, headers=CTRL).status_code == 200
        hit = http.get("/v1/evaluations", headers=AUTH)
        assert hit.status_code == status and hit.content == b""
        assert "content-length" not in hit.headers or hit.headers["content-length"] == "0"
        after = http.get("/v1/evaluations", headers=AUTH)
        assert after.status_code == 200 and "evaluations" in after.json()
