"""Versioned judge prompt templates, shipped as package files.

A template's file name carries its version (``relevance.v1.txt``); the version is part
of every cache key and of the reproducibility signature, so editing a prompt means a new
file, never a silent change to old results.
"""

from __future__ import annotations

import functools
from importlib import resources

RELEVANCE = "relevance.v1"
SCORE = "score.v1"


@functools.cache
def template(name: str) -> str:
    return (resources.files(__package__) / "prompts" / f"{name}.txt").read_text("utf-8")


def version(name: str) -> str:
    return name.rpartition(".")[2]


def render(name: str, **values: object) -> str:
    # str.format would trip on JSON braces inside values; replace named slots only.
    text = template(name)
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


RELEVANCE_SCHEMA = {
    "type": "object",
    "properties": {
        "explanation": {"type": "string"},
        "score": {"type": "integer", "enum": [0, 1, 2]},
    },
    "required": ["explanation", "score"],
    "additionalProperties": False,
}


def score_schema(max_score: int, dimensions: list[str] | None = None) -> dict[str, object]:
    props: dict[str, object] = {
        "explanation": {"type": "string"},
        "score": {"type": "integer", "minimum": 1, "maximum": max_score},
    }
    required = ["explanation", "score"]
    if dimensions:
        props["dimensions"] = {
            "type": "object",
            "properties": {
                d: {"type": "integer", "minimum": 1, "maximum": max_score} for d in dimensions
            },
            "required": list(dimensions),
            "additionalProperties": False,
        }
        required.append("dimensions")
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
