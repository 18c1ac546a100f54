"""``completions`` and ``responses`` data sources: their ``input_messages`` and
``sampling_params`` checked, rendered per row, turned into the judge engine's generation
parameters, and the generated text turned into the ``sample`` namespace graders read and
the output item's ``sample`` (plain functions: the checks run in the API process on one
request's body, the rendering in a worker over the rows).

Pinned:

- ``input_messages`` ``{"type": "template", "template": [...]}``: each message's text
  (a string, or ``input_text``/``output_text`` parts) rendered with the row's ``item``
  (``{{item.x}}``, ``{{ item.x }}``, nested paths; a variable the row lacks errors that
  row); ``{"type": "item_reference", "item_reference": "item.path"}``: the row's list of
  ``{role, content}`` messages at that path;
- ``sampling_params``: ``temperature``, ``top_p``, ``seed`` and the token limit, spelled
  ``max_completion_tokens`` (the 3.57.0 client) or ``max_completions_tokens`` (the docs,
  the cookbook), go to the served model; ``reasoning_effort``, ``response_format``,
  ``text``, ``tools`` are accepted and echoed but not applied (the judge engine sends its
  own response format, and tools are not served);
- the role ``developer`` is sent as ``system`` (chat templates of served models know no
  ``developer``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from . import graders
from .errors import bad_request

APPLIED = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}
TOKEN_KEYS = ("max_completion_tokens", "max_completions_tokens")
IGNORED = ("reasoning_effort", "response_format", "text", "tools")
MAX_TOKENS = 1_000_000
JSON_FORMATS = ("json_object", "json_schema")


def check_input_messages(spec: Any) -> None:
    """Refuse an ``input_messages`` the run could not render (400, naming the field)."""
    at = "data_source.input_messages"
    if not isinstance(spec, dict):
        raise bad_request(
            f"{at} is required to generate samples: "
            '{"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]}'
            ' or {"type": "item_reference", "item_reference": "item.messages"}',
            at,
        )
    kind = spec.get("type")
    if kind == "template":
        try:
            where = f"{at}.template"
            graders.check_messages(spec.get("template"), where, ("item",), where)
        except graders.GraderInvalid as exc:
            raise bad_request(exc.message, exc.param or f"{at}.template") from None
    elif kind == "item_reference":
        ref = spec.get("item_reference")
        if not isinstance(ref, str) or not graders.is_path(ref.strip(), ("item",)):
            raise bad_request(
                f"{at}.item_reference must name a path of the item, e.g. 'item.messages'",
                f"{at}.item_reference",
            )
    else:
        raise bad_request(f"{at}.type must be 'template' or 'item_reference'", f"{at}.type")


def check_sampling(params: Any) -> dict[str, Any]:
    """The judge's generation parameters from ``sampling_params`` (400 for a value out
    of its range)."""
    if params is None:
        return {}
    at = "data_source.sampling_params"
    if not isinstance(params, dict):
        raise bad_request(f"{at} must be an object", at)
    out: dict[str, Any] = {}
    for key, (low, high) in APPLIED.items():
        value = params.get(key)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise bad_request(
                f"{at}.{key} must be a number from {low:g} to {high:g}", f"{at}.{key}"
            )
        out[key] = float(value)
    seed = params.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or abs(seed) >= 2**63:
            raise bad_request(f"{at}.seed must be a 64-bit integer", f"{at}.seed")
        out["seed"] = seed
    given = [k for k in TOKEN_KEYS if params.get(k) is not None]
    if len(given) == 2 and params[given[0]] != params[given[1]]:
        raise bad_request(
            f"{at} gives max_completion_tokens and max_completions_tokens different values; "
            "give one (both spellings are accepted)",
            f"{at}.max_completion_tokens",
        )
    if given:
        value = params[given[0]]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
            raise bad_request(
                f"{at}.{given[0]} must be a whole number from 1 to {MAX_TOKENS}", f"{at}.{given[0]}"
            )
        out["max_tokens"] = value
    return out


def wants_json(params: Mapping[str, Any] | None) -> bool:
    """Whether the run asked for JSON output (``sample.output_json`` is then filled)."""
    if not params:
        return False
    fmt = params.get("response_format") or (params.get("text") or {}).get("format") or {}
    return isinstance(fmt, dict) and fmt.get("type") in JSON_FORMATS


def render_input(spec: Mapping[str, Any], item: Any) -> list[dict[str, str]]:
    """One row's messages (MissingVariable or ValueError: that row is errored)."""
    namespaces = {"item": item}
    if spec["type"] == "template":
        return graders.render_messages(spec["template"], namespaces)
    found = graders.lookup(str(spec["item_reference"]).strip(), namespaces)
    if isinstance(found, dict):
        found = [found]
    if not isinstance(found, list) or not found:
        raise ValueError(f"{spec['item_reference']} is not a list of {{role, content}} messages")
    out = []
    for i, m in enumerate(found[: graders.MAX_MESSAGES + 1]):
        where = f"{spec['item_reference']}[{i}]"
        if not isinstance(m, dict) or m.get("role") not in graders.ROLES:
            raise ValueError(f"{where}.role is not one of {', '.join(graders.ROLES)}")
        try:
            out.append(
                {"role": m["role"], "content": graders.content_text(m.get("content"), where)}
            )
        except graders.GraderInvalid as exc:
            raise ValueError(exc.message) from None
    if len(out) > graders.MAX_MESSAGES:
        raise ValueError(f"{spec['item_reference']} holds over {graders.MAX_MESSAGES} messages")
    return out


def for_model(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{**m, "role": "system" if m["role"] == "developer" else m["role"]} for m in messages]


def sample_namespace(text: str, finish_reason: str, json_output: bool) -> dict[str, Any]:
    """What ``{{sample.*}}`` reads for a generated answer."""
    out: dict[str, Any] = {
        "output_text": text,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": text},
            }
        ],
        "output_tools": [],
    }
    if json_output:
        with contextlib.suppress(ValueError):
            out["output_json"] = json.loads(text)
    return out


def item_sample(
    messages: list[dict[str, str]] | None,
    text: str | None,
    model: str,
    usage: tuple[int, int],
    params: Mapping[str, Any],
    error: str | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """An output item's ``sample`` for a generated (or failed) answer; the sampling fields
    are what was sent, null where the run set none (the served model's defaults);
    ``finish_reason`` the served model's (``length``: the token limit cut the answer)."""
    prompt, completion = usage
    return {
        "input": messages or [],
        "output": [] if text is None else [{"role": "assistant", "content": text}],
        "finish_reason": "" if text is None else finish_reason,
        "model": model,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cached_tokens": 0,
        },
        "error": None if error is None else {"code": "generation_error", "message": error},
        "temperature": params.get("temperature"),
        "max_completion_tokens": params.get("max_tokens"),
        "top_p": params.get("top_p"),
        "seed": params.get("seed"),
    }
