"""Versioned judge prompt templates (the ``prompts/`` folder) and output schemas.

A template's file name carries its version (``relevance.v1.txt``); the version is in the
reproducibility signature and the rendered text is in every cache key, so editing a
prompt means a new file, never a silent change to old results.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

RELEVANCE = "relevance.v1"
SCORE = "score.v1"
SCORE_ANSWER = "score_answer.v1"
JSON_SCORE = "json_score.v1"


@functools.cache
def template(name: str) -> str:
    folder = resources.files("evaldock.engines.judge") / "prompts"
    return (folder / f"{name}.txt").read_text("utf-8")


def version(name: str) -> str:
    return name.rpartition(".")[2]


# {name} and {{ name }} (Spice's parameterized prompts) alike; other braces stay as they
# are, so JSON inside a template or a value never trips the renderer.
_SLOT = re.compile(r"\{\{\s*(\w+)\s*\}\}|\{(\w+)\}")


def fill(text: str, values: Mapping[str, Any]) -> str:
    """Replace the slots named in ``values``; unknown slots are left untouched."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1) or m.group(2)
        return str(values[key]) if key in values else m.group(0)

    return _SLOT.sub(sub, text)


def slots(text: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in _SLOT.finditer(text)}


def render(name: str, **values: object) -> str:
    return fill(template(name), values)


# Small models under guided decoding can loop inside a free string ("classic, classic,
# ...") until max_tokens cuts the JSON short; a bound on the explanation (vLLM enforces
# maxLength) makes the grammar close the string and emit the score. 0 turns it off, for
# servers whose strict mode refuses length constraints.
EXPLANATION_MAX_CHARS = 400


def _judgement(score: dict[str, Any], max_chars: int) -> dict[str, Any]:
    explanation: dict[str, Any] = {"type": "string"}
    if max_chars:
        explanation["maxLength"] = max_chars
    # The explanation comes first so a model reasons before it commits to a score.
    return {
        "type": "object",
        "properties": {"explanation": explanation, "score": score},
        "required": ["explanation", "score"],
        "additionalProperties": False,
    }


def relevance_schema(max_chars: int = EXPLANATION_MAX_CHARS) -> dict[str, Any]:
    return _judgement({"type": "integer", "enum": [0, 1, 2]}, max_chars)


# The scale json_score.v1 asks for. A schema of plain {"type": "number"} let a 135M model
# answer 8.0 and 5.0 to this prompt (grader/mean 2.17): the bounds go into the schema
# (vLLM's grammar enforces them) and into the parser (a server that does not is re-asked).
JSON_SCORE_RANGE = (0.0, 1.0)


def json_score_schema(
    max_chars: int = EXPLANATION_MAX_CHARS, bounds: tuple[float, float] | None = JSON_SCORE_RANGE
) -> dict[str, Any]:
    """The answer to json_score.v1; ``bounds`` None for a caller's own prompt, whose scale
    is its own (Spice's runtime takes any number from a model's own prompt)."""
    score: dict[str, Any] = {"type": "number"}
    if bounds is not None:
        score.update(minimum=bounds[0], maximum=bounds[1])
    return _judgement(score, max_chars)


# The start-up probe (OpenAIJudge.check): a schema no unconstrained model would meet by
# chance (a value it was never told), asked with a prompt that does not mention JSON, so
# only a server that applies the constraint answers {"probe": PROBE_VALUE}.
PROBE_VALUE = "evaldock-probe-7"
PROBE_PROMPT = "Reply with one word: hello."


def probe_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"probe": {"type": "string", "enum": [PROBE_VALUE]}},
        "required": ["probe"],
        "additionalProperties": False,
    }


def score_schema(
    max_score: int,
    dimensions: list[str] | None = None,
    min_score: int = 1,
    max_chars: int = EXPLANATION_MAX_CHARS,
) -> dict[str, Any]:
    scale = {"type": "integer", "minimum": min_score, "maximum": max_score}
    schema = _judgement(dict(scale), max_chars)
    if dimensions:
        schema["properties"]["dimensions"] = {
            "type": "object",
            "properties": {d: dict(scale) for d in dimensions},
            "required": list(dimensions),
            "additionalProperties": False,
        }
        schema["required"].append("dimensions")
    return schema
