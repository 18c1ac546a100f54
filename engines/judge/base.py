"""The judge interface every implementation (mock, similarity, OpenAI-compatible) serves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Objective's scale: 0 irrelevant, 1 partially relevant, 2 perfectly relevant.
LABELS: dict[int, str] = {0: "BAD", 1: "OK", 2: "GREAT"}


@dataclass(frozen=True)
class Relevance:
    score: int
    label: str
    explanation: str

    @classmethod
    def of(cls, score: int, explanation: str) -> Relevance:
        return cls(score, LABELS[score], explanation)


class RelevanceJudge(Protocol):
    name: str  # reported to clients, e.g. as Objective's metadata.judge
    signature: str  # sacreBLEU-style: what produced the scores, reproducibly

    async def relevance(self, query: str, obj: Mapping[str, Any]) -> Relevance: ...


def object_text(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten an object into (field path, text) pairs, in order, for judges to read."""
    if isinstance(obj, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in obj.items():
            out.extend(object_text(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(obj, list):
        out = []
        for i, value in enumerate(obj):
            out.extend(object_text(value, f"{prefix}[{i}]"))
        return out
    if obj is None:
        return []
    return [(prefix or "value", str(obj))]
