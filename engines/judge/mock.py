"""A deterministic lexical judge for contract tests: no model, same input → same answer.

Relevance is 2 when every query term appears in the object, 1 when some do, 0 when none
do; terms are lower-cased words with a crude suffix strip, so "stripes" meets "striped".
Generation echoes the last message behind a hash of the whole request; ``score`` and
``json_score`` measure term overlap with the reference. Vendor model names behave as in
real mode: the defaults below and ``[judge.models]`` are known, anything else is an
``UnknownModel``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from evaldock.engines.signature import Signature

from .base import (
    Generation,
    Relevance,
    Score,
    UnknownModel,
    Usage,
    count,
    dimension_names,
    object_text,
)

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


# Vendor model names the mock answers for out of the box (Oxen's documented text models);
# [judge.models] adds more. Anything else is an UnknownModel, as in real mode.
DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "mock")


class MockJudge:
    name = "evaldock-mock-lexical-1"

    def __init__(self, options: Mapping[str, Any]) -> None:
        # A per-judgement delay lets tests watch a job in 'processing' or kill it there.
        self.delay = float(options.get("delay_ms", 0)) / 1000.0
        self.signature = Signature.of(
            "judge", "mock", model="lexical", prompt="v1", delay=f"{self.delay:g}s"
        ).format()
        self.models = sorted({*DEFAULT_MODELS, *(options.get("models") or {})})
        self.usage = Usage()

    def known_models(self) -> list[str]:
        return list(self.models)

    def generation_signature(self, model: str | None = None) -> str:
        return self.generation_signature_served(self._served(model))

    def generation_signature_served(self, served: str) -> str:
        return Signature.of(
            "generate", "mock", model=served, method="echo", delay=f"{self.delay:g}s"
        ).format()

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _served(self, model: str | None) -> str:
        if model is None:
            return "mock"
        if model not in self.models:
            raise UnknownModel(model, self.known_models())
        return model

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
        return await self.generate_served(messages, self._served(model), params)

    async def generate_served(
        self, messages: list[dict[str, Any]], served: str, params: Mapping[str, Any] | None
    ) -> Generation:
        """Echo-style answer: deterministic, and it depends on every message and param."""
        if self.delay:
            await asyncio.sleep(self.delay)
        last = str(messages[-1].get("content", "")) if messages else ""
        seen = repr((messages, sorted((params or {}).items())))
        choices = []
        for i in range(int((params or {}).get("n", 1))):
            digest = hashlib.sha256(f"{seen}|{i}".encode()).hexdigest()[:8]
            choices.append(f"mock answer {digest}: {last[:200]}")
        prompt_tokens = len(terms(repr(messages)))
        completion_tokens = sum(len(terms(c)) for c in choices)
        count(self.usage, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return Generation(choices[0], choices, prompt_tokens, completion_tokens, served)

    async def score(
        self,
        *,
        variables: Mapping[str, Any],
        max_score: int,
        prompt_template: str | None = None,
        dimensions: list[Mapping[str, str]] | None = None,
        min_score: int = 1,
        params: Mapping[str, Any] | None = None,
    ) -> Score:
        """Share of the reference's terms found in the output, on min..max; unscorable
        (None) when either is empty."""
        out = {stem(t) for t in terms(str(variables.get("output", "")))}
        ref = {stem(t) for t in terms(str(variables.get("reference", "")))}
        if not out or not ref:
            count(self.usage, errors=1)
            return Score(None, None, "unscorable: the output or the reference is empty")
        overlap = len(out & ref) / len(ref)
        value = min_score + round(overlap * (max_score - min_score))
        per = {name: value for name in dimension_names(dimensions)} or None
        return Score(value, per, f"{overlap:.0%} of the reference's terms appear in the output.")

    async def json_score(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> float:
        return await self.json_score_served(messages, metadata, self._served(model), params)

    async def json_score_served(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        served: str,
        params: Mapping[str, Any] | None,
    ) -> float:
        """Share of the ideal's terms in the actual answer (1.0 when both are empty)."""
        actual = {stem(t) for t in terms(str(metadata.get("actual", "")))}
        ideal = {stem(t) for t in terms(str(metadata.get("ideal", "")))}
        return len(actual & ideal) / len(ideal) if ideal else float(not actual)


if TYPE_CHECKING:  # mypy proves the class serves what the server calls
    from evaldock.engines.protocols import GenerationBackend, Judge

    def _judge(engine: MockJudge) -> Judge:
        return engine

    def _generation_backend(engine: MockJudge) -> GenerationBackend:
        return engine
