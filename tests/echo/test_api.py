"""The echo surface in-process: create, poll, list, upload, open operation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

# --- scaffold: fixture ---
from .helpers import AUTH, echo_client, echo_settings, poll_item


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with echo_client(echo_settings(tmp_path)) as c:
        yield c


# --- scaffold: end ---


def test_create_then_poll_to_done(client: TestClient) -> None:
    r = client.post("/echo-v1/items", json={"name": "a", "tags": ["x"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["status"] == "pending"
    assert created["url"] == f"http://testserver/echo-v1/items/{created['id']}"
    final = poll_item(client, created["id"])
    assert final["status"] == "done"
    assert final["echoed"] is True
    assert final["progress"] == {"processed": 1, "total": 1}
    assert final["body"] == {"name": "a", "tags": ["x"]}


def test_list_and_prefix_mount(client: TestClient) -> None:
    for name in ("a", "b"):
        assert client.post("/echo-v1/items", json={"name": name}, headers=AUTH).status_code == 200
    listed = client.get("/echo/echo-v1/items", headers=AUTH).json()["items"]
    assert [i["name"] for i in listed] == ["a", "b"]


def test_unknown_item_is_404_in_envelope(client: TestClient) -> None:
    r = client.get("/echo-v1/items/nope", headers=AUTH)
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "No item nope"}}


def test_open_operation_needs_no_credentials(client: TestClient) -> None:
    r = client.get("/echo-v1/open")
    assert r.status_code == 200, r.text
    assert r.json()["tenant"] == ""


def test_upload(client: TestClient) -> None:
    r = client.put(
        "/echo-v1/blobs/a.bin",
        content=b"0123456789",
        headers={**AUTH, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["size"] == 10
