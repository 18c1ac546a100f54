"""A deterministic lexical relevance judge: no model, same input → same judgement.

Score 2 when every query term appears in the object, 1 when some do, 0 when none do;
terms are lower-cased words with a crude suffix strip, so "stripes" meets "striped".
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from .base import Generation, Relevance, Score, object_text

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it"),
) | frozenset(("of", "on", "or", "the", "to", "with", "without"))
_SUFFIXES = ("ing", "ed", "es", "s", "e")


def stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


class MockJudge:
    name = "evaldock-mock-lexical-1"

    def __init__(self, options: Mapping[str, Any]) -> None:
        # A per-judgement delay lets tests watch a job in 'processing' or kill it there.
        self.delay = float(options.get("delay_ms", 0)) / 1000.0
        self.signature = f"judge:mock|model:lexical|prompt:v1|delay:{self.delay:g}s"

    async def relevance(self, query: str, obj: Mapping[str, Any]) -> Relevance:
        if self.delay:
            await asyncio.sleep(self.delay)
        wanted = list(dict.fromkeys(terms(query))) or list(dict.fromkeys(_WORD.findall(query)))
        fields: dict[str, set[str]] = {}
        for path, text in object_text(obj):
            fields.setdefault(path, set()).update(stem(t) for t in terms(text))
        matched = [t for t in wanted if any(stem(t) in s for s in fields.values())]
        where = [p for p, s in fields.items() if any(stem(t) in s for t in matched)]
        if not wanted or not matched:
            shown = ", ".join(wanted) or "(none)"
            return Relevance.of(0, f"None of the query terms ({shown}) appear in the object.")
        score = 2 if len(matched) == len(wanted) else 1
        return Relevance.of(
            score,
            f"{len(matched)} of {len(wanted)} query terms ({', '.join(matched)}) "
            f"appear in the object's {', '.join(where)}.",
        )

    async def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Generation:
        """Echo-style answer: deterministic, and it depends on every message."""
        last = str(messages[-1].get("content", "")) if messages else ""
        digest = hashlib.sha256(repr(messages).encode()).hexdigest()[:8]
        text = f"mock answer {digest}: {last[:200]}"
        return Generation(text, model or "mock", len(terms(repr(messages))), len(terms(text)))

    async def score(
        self,
        *,
        variables: Mapping[str, str],
        max_score: int,
        template: str | None = None,
        dimensions: list[dict[str, str]] | None = None,
    ) -> Score:
        """Token overlap of output with reference, mapped onto 1..max_score."""
        out = {stem(t) for t in terms(variables.get("output", ""))}
        ref = {stem(t) for t in terms(variables.get("reference", ""))}
        if not out or not ref:
            return Score(None, "Nothing to compare: output or reference is empty.")
        overlap = len(out & ref) / len(ref)
        value = 1 + round(overlap * (max_score - 1))
        dims = {d["dimension"]: value for d in dimensions or []} or None
        return Score(value, f"{overlap:.0%} of the reference's terms appear in the output.", dims)

    async def json_score(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        *,
        model: str | None = None,
    ) -> float:
        actual = {stem(t) for t in terms(str(metadata.get("actual", "")))}
        ideal = {stem(t) for t in terms(str(metadata.get("ideal", "")))}
        return len(actual & ideal) / len(ideal) if ideal else float(not actual)
