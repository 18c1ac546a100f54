"""Hostile input gets a 4xx in Marqtune's envelope, never a 5xx, and nothing is stored.

Each case is a repro from the hardening probe (19 answers were 5xx in one run).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from .helpers import AUTH, HYPER, dataset_body


def _upload_url(client: TestClient) -> str:
    created = client.post("/datasets", json=dataset_body(), headers=AUTH)
    assert created.status_code == 200, created.text
    return str(created.json()["uploadUrl"])


def test_deeply_nested_json_is_a_400(client: TestClient) -> None:
    body = b'{"datasetName": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    r = client.post("/datasets", content=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and "nests deeper" in r.json()["message"]


@pytest.mark.parametrize("value", [str(2**63), "9" * 5000])
def test_huge_log_bounds_are_a_400(client: TestClient, value: str) -> None:
    dataset_id = _upload_url(client).split("/datasets/")[1].split("/")[0]
    r = client.get(f"/datasets/{dataset_id}/logs?from={value}", headers=AUTH)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    "query",
    [
        "expires=%C2%B2&signature=abc",
        "expires=" + "9" * 5000 + "&signature=abc",
        "signature=%E2%82%AC&expires=1",
    ],
)
def test_hostile_signed_url_values_are_a_403(client: TestClient, query: str) -> None:
    url = _upload_url(client).split("?")[0]
    r = client.put(f"{url}?{query}", content=b"query,title\n")
    assert r.status_code == 403, r.text


def test_json_as_text_plain_is_a_415(client: TestClient) -> None:
    r = client.post(
        "/datasets",
        content=b'{"datasetName": "x"}',
        headers={**AUTH, "content-type": "text/plain"},
    )
    assert r.status_code == 415 and "application/json" in r.json()["message"]


def test_missing_content_type_still_parses_as_json(client: TestClient) -> None:
    import json

    r = client.post("/datasets", content=json.dumps(dataset_body()).encode(), headers=AUTH)
    assert r.status_code == 200, r.text


def test_many_left_keys_are_refused_by_the_spec(client: TestClient) -> None:
    hyper = {**HYPER, "leftKeys": ["query"] * 60_000, "leftWeights": [1] * 60_000}
    r = client.post(
        "/evaluation",
        json={
            "datasetId": "00000000-0000-0000-0000-000000000000",
            "model": "x",
            "hyperparameters": hyper,
        },
        headers=AUTH,
    )
    assert r.status_code == 400 and "at most 64" in r.json()["message"]


def test_unsigned_upload_is_refused_before_its_body_is_kept(
    client: TestClient, tmp_path: Path
) -> None:
    url = _upload_url(client).split("?")[0]
    r = client.put(url + "?expires=1&signature=00", content=b"x" * (1 << 20))
    assert r.status_code == 403
    leftovers = list((tmp_path / "data").rglob(".incoming-*"))
    assert leftovers == []


def test_declared_size_over_the_limit_is_refused_without_reading(
    make_client, tmp_path: Path
) -> None:
    client = make_client(**{"marqtune.max_upload_bytes": 1024})
    url = _upload_url(client)
    r = client.put(url, content=b"q" * 4096)
    assert r.status_code == 413
    assert list((tmp_path / "data").rglob(".incoming-*")) == []


def test_malformed_host_is_a_400(client: TestClient) -> None:
    r = client.post("/datasets", json=dataset_body(), headers={**AUTH, "host": "evil/x y"})
    assert r.status_code == 400 and "public_url" in r.json()["message"]
