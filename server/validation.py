"""Request validation against the operation's OpenAPI definition.

Messages name the failing field the way a person reads it (``data[0].query is
required``). A schema node may carry ``x-message`` to use the vendor's exact wording.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

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


class RequestInvalid(Exception):
    def __init__(self, message: str, *, schema_message: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.schema_message = schema_message  # the spec's own x-message was used


def _where(prefix: str, path: Any) -> str:
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def describe(error: ValidationError, prefix: str = "") -> str:
    where = _where(prefix, error.absolute_path)
    v, value = error.validator, error.validator_value
    if v == "required":
        missing = [k for k in value if isinstance(error.instance, dict) and k not in error.instance]
        name = missing[0] if missing else value[0]
        return f"{_where(prefix, [*error.absolute_path, name])} is required"
    if v == "type":
        types = value if isinstance(value, list) else [value]
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
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


def validator_for(schema: Mapping[str, Any]) -> Draft202012Validator:
    return _validator(json.dumps(schema, sort_keys=True))


def check(schema: Mapping[str, Any], value: Any, prefix: str = "") -> None:
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
            raise RequestInvalid(custom, schema_message=True)
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
        raise RequestInvalid(
            f"{param.location} parameter '{param.name}' must be {_TYPE_NAMES[kind]}, got {value!r}"
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


def body(op: Operation, raw: bytes) -> Any:
    if not raw.strip():
        if op.body_required:
            raise RequestInvalid("Request body is required")
        return None
    if op.body_schema is None:
        # The operation takes no JSON body (uploads, or none at all): leave it raw.
        return None
    try:
        value = jsonio.decode(raw)
    except jsonio.DecodeError as exc:
        raise RequestInvalid(f"Request body is not valid JSON: {exc}") from None
    check(op.body_schema, value)
    return value
