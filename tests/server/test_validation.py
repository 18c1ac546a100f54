"""server/validation.py against the echo surface: bounded bodies, messages that name
the field, x-message, parameter coercion and defaults; the compiled validator's messages
against the Python validator's (the reference they keep); the depth bound; body limits
per operation (server/pipeline.py's body_limit, x-max-body-bytes)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaldock.server import validation
from evaldock.server.spec import Operation, load_spec_file, load_specs, parse_spec
from tests.echo import SURFACE
from tests.echo.helpers import AUTH, echo_client, echo_settings

assert SURFACE.spec_file is not None
SURFACE_SPEC = SURFACE.spec_file


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


# -- the compiled validator gives the Python validator's messages --------------------------

# One case per error kind, with the message it had before the validator was compiled (the
# Python ``jsonschema`` path, kept as ``python_message``, is the reference).
KINDS = [
    ({"type": "object", "required": ["a", "b"]}, {"b": 1}, "a is required"),
    ({"type": ["string", "null"]}, 3, "body must be a string or null"),
    ({"enum": ["x", 1, None]}, "y", 'body must be one of: "x", 1, null'),
    ({"const": "x"}, "y", "body: 'x' was expected"),
    ({"maxLength": 3}, "abcd", "body: 'abcd' is too long"),
    ({"minLength": 1}, "", "body must not be empty"),
    ({"minLength": 2}, "a", "body is shorter than 2"),
    ({"pattern": "^[a-z]+$"}, "A1", "body: 'A1' does not match '^[a-z]+$'"),
    ({"minimum": 1}, 0, "body: 0 is less than the minimum of 1"),
    ({"exclusiveMaximum": 1}, 1, "body: 1 is greater than or equal to the maximum of 1"),
    ({"multipleOf": 3}, 7, "body: 7 is not a multiple of 3"),
    ({"maxItems": 0}, [1], "body must contain at most 0 items"),
    ({"minItems": 2}, [1], "body must contain at least 2 items"),
    ({"uniqueItems": True}, [1, 1], "body: [1, 1] has non-unique elements"),
    ({"maxProperties": 1}, {"a": 1, "b": 2}, "body: {'a': 1, 'b': 2} has too many properties"),
    ({"minProperties": 1}, {}, "body: {} should be non-empty"),
    (
        {"additionalProperties": False, "properties": {"a": {}}},
        {"a": 1, "b": 2, "c": 3},
        "body: Additional properties are not allowed ('b', 'c' were unexpected)",
    ),
    (
        {"additionalProperties": False, "patternProperties": {"^x": {}}},
        {"y": 1},
        "body: 'y' does not match any of the regexes: '^x'",
    ),
    (
        {"prefixItems": [{}], "items": False},
        [1, 2, 3],
        "body: Expected at most 1 item but found 2 extra: [2, 3]",
    ),
    ({"propertyNames": {"maxLength": 1}}, {"a": 1, "ab": 1}, "body: 'ab' is too long"),
    ({"dependentRequired": {"a": ["b"]}}, {"a": 1}, "body: 'b' is a dependency of 'a'"),
    (
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        1.5,
        "body: 1.5 is not valid under any of the given schemas",
    ),
    (
        {"oneOf": [{"type": "integer"}, {"minimum": 0}]},
        1,
        "body: 1 is valid under each of {'minimum': 0}, {'type': 'integer'}",
    ),
    ({"not": {"type": "string"}}, "x", "body: 'x' should not be valid under {'type': 'string'}"),
    (
        {"contains": {"type": "string"}},
        [1, 2],
        "body: [1, 2] does not contain items matching the given schema",
    ),
    (
        {"contains": {"type": "string"}, "maxContains": 1},
        ["a", "b"],
        "body: Too many items match the given schema (expected at most 1)",
    ),
    # jsonschema reports a child's false schema at the parent's path.
    ({"properties": {"a": False}}, {"a": 1}, "body: False schema does not allow 1"),
    ({"if": {"required": ["a"]}, "then": {"required": ["b"]}}, {"a": 1}, "b is required"),
    ({"allOf": [{"type": "object"}, {"required": ["z"]}]}, {}, "z is required"),
    # Paths sort as text, shallowest first: data[10] before data[9], a before b.c.
    (
        {"properties": {"data": {"items": {"type": "integer"}}}},
        {"data": [0] * 9 + ["x", "y"]},
        "data[10] must be an integer",
    ),
    (
        {"properties": {"a": {"type": "string"}, "b": {"properties": {"c": {"type": "string"}}}}},
        {"b": {"c": 1}, "a": 1},
        "a must be a string",
    ),
    # Keywords run in sorted order (the Python validator was built from sorted JSON).
    ({"pattern": "^a", "minLength": 10}, "zz", "body is shorter than 10"),
    # x-message: the failing node's own, then the first in an anyOf branch's errors.
    ({"properties": {"k": {"enum": [1], "x-message": "k is 1"}}}, {"k": 2}, "k is 1"),
    (
        {"anyOf": [{"type": "string", "x-message": "a string, please"}, {"type": "integer"}]},
        1.5,
        "a string, please",
    ),
    (
        {"x-message": "outer", "anyOf": [{"type": "string", "x-message": "inner"}]},
        1,
        "outer",
    ),
]


def _check_message(schema: Any, value: Any, prefix: str = "") -> str | None:
    try:
        validation.check(schema, value, prefix)
    except validation.RequestInvalid as exc:
        return exc.message
    return None


@pytest.mark.parametrize(("schema", "value", "message"), KINDS)
def test_every_error_kind_keeps_its_message(schema: Any, value: Any, message: str) -> None:
    assert validation.python_message(schema, value) == message
    assert _check_message(schema, value) == message


def test_parameters_keep_their_prefix() -> None:
    assert _check_message({"type": "integer", "maximum": 5}, 7, "limit") == (
        "limit: 7 is greater than the maximum of 5"
    )


def test_a_final_newline_no_longer_passes_a_pattern_ending_in_dollar() -> None:
    """jsonschema-rs reads patterns as ECMA-262 does, where ``$`` ends the text: Python's
    ``re`` let "abc\\n" pass ``^[a-z]+$``. It is refused, in jsonschema's words."""
    schema = {"type": "string", "pattern": "^[a-z]+$"}
    assert validation.python_message(schema, "abc\n") is None
    assert _check_message(schema, "abc\n", "name") == "name: 'abc\\n' does not match '^[a-z]+$'"


def test_a_schema_the_search_does_not_follow_still_gets_its_message() -> None:
    """unevaluatedProperties: the Python validator explains a small value, the compiled
    one a large value (here in the same words)."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "unevaluatedProperties": False,
    }
    for value in ({"a": "x"}, {"a": 1, "pad": "p"}, {"a": 1, "pad": "p" * 100_000}):
        assert _check_message(schema, value) == validation.python_message(schema, value)


def _random_schema(rng: random.Random, depth: int = 0) -> Any:
    """A schema of the keywords the search follows (none unevaluated*, no $ref)."""
    keys = ["a", "b", "10", "9"]
    if depth and rng.random() < 0.07:
        return rng.choice([True, False])
    leaf = {
        "type": lambda: rng.choice(["object", "array", "string", "integer", ["string", "null"]]),
        "enum": lambda: [rng.choice(["a", 1, None, [1]]) for _ in range(2)],
        "minLength": lambda: rng.choice([1, 2]),
        "maxLength": lambda: rng.choice([0, 1, 3]),
        "pattern": lambda: rng.choice(["^a", "b", "^[a-z]+$"]),
        "minimum": lambda: rng.choice([0, 2.5]),
        "maxItems": lambda: rng.choice([0, 2, 10]),
        "minItems": lambda: rng.choice([1, 3]),
        "uniqueItems": lambda: True,
        "required": lambda: rng.sample(keys, 2),
        "maxProperties": lambda: 2,
        "dependentRequired": lambda: {"a": ["b"]},
    }
    nested = {
        "properties": lambda: {k: _random_schema(rng, depth + 1) for k in rng.sample(keys, 2)},
        "patternProperties": lambda: {"^[0-9]+$": _random_schema(rng, depth + 1)},
        "additionalProperties": lambda: rng.choice([False, _random_schema(rng, depth + 1)]),
        "items": lambda: _random_schema(rng, depth + 1),
        "prefixItems": lambda: [_random_schema(rng, depth + 1)],
        "allOf": lambda: [_random_schema(rng, depth + 1) for _ in range(2)],
        "anyOf": lambda: [_random_schema(rng, depth + 1) for _ in range(2)],
        "oneOf": lambda: [_random_schema(rng, depth + 1) for _ in range(2)],
        "not": lambda: _random_schema(rng, depth + 1),
        "if": lambda: _random_schema(rng, depth + 1),
        "contains": lambda: _random_schema(rng, depth + 1),
        "propertyNames": lambda: {"maxLength": 1, "x-message": "short names"},
    }
    pool = {**leaf, **(nested if depth < 3 else {})}
    schema = {k: pool[k]() for k in rng.sample(sorted(pool), rng.randint(1, 4))}
    if "if" in schema:
        schema["then"] = _random_schema(rng, depth + 1)
    if rng.random() < 0.25:
        schema["x-message"] = f"x{depth}"
    return schema


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(["", "a", "abc", "B", 0, 1, 2.5, True, None])
    if roll < 0.7:
        return [_random_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 3, 11, 12]))]
    keys = rng.sample(["a", "b", "c", "10", "9", "ab"], rng.randint(0, 4))
    return {k: _random_value(rng, depth + 1) for k in keys}


def test_random_schemas_give_the_python_validators_messages() -> None:
    """The search and the Python validator agree on the first error, its path, its words
    and its x-message, over schemas mixing every keyword it follows."""
    rng = random.Random(17)
    compared = 0
    for _ in range(300):
        schema = _random_schema(rng)
        for _ in range(4):
            value = _random_value(rng)
            expected = validation.python_message(schema, value)
            assert _check_message(schema, value) == expected, (schema, value)
            compared += expected is not None
    assert compared > 300  # most values break some rule


def _bodies() -> Iterator[Any]:
    yield from ({}, [], "x", {"unknown": 1}, {"data": [{}], "name": 5, "cases": [1]})


def test_every_shipped_body_schema_gives_the_same_messages() -> None:
    for spec in load_specs():
        for op in spec.operations:
            if op.body_schema is None:
                continue
            validation.prepare(op)
            for value in _bodies():
                expected = validation.python_message(op.body_schema, value)
                assert _check_message(op.body_schema, value) == expected, op.operation_id


def test_an_error_deep_in_a_large_body_is_found_in_path_order() -> None:
    """200,001 items, two broken: the one whose index sorts first as text is named."""
    schema = {
        "type": "object",
        "properties": {"data": {"type": "array", "items": {"type": "object", "required": ["q"]}}},
    }
    data: list[dict[str, Any]] = [{"q": 1}] * 200_001
    data[9] = data[150_000] = {}
    assert _check_message(schema, {"data": data}) == "data[150000].q is required"
    data[150_000] = {"q": 1}
    assert _check_message(schema, {"data": data}) == "data[9].q is required"


def test_a_schema_that_does_not_compile_stops_the_start_up() -> None:
    spec = parse_spec(
        "openapi: 3.0.3\npaths:\n  /x:\n    post:\n      operationId: make\n"
        "      requestBody:\n        content:\n          application/json:\n"
        "            schema: {type: string, pattern: '('}\n",
        "bad.yaml",
    )
    with pytest.raises(ValueError, match="operation make: the body schema"):
        validation.prepare(spec.operations[0])


# -- depth -----------------------------------------------------------------------------------


def _nested(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def test_the_compiled_depth_bound_agrees_with_depth() -> None:
    rng = random.Random(3)
    for levels in range(validation.MAX_JSON_DEPTH - 2, validation.MAX_JSON_DEPTH + 3):
        value = _nested(levels)
        assert validation.too_deep(value) is (validation.depth(value) > validation.MAX_JSON_DEPTH)
    for _ in range(200):
        value = _random_value(rng)
        assert not validation.too_deep(value)


def test_a_body_deeper_than_the_bound_is_400(client: TestClient) -> None:
    deep = {"name": "a", "tags": _nested(validation.MAX_JSON_DEPTH)}  # one level more
    r = client.post("/echo-v1/items", json=deep, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        f"Request body nests deeper than {validation.MAX_JSON_DEPTH} levels; flatten it"
    )
    within = {"name": "a", "tags": _nested(validation.MAX_JSON_DEPTH - 1)}
    assert "nests deeper" not in _message(client, within)


# -- body limits per operation ---------------------------------------------------------------

JSON_LIMIT = 1000


@pytest.fixture
def small(tmp_path: Path) -> Iterator[TestClient]:
    flags = {"server.max_json_body_bytes": JSON_LIMIT, "server.max_body_bytes": 8000}
    with echo_client(echo_settings(tmp_path, flags)) as c:
        yield c


def _item(size: int) -> bytes:
    """A valid create_item body of exactly ``size`` bytes."""
    return b'{"name": "a", "note": "' + b"n" * (size - 25) + b'"}'


def _post(client: TestClient, body: bytes | Iterator[bytes], **headers: str) -> Any:
    headers = {**AUTH, "Content-Type": "application/json", **headers}
    return client.post("/echo-v1/items", content=body, headers=headers)


def test_a_json_body_over_its_limit_is_413_by_content_length(small: TestClient) -> None:
    assert len(_item(JSON_LIMIT)) == JSON_LIMIT
    assert _post(small, _item(JSON_LIMIT)).status_code != 413
    r = _post(small, _item(JSON_LIMIT + 1))
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "too_large"
    assert str(JSON_LIMIT) in r.json()["error"]["message"]
    assert "[server] max_json_body_bytes" in r.json()["error"]["message"]  # the one to raise


def test_a_chunked_json_body_over_its_limit_is_413(small: TestClient) -> None:
    def chunks(total: int) -> Iterator[bytes]:
        body = _item(total)
        yield from (body[i : i + 100] for i in range(0, len(body), 100))

    assert _post(small, chunks(JSON_LIMIT)).status_code != 413
    r = _post(small, chunks(JSON_LIMIT + 1))
    assert r.status_code == 413, r.text
    assert str(JSON_LIMIT) in r.json()["error"]["message"]


def test_an_upload_keeps_max_body_bytes(small: TestClient) -> None:
    headers = {**AUTH, "Content-Type": "application/octet-stream"}
    r = small.put("/echo-v1/blobs/b.bin", content=b"x" * 5000, headers=headers)
    assert r.status_code == 200, r.text
    r = small.put("/echo-v1/blobs/b.bin", content=b"x" * 8001, headers=headers)
    assert r.status_code == 413
    assert "[server] max_body_bytes" in r.json()["error"]["message"]


def _create_item() -> Operation:
    return next(
        op for op in load_spec_file(SURFACE_SPEC).operations if op.operation_id == "create_item"
    )


@pytest.mark.parametrize("declared", [3000, 500])
def test_x_max_body_bytes_is_honoured(
    small: TestClient, monkeypatch: pytest.MonkeyPatch, declared: int
) -> None:
    """An operation's declared limit wins over [server] max_json_body_bytes, more or less."""
    monkeypatch.setattr(_create_item(), "max_body_bytes", declared)
    assert _post(small, _item(declared)).status_code != 413
    r = _post(small, _item(declared + 1))
    assert r.status_code == 413
    assert "x-max-body-bytes of create_item" in r.json()["error"]["message"]


def test_x_max_body_bytes_stays_under_max_body_bytes(
    small: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_create_item(), "max_body_bytes", 10**9)
    assert _post(small, _item(8000)).status_code != 413
    assert _post(small, _item(8001)).status_code == 413


def _spec_with(extension: str) -> str:
    return (
        "openapi: 3.0.3\npaths:\n  /x:\n    post:\n      operationId: make\n"
        f"{extension}      requestBody:\n        content:\n"
        "          application/json:\n            schema: {type: object}\n"
    )


def test_x_max_body_bytes_is_read_from_the_spec() -> None:
    declared = parse_spec(_spec_with("      x-max-body-bytes: 1234\n"), "ok.yaml")
    assert declared.operations[0].max_body_bytes == 1234
    assert parse_spec(_spec_with(""), "none.yaml").operations[0].max_body_bytes is None
    for bad in ("0", "-5", "true", "'1MB'"):
        with pytest.raises(ValueError, match="operation make: x-max-body-bytes"):
            parse_spec(_spec_with(f"      x-max-body-bytes: {bad}\n"), f"bad{bad}.yaml")


def test_shipped_limits_for_bodies_read_into_memory() -> None:
    """Every body read into memory is bounded well under the upload cap; the operations
    that carry a dataset inline declare 32 MiB, Spice's SQL 2 MiB."""
    declared = {
        (spec.surface, op.operation_id): op.max_body_bytes
        for spec in load_specs()
        for op in spec.operations
        if op.max_body_bytes is not None
    }
    assert declared == {
        ("objective", "create_evaluation"): 32 << 20,
        ("qianfan", "create_dataset"): 32 << 20,
        ("spice", "put_eval"): 32 << 20,
        ("spice", "sql"): 2 << 20,
    }
