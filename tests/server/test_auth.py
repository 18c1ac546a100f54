"""server/auth.py against the echo surface: bearer keys, wrong keys, tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from evaldock.server.auth import tenant_of
from tests.echo.helpers import echo_client, echo_settings

KEYS = {"auth.echo.keys": ["alpha", "beta"]}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with echo_client(echo_settings(tmp_path, KEYS)) as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic alpha"},
        {"Authorization": "alpha"},
        {"Authorization": "Bearer test"},  # the dev key is not valid once keys are set
        {"Authorization": "Bearer alph"},
        {"Authorization": "Bearer alphaa"},
        {"x-api-key": "alpha"},
    ],
)
def test_missing_or_wrong_credentials_are_401(client: TestClient, headers: dict) -> None:
    r = client.get("/echo-v1/items", headers=headers)
    assert r.status_code == 401, r.text
    assert r.json() == {"error": {"code": "unauthorized", "message": "Unauthorized"}}


@pytest.mark.parametrize("value", ["Bearer alpha", "bearer alpha", "BEARER  beta ", " Bearer beta"])
def test_bearer_keys_are_accepted(client: TestClient, value: str) -> None:
    r = client.get("/echo-v1/items", headers={"Authorization": value})
    assert r.status_code == 200, r.text


def test_each_key_is_its_own_tenant(client: TestClient) -> None:
    a = client.post("/echo-v1/items", json={"name": "mine"}, headers=_bearer("alpha")).json()
    assert client.get(f"/echo-v1/items/{a['id']}", headers=_bearer("alpha")).status_code == 200
    r = client.get(f"/echo-v1/items/{a['id']}", headers=_bearer("beta"))
    assert r.status_code == 404  # not 403: another tenant's ids do not exist for you
    assert client.get("/echo-v1/items", headers=_bearer("beta")).json() == {"items": []}
    assert [
        i["name"] for i in client.get("/echo-v1/items", headers=_bearer("alpha")).json()["items"]
    ] == ["mine"]


def test_tenant_is_a_digest_per_surface() -> None:
    t = tenant_of("echo", "alpha")
    assert "alpha" not in t and len(t) == 24
    assert t != tenant_of("objective", "alpha") != tenant_of("echo", "beta")


def test_open_operation_ignores_credentials(client: TestClient) -> None:
    assert client.get("/echo-v1/open").status_code == 200
    assert client.get("/echo-v1/open", headers=_bearer("nope")).status_code == 200


def test_dev_key_when_none_configured(tmp_path: Path) -> None:
    with echo_client(echo_settings(tmp_path)) as c:
        assert c.get("/echo-v1/items", headers=_bearer("test")).status_code == 200
        assert c.get("/echo-v1/items", headers=_bearer("alpha")).status_code == 401


def test_keys_from_comma_separated_environment(tmp_path: Path) -> None:
    settings = echo_settings(tmp_path, environ={"EVALDOCK_AUTH__ECHO__KEYS": "k1, k2"})
    with echo_client(settings) as c:
        assert c.get("/echo-v1/items", headers=_bearer("k2")).status_code == 200
        assert c.get("/echo-v1/items", headers=_bearer("k1, k2")).status_code == 401


def test_auth_disabled_is_one_public_tenant(tmp_path: Path) -> None:
    with echo_client(echo_settings(tmp_path, {"auth.echo.enabled": False})) as c:
        created = c.post("/echo-v1/items", json={"name": "shared"})
        assert created.status_code == 200, created.text
        r = c.get(f"/echo-v1/items/{created.json()['id']}", headers=_bearer("whatever"))
        assert r.json()["name"] == "shared"
