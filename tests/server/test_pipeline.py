"""server/pipeline.py against the echo surface: size before auth before body, content
types, JSON depth, Host, streamed uploads and their clean-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.echo.helpers import AUTH, echo_client, echo_settings

LIMIT = 4096


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with echo_client(echo_settings(tmp_path, {"server.max_body_bytes": LIMIT})) as c:
        yield c


def _tmp_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "data" / "tmp"
    return sorted(folder.iterdir()) if folder.exists() else []


async def _raw(
    app: Any, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes, int]:
    """One request straight through ASGI; also how many times the app asked for the body."""
    reads = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, payload, reads


def test_declared_length_over_limit_is_413_without_reading(client: TestClient) -> None:
    headers = {**AUTH, "host": "testserver", "content-type": "application/json"}
    headers["content-length"] = str(LIMIT + 1)
    status, payload, reads = client.portal.call(
        _raw, client.app, "POST", "/echo-v1/items", headers, b"{}"
    )
    assert status == 413, payload
    assert b"too_large" in payload and b"max_body_bytes" in payload
    assert reads == 0


def test_declared_length_over_limit_beats_auth(client: TestClient) -> None:
    headers = {"host": "testserver", "content-length": str(10**30)}
    status, _, reads = client.portal.call(_raw, client.app, "PUT", "/echo-v1/blobs/x", headers, b"")
    assert (status, reads) == (413, 0)


def test_streamed_body_over_limit_without_length_is_413(client: TestClient, tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    r = client.put(
        "/echo-v1/blobs/big.bin",
        content=chunks(),
        headers={**AUTH, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 413, r.text
    assert _tmp_files(tmp_path) == []


def test_unauthenticated_upload_is_401_and_writes_nothing(
    client: TestClient, tmp_path: Path
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        headers = {**headers, "host": "testserver", "content-type": "application/octet-stream"}
        status, payload, reads = client.portal.call(
            _raw, client.app, "PUT", "/echo-v1/blobs/a.bin", headers, b"secret" * 100
        )
        assert status == 401, payload
        assert reads == 0
    assert _tmp_files(tmp_path) == []
    # The surface's folder exists from start-up (0700); nothing was stored in it.
    assert not (tmp_path / "data" / "echo" / "blobs").exists()


def test_json_as_text_plain_is_415(client: TestClient) -> None:
    r = client.post(
        "/echo-v1/items",
        content=b'{"name": "a"}',
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"
    assert "application/json" in r.json()["error"]["message"]


def test_json_like_media_type_is_accepted(client: TestClient) -> None:
    r = client.post(
        "/echo-v1/items",
        content=b'{"name": "a"}',
        headers={**AUTH, "Content-Type": "application/vnd.echo+json; charset=utf-8"},
    )
    assert r.status_code == 200, r.text


def test_missing_content_type_parses_as_json(client: TestClient) -> None:
    r = client.post("/echo-v1/items", content=b'{"name": "bare"}', headers=AUTH)
    assert "content-type" not in r.request.headers
    assert r.status_code == 200, r.text
    item = client.get(f"/echo-v1/items/{r.json()['id']}", headers=AUTH).json()
    assert item["name"] == "bare"


@pytest.mark.parametrize("levels", [65, 1000, 5000])
def test_deeply_nested_json_is_400_not_500(tmp_path: Path, levels: int) -> None:
    with echo_client(echo_settings(tmp_path)) as client:
        body = ("[" * levels + "]" * levels).encode()
        r = client.post(
            "/echo-v1/items", content=body, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert r.status_code == 400, r.text
        assert "nests deeper" in r.json()["error"]["message"]
        nested = ('{"name": "a", "note": ' + '{"a": ' * levels + "1" + "}" * levels + "}").encode()
        r = client.post("/echo-v1/items", content=nested, headers=AUTH)
        assert r.status_code == 400, r.text


def test_invalid_json_is_400(client: TestClient) -> None:
    r = client.post("/echo-v1/items", content=b'{"name": ', headers=AUTH)
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]


@pytest.mark.parametrize("host", ["bad host", "a/b", "x:y:z", "evil.com:99999999"])
def test_malformed_host_is_400(client: TestClient, host: str) -> None:
    r = client.get("/echo-v1/open", headers={"host": host})
    assert r.status_code == 400, r.text
    assert "Host header" in r.json()["error"]["message"]


def test_public_url_overrides_host(tmp_path: Path) -> None:
    settings = echo_settings(tmp_path, {"server.public_url": "https://echo.example/"})
    with echo_client(settings) as client:
        r = client.get("/echo-v1/open", headers={"host": "bad host"})
        assert r.status_code == 200, r.text
        assert r.json()["base_url"] == "https://echo.example"


def test_upload_streams_to_temp_file_removed_after_response(
    client: TestClient, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 10
    r = client.put(
        "/echo-v1/blobs/a.bin",
        content=data,
        headers={**AUTH, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["size"] == len(data)
    assert body["raw_body_bytes"] == 0  # nothing buffered in memory
    streamed_to = Path(body["streamed_to"])
    assert streamed_to.parent == tmp_path / "data" / "tmp"
    assert streamed_to.name.startswith(".incoming-")
    assert not streamed_to.exists()
    assert _tmp_files(tmp_path) == []


def test_upload_moved_by_handler_stays(client: TestClient, tmp_path: Path) -> None:
    r = client.put(
        "/echo-v1/blobs/kept.bin?keep=true",
        content=b"keep me",
        headers={**AUTH, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    kept = Path(r.json()["kept"])
    assert kept.read_bytes() == b"keep me"
    assert _tmp_files(tmp_path) == []


def test_upload_rejected_by_validation_is_removed(client: TestClient, tmp_path: Path) -> None:
    r = client.put(
        "/echo-v1/blobs/bad name!",
        content=b"x" * 100,
        headers={**AUTH, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 400, r.text
    assert _tmp_files(tmp_path) == []


class _Recorder:
    def __init__(self, fault_on: str | None = None) -> None:
        self.fault_on = fault_on
        self.calls: list[tuple[str, str, int]] = []

    async def before(self, call: Any, errors: Any) -> Any:
        if call.operation_id == self.fault_on:
            return errors.render(errors.forbidden("fault injected"))
        return None

    def after(self, call: Any, response: Any) -> None:
        self.calls.append((call.operation_id, call.tenant, call.status))


def test_hooks_see_calls_and_can_answer(tmp_path: Path) -> None:
    from evaldock.server.app import create_app
    from tests.echo import SURFACE

    recorder = _Recorder()
    settings = echo_settings(tmp_path)
    with TestClient(
        create_app(settings, engines={}, extra_surfaces=[SURFACE], hooks=[recorder])
    ) as c:
        c.get("/echo-v1/open")
        c.get("/echo-v1/items/x")  # 401: hooks still see it, after auth failed
    assert recorder.calls[0] == ("open_ping", "", 200)
    assert recorder.calls[1][0] == "get_item" and recorder.calls[1][2] == 401
    fault = _Recorder(fault_on="create_item")
    with TestClient(create_app(settings, engines={}, extra_surfaces=[SURFACE], hooks=[fault])) as c:
        r = c.post("/echo-v1/items", json={"name": "a"}, headers=AUTH)
        assert r.status_code == 403
        assert c.get("/echo-v1/items", headers=AUTH).json() == {"items": []}
