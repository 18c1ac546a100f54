"""The Objective surface in-process: shapes, statuses, errors, tenancy, negotiation."""

from __future__ import annotations

import csv
import io

import pytest
from starlette.testclient import TestClient

from evaldock.server.app import create_app

from .helpers import AUTH, DEMO, poll


def _create(client: TestClient, body=DEMO, headers=AUTH) -> dict:
    r = client.post("/v1/evaluations", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.inprocess
def test_create_answers_like_objective(client: TestClient) -> None:
    body = _create(client)
    assert body["status"] == "accepted"
    assert body["id"].startswith("ev_")
    assert body["message"] == "The evaluation has been accepted and processing has started."
    meta = body["metadata"]
    assert meta["eval_name"] == "Evaluations API Demo"
    assert meta["judge"] == meta["anton_version"] == "evaldock-mock-lexical-1"
    assert meta["created_at"].endswith("Z") and len(meta["created_at"]) == 20
    assert body["results"] == f"http://testserver/v1/evaluations/{body['id']}"


def test_poll_to_completion_keeps_input_order(client: TestClient) -> None:
    created = _create(client)
    final = poll(client.get, f"/v1/evaluations/{created['id']}", AUTH)
    assert final["status"] == "completed"
    assert final["message"] == "The evaluation has been completed."
    assert final["metadata"] == created["metadata"]
    assert final["progress"] == {"processed": 3, "total": 3}
    judged = final["judgements"]
    assert [j["query"] for j in judged] == [d["query"] for d in DEMO["data"]]
    assert [j["object_id"] for j in judged] == ["597073001", "597073001", 42]
    assert [j["object"] for j in judged] == [d["object"] for d in DEMO["data"]]
    verdicts = [(j["judgement"]["score"], j["judgement"]["label"]) for j in judged]
    assert verdicts == [(2, "GREAT"), (1, "OK"), (0, "BAD")]
    assert "stripes" in judged[0]["judgement"]["explanation"]
    assert "errors" not in final


@pytest.mark.inprocess
def test_prefixed_mount_serves_the_same_surface(client: TestClient) -> None:
    created = client.post("/objective/v1/evaluations", json=DEMO, headers=AUTH).json()
    assert created["results"].startswith("http://testserver/objective/v1/evaluations/")
    assert client.get(f"/v1/evaluations/{created['id']}", headers=AUTH).status_code == 200


def test_list_is_paginated_newest_first(client: TestClient) -> None:
    ids = [_create(client)["id"] for _ in range(5)]
    page1 = client.get("/v1/evaluations", params={"limit": 2}, headers=AUTH).json()
    assert [e["id"] for e in page1["evaluations"]] == ids[::-1][:2]
    assert page1["pagination"] == {"current_page": 1, "total_pages": 3, "total_records": 5}
    page3 = client.get("/v1/evaluations?page=3&limit=2", headers=AUTH).json()
    assert [e["id"] for e in page3["evaluations"]] == [ids[0]]
    assert set(page3["evaluations"][0]) == {"id", "status", "metadata"}
    beyond = client.get("/v1/evaluations?page=9&limit=2", headers=AUTH).json()
    assert beyond["evaluations"] == [] and beyond["pagination"]["total_records"] == 5
    default = client.get("/v1/evaluations", headers=AUTH).json()
    assert len(default["evaluations"]) == 5


@pytest.mark.inprocess  # httpx refuses to send the malformed headers
@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing"),
        ({"Authorization": "Bearer wrong"}, "wrong"),
        ({"Authorization": "Basic dGVzdDp0ZXN0"}, "scheme"),
        ({"Authorization": "Bearer "}, "empty"),
    ],
)
def test_unauthorized(client: TestClient, headers: dict, why: str) -> None:
    for method, url in [
        ("post", "/v1/evaluations"),
        ("get", "/v1/evaluations"),
        ("get", "/v1/evaluations/ev_x"),
    ]:
        r = client.request(method, url, json=DEMO, headers=headers)
        assert r.status_code == 401, why
        assert r.json()["type"] == "unauthorized"
        assert "API key" in r.json()["message"]


def test_tenants_are_isolated(settings_factory) -> None:
    app = create_app(settings_factory(**{"auth.objective.keys": ["test", "other"]}))
    other = {"Authorization": "Bearer other"}
    with TestClient(app) as client:
        mine = _create(client)["id"]
        theirs = _create(client, headers=other)["id"]
        r = client.get(f"/v1/evaluations/{theirs}", headers=AUTH)
        assert r.status_code == 404
        assert r.json() == {"message": f"Evaluation {theirs} not found.", "type": "not_found"}
        listed = client.get("/v1/evaluations", headers=other).json()
        assert [e["id"] for e in listed["evaluations"]] == [theirs]
        assert client.get(f"/v1/evaluations/{mine}", headers=other).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": []}, "data must contain at least 1 item"),
        ({}, "data is required"),
        ({"data": [{"object": {"a": 1}}]}, "data[0].query is required"),
        ({"data": [{"query": "q", "object": "text"}]}, "data[0].object must be an object"),
        ({"data": [{"query": "q", "object": [1]}]}, "data[0].object must be an object"),
        ({"data": [{"query": "", "object": {}}]}, "data[0].query must not be empty"),
        ({"data": "rows"}, "data must be an array"),
        ([1, 2], "body must be an object"),
        (
            {"data": [{"query": "q", "object": {}}], "configuration": {"eval_name": 3}},
            "configuration.eval_name must be a string",
        ),
    ],
)
def test_bad_requests_store_nothing(client: TestClient, body, message: str) -> None:
    r = client.post("/v1/evaluations", json=body, headers=AUTH)
    assert r.status_code == 400
    assert r.json() == {"message": message, "type": "invalid_request"}
    assert client.get("/v1/evaluations", headers=AUTH).json()["pagination"]["total_records"] == 0


def test_malformed_json_and_bad_query_params(client: TestClient) -> None:
    r = client.post("/v1/evaluations", content=b'{"data": [', headers=AUTH)
    assert r.status_code == 400 and r.json()["message"].startswith("Request body is not valid JSON")
    r = client.get("/v1/evaluations?limit=abc", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["message"] == "query parameter 'limit' must be an integer, got 'abc'"
    r = client.get("/v1/evaluations?limit=1000", headers=AUTH)
    assert r.status_code == 400 and "limit" in r.json()["message"]


def test_item_limit_is_configurable(settings_factory) -> None:
    app = create_app(settings_factory(**{"objective.max_items": 2}))
    with TestClient(app) as client:
        r = client.post("/v1/evaluations", json=DEMO, headers=AUTH)
        assert r.status_code == 400
        assert "at most 2" in r.json()["message"] and "max_items" in r.json()["message"]
        assert client.get("/v1/evaluations", headers=AUTH).json()["evaluations"] == []


def test_oversized_body_is_413(settings_factory) -> None:
    app = create_app(settings_factory(**{"server.max_body_bytes": 100}))
    with TestClient(app) as client:
        r = client.post("/v1/evaluations", json=DEMO, headers=AUTH)
        assert r.status_code == 413 and r.json()["type"] == "too_large"


def test_unknown_routes_and_methods_use_the_envelope(client: TestClient) -> None:
    r = client.delete("/v1/evaluations/ev_x", headers=AUTH)
    assert r.status_code == 405 and r.json()["type"] == "method_not_allowed"
    r = client.get("/v1/evaluations/ev_x/extra", headers=AUTH)
    assert r.status_code == 404 and r.json()["type"] == "not_found"
    r = client.get("/objective/nothing-here")
    assert r.status_code == 404 and r.json()["type"] == "not_found"


def test_csv_and_text_renderings(client: TestClient) -> None:
    created = _create(client)
    poll(client.get, f"/v1/evaluations/{created['id']}", AUTH)
    r = client.get(f"/v1/evaluations/{created['id']}", headers={**AUTH, "Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["index"], row["score"], row["label"]) for row in rows] == [
        ("0", "2", "GREAT"),
        ("1", "1", "OK"),
        ("2", "0", "BAD"),
    ]
    r = client.get(f"/v1/evaluations/{created['id']}", headers={**AUTH, "Accept": "text/plain"})
    assert r.headers["content-type"].startswith("text/plain")
    assert "| shirts with stripes |" in r.text
    r = client.get("/v1/evaluations", headers={**AUTH, "Accept": "text/csv"})
    assert r.text.splitlines()[0] == "id,status,created_at,eval_name,judge"
    r = client.get("/v1/evaluations", headers={**AUTH, "Accept": "application/xml"})
    assert r.headers["content-type"] == "application/json"


def test_every_judgement_carries_object_id(client: TestClient) -> None:
    """Objective's evaluation client (objective-inc/search-evaluator) reads
    judgement["object_id"] for every judged pair: the key is there, null when the
    request item had none, and the request's value (string or integer) otherwise."""
    body = {
        "data": [
            {"query": "striped shirt", "object": {"title": "striped shirt"}},
            {"query": "striped shirt", "object_id": 7, "object": {"title": "boots"}},
            {"query": "boots", "object_id": "b-1", "object": {"title": "boots"}},
        ]
    }
    created = _create(client, body)
    final = poll(client.get, f"/v1/evaluations/{created['id']}", AUTH)
    assert final["status"] == "completed"
    judged = final["judgements"]
    assert all("object_id" in j for j in judged)
    assert [j["object_id"] for j in judged] == [None, 7, "b-1"]
    # What the evaluation client builds from each judgement, row by row.
    rows = [(j["query"], j["object_id"], j["object"], j["judgement"]["score"]) for j in judged]
    assert [r[1] for r in rows] == [None, 7, "b-1"]


@pytest.mark.parametrize(
    ("eval_name", "shown"),
    [
        ("a\x00b", "U+0000"),
        ("invoice\u202efdp.exe", "U+202E"),
        ("line\nforged", "U+000A"),
        ("bad\ufffddecode", "U+FFFD"),
        ("..", "'..'"),
        ("runs\\2024", "backslash"),
        ("../../etc", "'/'"),
    ],
)
def test_eval_names_with_controls_or_paths_are_a_400(
    client: TestClient, eval_name: str, shown: str
) -> None:
    body = {"configuration": {"eval_name": eval_name}, "data": DEMO["data"]}
    r = client.post("/v1/evaluations", json=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "invalid_request"
    assert r.json()["message"].startswith("configuration.eval_name ")
    assert shown in r.json()["message"]
    assert client.get("/v1/evaluations", headers=AUTH).json()["pagination"]["total_records"] == 0


def test_eval_names_in_any_script_are_kept(client: TestClient) -> None:
    for name in ("Evaluations API Demo", "評価 2024-05", "שלום", "recall@10 (v2)"):
        body = {"configuration": {"eval_name": name}, "data": DEMO["data"][:1]}
        assert _create(client, body)["metadata"]["eval_name"] == name
