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


@dataclass(frozen=True)
class Generation:
    """Free text for a prompt (Oxen ``text`` evaluations, Spice's model under evaluation)."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Score:
    """A judge's grade on a 1..max_score scale; ``value`` None when it could not score
    (Qianfan's ``-1`` bucket)."""

    value: int | None
    explanation: str
    dimensions: dict[str, int] | None = None


class UnknownModel(LookupError):
    """A vendor model name that no backend serves; surfaces answer in their own shape."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"model '{name}' is not served here; known: {', '.join(known) or 'none'}")
        self.name = name
        self.known = known


class Judge(RelevanceJudge, Protocol):
    """Everything the surfaces ask of a language model, each with a mock."""

    async def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Generation: ...

    async def score(
        self,
        *,
        variables: Mapping[str, str],
        max_score: int,
        template: str | None = None,
        dimensions: list[dict[str, str]] | None = None,
    ) -> Score: ...

    async def json_score(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        *,
        model: str | None = None,
    ) -> float: ...
