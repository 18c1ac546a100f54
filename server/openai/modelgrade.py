"""``score_model`` and ``label_model`` graders through the judge engine (API process: the
judge is an HTTP client there; the rendering of their messages runs in a worker).

The judge's structured call today is :meth:`Judge.json_score`: the messages go out with
a JSON schema ``{"explanation": str, "score": number}`` (``[judge] structured``) and the
number comes back. So:

- ``score_model``: the grader's rendered messages as they are; the number is OpenAI's
  ``result``, clamped into ``range`` (default ``[0, 1]``); no number after the judge's
  retries scores 0 and errors the criterion on that row (``model_grader_parse_error``);
- ``label_model``: the rendered messages and one more user message listing the labels
  numbered from 1, asking for the number as the score; a number that is not one of
  them errors the row; the label passes when it is in ``passing_labels`` (score 1, else 0).

The mock judge's json_score measures how many of ``ideal``'s terms ``actual`` holds: a
score_model gets the share of its prompt's terms in the output; a label_model always
picks the first label (deterministic, for contract tests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.judge.base import UnknownModel, usage_scope
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


def judge_messages(
    criterion: Mapping[str, Any], rendered: list[dict[str, str]]
) -> list[dict[str, str]]:
    messages = for_model(rendered)
    if criterion["type"] == "label_model":
        listed = "\n".join(f"{i} = {json.dumps(x)}" for i, x in enumerate(criterion["labels"], 1))
        messages.append(
            {
                "role": "user",
                "content": "Choose the one label that applies. Labels:\n"
                f"{listed}\nAnswer with the label's number as the score.",
            }
        )
    return messages


def _metadata(criterion: Mapping[str, Any], rendered: list[dict[str, str]], output: str) -> dict:
    if criterion["type"] == "label_model":
        return {"actual": output, "ideal": output}
    prompt = "\n".join(m["content"] for m in rendered if m["role"] != "assistant")
    return {"actual": output, "ideal": prompt}


def outcome(
    criterion: Mapping[str, Any],
    value: float | None,
    error: str | None,
    messages: list[dict[str, str]],
    usage: tuple[int, int],
) -> dict[str, Any]:
    """The criterion's result on one row: ``{score, passed, error?, sample, ...}``."""
    answer: dict[str, Any] = {}
    score, passed = 0.0, False
    if criterion["type"] == "score_model":
        if value is not None:
            low, high = graders.model_range(criterion)
            score = min(max(value, low), high)
            passed = graders.passed(criterion, score)
            answer = {"result": value, "steps": []}
    elif value is not None:
        labels = criterion["labels"]
        if value == int(value) and 1 <= int(value) <= len(labels):
            label = labels[int(value) - 1]
            passed = label in criterion["passing_labels"]
            score = float(passed)
            answer = {"label": label}
        else:
            error = f"model_grader_parse_error: label number {value:g} is not 1..{len(labels)}"
    prompt, completion = usage
    sample = {
        "input": messages,
        "output": [{"role": "assistant", "content": json.dumps(answer)}] if answer else [],
        "model": criterion["model"],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cached_tokens": 0,
        },
    }
    out: dict[str, Any] = {"score": score, "passed": passed, "sample": sample, **answer}
    if error is not None:
        out["error"] = error
    return out


async def grade(
    judge: Judge, criterion: Mapping[str, Any], rendered: list[dict[str, str]], output: str
) -> tuple[dict[str, Any], tuple[int, int]]:
    """One model grader on one row: its outcome and the (prompt, completion) tokens used.
    EngineUnavailable (no generator configured) is raised: the run cannot go on."""
    messages = judge_messages(criterion, rendered)
    value: float | None = None
    error: str | None = None
    with usage_scope() as used:
        try:
            value = await judge.json_score(
                messages,
                _metadata(criterion, rendered, output),
                model=criterion["model"],
                params=judge_params(criterion),
            )
        except EngineUnavailable:
            raise
        except (EngineError, UnknownModel) as exc:
            error = f"model_grader_parse_error: {exc}"[:1000]
    usage = (used.prompt_tokens, used.completion_tokens)
    return outcome(criterion, value, error, messages, usage), usage
