"""``score_model`` and ``label_model`` graders through the judge engine (API process: the
judge is an HTTP client there; the rendering of their messages runs in a worker).

Both ask :meth:`Judge.structured` for OpenAI's own answer shapes, under a JSON schema the
served model decodes with (``[judge] structured``), validated and re-asked by the judge:

- ``score_model``: ``{"steps": [{"description", "conclusion"}], "result": number}``
  (:func:`score_schema`) for the grader's rendered messages and one more user message
  naming the range; ``result`` clamped into ``range`` (default ``[0, 1]``); an answer
  still invalid after the judge's retries scores 0 and errors the criterion on that row
  (``model_grader_parse_error``);
- ``label_model``: ``{"label": one of the grader's labels}`` (:func:`label_schema`, an
  enum) for the rendered messages and one more listing the labels; the label passes when
  it is in ``passing_labels`` (score 1, else 0).

The result carries ``result`` and ``steps`` (score_model) or ``label``, and a ``sample``
with the messages sent, the answer, the model, ``finish_reason`` and the tokens used.
The mock judge answers deterministically from the request (see
:func:`evaldock.engines.judge.mock.schema_answer`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.judge.base import Structured, UnknownModel, usage_scope
from evaldock.engines.protocols import Judge

from . import graders
from .sampling import for_model


def judge_params(criterion: Mapping[str, Any]) -> dict[str, Any]:
    """The grader's ``sampling_params`` the served model takes (both token spellings)."""
    params = criterion.get("sampling_params") or {}
    out: dict[str, Any] = {
        k: params[k] for k in ("temperature", "top_p", "seed") if params.get(k) is not None
    }
    tokens = params.get("max_completions_tokens") or params.get("max_completion_tokens")
    if tokens:
        out["max_tokens"] = tokens
    return out


def score_schema() -> dict[str, Any]:
    """OpenAI's score_model answer. ``result`` carries no bounds: an answer off the
    range is clamped into it, as the service did, not re-asked."""
    step = {
        "type": "object",
        "properties": {"description": {"type": "string"}, "conclusion": {"type": "string"}},
        "required": ["description", "conclusion"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": step}, "result": {"type": "number"}},
        "required": ["steps", "result"],
        "additionalProperties": False,
    }


def label_schema(labels: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }


def schema_for(criterion: Mapping[str, Any]) -> dict[str, Any]:
    if criterion["type"] == "label_model":
        return label_schema(criterion["labels"])
    return score_schema()


def judge_messages(
    criterion: Mapping[str, Any], rendered: list[dict[str, str]]
) -> list[dict[str, str]]:
    messages = for_model(rendered)
    if criterion["type"] == "label_model":
        listed = ", ".join(json.dumps(x) for x in criterion["labels"])
        ask = (
            f"Choose the one label that applies, from: {listed}. Answer with a JSON "
            'object {"label": "<the label>"}.'
        )
    else:
        low, high = graders.model_range(criterion)
        ask = (
            'Answer with a JSON object {"steps": [{"description": "...", "conclusion": '
            f'"..."}}], "result": <a number from {low:g} to {high:g}>}}: your reasoning as '
            "steps, then the score."
        )
    messages.append({"role": "user", "content": ask})
    return messages


def outcome(
    criterion: Mapping[str, Any],
    answer: Structured | None,
    error: str | None,
    messages: list[dict[str, str]],
    usage: tuple[int, int],
) -> dict[str, Any]:
    """The criterion's result on one row: ``{score, passed, error?, sample, ...}``."""
    fields: dict[str, Any] = {}
    score, passed = 0.0, False
    value = answer.value if answer is not None else None
    if value is not None and criterion["type"] == "score_model":
        result = value.get("result")
        if isinstance(result, bool) or not isinstance(result, int | float):
            error = f"model_grader_parse_error: result {result!r} is not a number"
        elif not math.isfinite(result):
            error = f"model_grader_parse_error: result {result!r} is not finite"
        else:
            low, high = graders.model_range(criterion)
            score = min(max(float(result), low), high)
            passed = graders.passed(criterion, score)
            fields = {"result": result, "steps": value.get("steps") or []}
    elif value is not None:
        label = value.get("label")
        if label in criterion["labels"]:
            passed = label in criterion["passing_labels"]
            score = float(passed)
            fields = {"label": label}
        else:
            error = f"model_grader_parse_error: {label!r} is not one of the labels"
    prompt, completion = usage
    sample = {
        "input": messages,
        "output": [{"role": "assistant", "content": json.dumps(value)}] if value else [],
        "finish_reason": answer.finish_reason if answer is not None else "",
        "model": criterion["model"],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cached_tokens": 0,
        },
    }
    out: dict[str, Any] = {"score": score, "passed": passed, "sample": sample, **fields}
    if error is not None:
        out["error"] = error
    return out


async def grade(
    judge: Judge, criterion: Mapping[str, Any], rendered: list[dict[str, str]]
) -> tuple[dict[str, Any], tuple[int, int]]:
    """One model grader on one row: its outcome and the (prompt, completion) tokens used
    (every try the judge made, retries included). EngineUnavailable (no generator
    configured) is raised: the run cannot go on."""
    messages = judge_messages(criterion, rendered)
    answer: Structured | None = None
    error: str | None = None
    with usage_scope() as used:
        try:
            answer = await judge.structured(
                messages,
                schema_for(criterion),
                model=criterion["model"],
                params=judge_params(criterion),
            )
        except EngineUnavailable:
            raise
        except (EngineError, UnknownModel) as exc:
            error = f"model_grader_parse_error: {exc}"[:1000]
    usage = (used.prompt_tokens, used.completion_tokens)
    return outcome(criterion, answer, error, messages, usage), usage
