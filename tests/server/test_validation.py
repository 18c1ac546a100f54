"""server/validation.py against the echo surface: bounded bodies, messages that name
the field, x-message, parameter coercion and defaults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaldock.server import validation
from tests.echo.helpers import AUTH, echo_client, echo_settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with echo_client(echo_settings(tmp_path)) as c:
        yield c


def _message(client: TestClient, body: Any) -> str:
    r = client.post("/echo-v1/items", json=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    return str(r.json()["error"]["message"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "name is required"),
        ({"name": ""}, "name must not be empty"),
        ({"name": 5}, "name must be a string"),
        ({"name": "x" * 41}, "name: "),
        ({"name": "a", "tags": ["t"] * 6}, "tags must contain at most 5 items"),
        ({"name": "a", "tags": [1]}, "tags[0] must be a string"),
        ({"name": "a", "tags": ["x" * 17]}, "tags[0]: "),
        ({"name": "a", "kind": "odd"}, "kind must be plain or fancy"),  # x-message
        ({"name": "a", "size": -1}, "size: "),
        ({"name": "a", "size": "1"}, "size must be an integer"),
        ({"name": "a", "extra": 1}, "body: Additional properties"),
        ([], "body must be an object"),
    ],
)
def test_body_errors_name_the_field(client: TestClient, body: Any, message: str) -> None:
    assert _message(client, body).startswith(message)


def test_nullable_becomes_json_schema_null(client: TestClient) -> None:
    r = client.post("/echo-v1/items", json={"name": "a", "note": None}, headers=AUTH)
    assert r.status_code == 200, r.text


def test_empty_body_on_required_body_is_400(client: TestClient) -> None:
    r = client.post("/echo-v1/items", content=b"", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Request body is required"


def test_query_parameters_are_coerced_and_defaulted(client: TestClient) -> None:
    for name in "abc":
        client.post("/echo-v1/items", json={"name": name}, headers=AUTH)
    r = client.get("/echo-v1/items?limit=2&verbose=true", headers=AUTH)
    assert r.status_code == 200, r.text
    assert [i["name"] for i in r.json()["items"]] == ["a", "b"]
    assert r.json()["limit"] == 2
    r = client.get("/echo-v1/items", headers=AUTH)
    assert len(r.json()["items"]) == 3 and "limit" not in r.json()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=ten", "query parameter 'limit' must be an integer, got 'ten'"),
        ("limit=0", "limit: "),
        ("limit=101", "limit: "),
        ("verbose=maybe", "query parameter 'verbose' must be true or false, got 'maybe'"),
    ],
)
def test_bad_query_parameters_are_400(client: TestClient, query: str, message: str) -> None:
    r = client.get(f"/echo-v1/items?{query}", headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith(message)


def test_path_parameter_schema_is_checked(client: TestClient) -> None:
    r = client.get(f"/echo-v1/items/{'x' * 65}", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("id: ")


def test_depth_is_iterative_and_bounded() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    # Linear, no recursion: returns as soon as the bound is passed.
    assert validation.depth(deep) == validation.MAX_JSON_DEPTH + 1
    assert validation.depth({"a": [1, {"b": 2}]}) == 3
    assert validation.depth(7) == 0


@pytest.mark.parametrize(
    ("schema", "value", "valid"),
    [
        ({"type": "string"}, "x", True),
        ({"type": "string"}, 3, False),
        ({"type": "integer"}, 3, True),
        ({"type": "integer"}, True, False),  # a bool is an int to Python, not to JSON
        ({"type": "boolean"}, True, True),
        ({"type": "boolean"}, 1, False),
        ({"type": "number"}, 1.5, True),
        ({"type": "string", "maxLength": 2}, "xyz", False),  # more than a type: validator
        ({"type": "integer", "minimum": 1}, 0, False),
    ],
)
def test_plain_type_shortcut_agrees_with_the_validator(
    schema: dict[str, Any], value: Any, valid: bool
) -> None:
    if valid:
        validation.check(schema, value)
    else:
        with pytest.raises(validation.RequestInvalid):
            validation.check(schema, value)
