"""Request validation against the operation's OpenAPI definition.

Messages name the failing field the way a person reads it (``data[0].query is
required``). A schema node may carry ``x-message`` to use the vendor's exact wording.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from . import jsonio
from .spec import Operation, Parameter

_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


# Deepest JSON nesting a request may have. No vendor body nests past ~6 levels; the
# bound keeps validators (which recurse) far from Python's recursion limit (msgspec
# itself raises RecursionError near 1,000 levels).
MAX_JSON_DEPTH = 64


class RequestInvalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedMedia(Exception):
    def __init__(self, given: str, accepted: list[str]) -> None:
        super().__init__(given)
        self.given = given
        self.accepted = accepted


def _where(prefix: str, path: Any) -> str:
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def describe(error: ValidationError, prefix: str = "") -> str:
    where = _where(prefix, error.absolute_path)
    v, value = error.validator, cast(Any, error.validator_value)
    if v == "required":
        missing = [k for k in value if isinstance(error.instance, dict) and k not in error.instance]
        name = missing[0] if missing else value[0]
        return f"{_where(prefix, [*error.absolute_path, name])} is required"
    if v == "type":
        types = value if isinstance(value, list) else [value]
        wanted = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in types)
        return f"{where} must be {wanted}"
    if v == "minItems":
        return f"{where} must contain at least {value} item{'s' if value != 1 else ''}"
    if v == "maxItems":
        return f"{where} must contain at most {value} item{'s' if value != 1 else ''}"
    if v == "minLength":
        return f"{where} must not be empty" if value == 1 else f"{where} is shorter than {value}"
    if v == "enum":
        return f"{where} must be one of: {', '.join(json.dumps(x) for x in value)}"
    if v == "additionalProperties":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


@functools.lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


# Spec schemas live as long as the process: a validator per schema object, found by
# identity (serialising the schema for a cache key cost ~15 us on every request).
_BY_ID: dict[int, tuple[Mapping[str, Any], Draft202012Validator]] = {}


def validator_for(schema: Mapping[str, Any]) -> Draft202012Validator:
    found = _BY_ID.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    validator = _validator_cached(schema)
    if len(_BY_ID) < 4096:
        _BY_ID[id(schema)] = (schema, validator)
    return validator


def _validator_cached(schema: Mapping[str, Any]) -> Draft202012Validator:
    return _validator(json.dumps(schema, sort_keys=True))


# Schemas that say nothing but a type (most path and query parameters): checked here,
# without the validator's ~8 us a call.
_PLAIN_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}
_PLAIN_KEYS = {"type", "description", "example", "title"}


def _plainly_valid(schema: Mapping[str, Any], value: Any) -> bool:
    kind = _PLAIN_TYPES.get(schema.get("type"))  # type: ignore[arg-type]
    if kind is None or isinstance(value, bool) is not (kind is bool):
        return False  # True is an int to Python, not to JSON Schema
    return isinstance(value, kind) and schema.keys() <= _PLAIN_KEYS


def check(schema: Mapping[str, Any], value: Any, prefix: str = "") -> None:
    if _plainly_valid(schema, value):
        return
    errors = sorted(
        validator_for(schema).iter_errors(value),
        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    if not errors:
        return
    first = errors[0]
    # Deepest schema node with a vendor message wins, so spec authors can pin exact text.
    for err in [first, *first.context] if first.context else [first]:
        custom = err.schema.get("x-message") if isinstance(err.schema, dict) else None
        if custom:
            raise RequestInvalid(custom)
    raise RequestInvalid(describe(first, prefix))


def _coerce(param: Parameter, raw: str | list[str]) -> Any:
    """Query, path and header values arrive as strings; make them the schema's type."""
    schema = param.schema
    kind = schema.get("type")
    if kind == "array":
        items = raw if isinstance(raw, list) else raw.split(",")
        item_param = Parameter(param.name, param.location, True, schema.get("items", {}))
        return [_coerce(item_param, i) for i in items]
    value = raw[-1] if isinstance(raw, list) else raw
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        wanted = _TYPE_NAMES[str(kind)]
        raise RequestInvalid(
            f"{param.location} parameter '{param.name}' must be {wanted}, got {value!r}"
        ) from None
    if kind == "boolean":
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise RequestInvalid(
            f"{param.location} parameter '{param.name}' must be true or false, got {value!r}"
        )
    return value


def parameters(
    op: Operation,
    path_params: Mapping[str, str],
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"path": {}, "query": {}, "header": {}}
    for p in op.parameters:
        if p.location == "path":
            raw: Any = path_params.get(p.name)
        elif p.location == "query":
            values = query.get(p.name)
            raw = (
                values
                if values and p.schema.get("type") == "array"
                else (values[-1] if values else None)
            )
        elif p.location == "header":
            raw = headers.get(p.name.lower())
        else:
            continue
        if raw is None:
            if p.required:
                raise RequestInvalid(f"{p.location} parameter '{p.name}' is required")
            if "default" in p.schema:
                out[p.location][p.name] = p.schema["default"]
            continue
        value = _coerce(p, raw)
        check(p.schema, value, prefix=p.name)
        out[p.location][p.name] = value
    return out


def depth(value: Any) -> int:
    """Nesting depth of decoded JSON, iteratively (linear in the number of nodes)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def decode_json(raw: bytes) -> Any:
    try:
        value = jsonio.decode(raw)
    except RecursionError:
        raise RequestInvalid(
            f"Request body nests deeper than {MAX_JSON_DEPTH} levels; flatten it"
        ) from None
    except jsonio.DecodeError as exc:
        raise RequestInvalid(f"Request body is not valid JSON: {exc}") from None
    if depth(value) > MAX_JSON_DEPTH:
        raise RequestInvalid(f"Request body nests deeper than {MAX_JSON_DEPTH} levels; flatten it")
    return value


def is_json(media: str) -> bool:
    """``application/json`` and ``*+json`` — not ``application/x-ndjson`` (JSON Lines)."""
    return media == "application/json" or media.endswith("+json")


def body(op: Operation, raw: bytes, media: str = "") -> Any:
    """The decoded JSON body (None for uploads and non-JSON media the spec accepts)."""
    if op.streamed:
        return None
    if not raw.strip():
        if op.body_required:
            raise RequestInvalid("Request body is required")
        return None
    if op.body_schema is None or (media and media in op.body_media and not is_json(media)):
        # The operation takes no JSON body, or this one came as another listed media
        # type (SQL as text/plain, say): the handler reads raw_body.
        return None
    value = decode_json(raw)
    check(op.body_schema, value)
    return value
