"""A deterministic lexical judge for contract tests: no model, same input → same answer.

Relevance is 2 when every query term appears in the object, 1 when some do, 0 when none
do; terms are lower-cased words with a crude suffix strip, so "stripes" meets "striped".
Generation echoes the last message behind a hash of the whole request, cut after
``max_tokens`` words (``finish_reason`` ``length``) when the request sets a limit;
``score`` and ``json_score`` measure term overlap with the reference; ``structured``
builds an answer valid under the caller's schema (:func:`schema_answer`). Vendor model
names behave as in real mode: the defaults below and ``[judge.models]`` are known,
anything else is an ``UnknownModel``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from evaldock.engines.signature import Signature

from .base import (
    Generation,
    Relevance,
    Score,
    Structured,
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


# A schema nested deeper than this is answered with null there (a hostile schema must
# not recurse the mock into a RecursionError).
MAX_SCHEMA_DEPTH = 32
MAX_ARRAY_ITEMS = 8  # items of an array the mock fills (at least minItems, up to this)


def repeated_share(messages: list[dict[str, Any]]) -> float:
    """The share of the request's distinct (stemmed) terms that occur more than once in
    its messages: an answer that restates the question's or the reference's terms scores
    higher. 0.0 for a request without terms."""
    counts: dict[str, int] = {}
    for m in messages:
        for t in terms(str(m.get("content", ""))):
            key = stem(t)
            counts[key] = counts.get(key, 0) + 1
    return sum(1 for n in counts.values() if n > 1) / len(counts) if counts else 0.0


def _pick(seed: str, path: str, size: int) -> int:
    return int(hashlib.sha256(f"{seed}|{path}".encode()).hexdigest()[:8], 16) % size


def schema_answer(
    schema: Mapping[str, Any],
    messages: list[dict[str, Any]],
    seed: str,
    path: str = "",
    depth: int = 0,
) -> Any:
    """A value valid under ``schema`` (the subset structured outputs use: ``type``,
    ``properties``, ``items``, ``enum``, ``const``, ``anyOf``/``oneOf``, bounds), derived
    from the request: a number is :func:`repeated_share` placed in its bounds (0..1
    without), an enum the option whose terms the messages hold most (ties: a hash of the
    request), a string, boolean or array length a hash of the request."""
    if depth > MAX_SCHEMA_DEPTH or not isinstance(schema, Mapping):
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return _enum_answer(schema["enum"], messages, seed, path)
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema_answer(schema[key][0], messages, seed, path, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else None
    if kind == "object":
        props = schema.get("properties") or {}
        return {
            str(k): schema_answer(v, messages, seed, f"{path}.{k}", depth + 1)
            for k, v in props.items()
        }
    if kind == "array":
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", MAX_ARRAY_ITEMS))
        size = max(0, min(max(low, 1), high, MAX_ARRAY_ITEMS))
        items = schema.get("items") or {}
        return [
            schema_answer(items, messages, seed, f"{path}[{i}]", depth + 1) for i in range(size)
        ]
    if kind in ("number", "integer"):
        return _number_answer(schema, kind, repeated_share(messages))
    if kind == "boolean":
        return bool(_pick(seed, path, 2))
    if kind == "string":
        text = f"mock {hashlib.sha256(f'{seed}|{path}'.encode()).hexdigest()[:8]}"
        text = text.ljust(int(schema.get("minLength", 0)), ".")
        most = schema.get("maxLength")
        return text[: int(most)] if most is not None else text
    return None


def _enum_answer(options: list[Any], messages: list[dict[str, Any]], seed: str, path: str) -> Any:
    said: dict[str, int] = {}
    for m in messages:
        for t in terms(str(m.get("content", ""))):
            said[stem(t)] = said.get(stem(t), 0) + 1
    weights = [sum(said.get(stem(t), 0) for t in terms(str(o))) for o in options]
    best = [o for o, w in zip(options, weights, strict=True) if w == max(weights)]
    return best[_pick(seed, path, len(best))]


def _number_answer(schema: Mapping[str, Any], kind: str, share: float) -> float | int:
    def bound(key: str, exclusive: str, default: float) -> tuple[float, bool]:
        for name, excl in ((exclusive, True), (key, False)):
            value = schema.get(name)
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                return float(value), excl
        return default, False

    low, low_excl = bound("minimum", "exclusiveMinimum", 0.0)
    high, high_excl = bound("maximum", "exclusiveMaximum", 1.0)
    high = max(high, low)
    value = low + share * (high - low)
    if (low_excl and value <= low) or (high_excl and value >= high):
        value = (low + high) / 2
    if kind != "integer":
        return value
    first = math.floor(low) + 1 if low_excl else math.ceil(low)
    last = math.ceil(high) - 1 if high_excl else math.floor(high)
    return int(min(max(round(value), first), max(first, last)))


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
        # A word a token: an answer longer than the request's limit is cut there, as a
        # served model's would be, and says so.
        finish = "stop"
        limit = (params or {}).get("max_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            cut = [" ".join(c.split()[:limit]) for c in choices]
            if cut[0] != choices[0]:
                finish = "length"
            choices = cut
        prompt_tokens = len(terms(repr(messages)))
        completion_tokens = sum(len(terms(c)) for c in choices)
        count(self.usage, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return Generation(choices[0], choices, prompt_tokens, completion_tokens, served, finish)

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

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: Mapping[str, Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Structured:
        return await self.structured_served(messages, schema, self._served(model), params)

    async def structured_served(
        self,
        messages: list[dict[str, Any]],
        schema: Mapping[str, Any],
        served: str,
        params: Mapping[str, Any] | None,
    ) -> Structured:
        """:func:`schema_answer` for the request (deterministic: same request, same
        answer)."""
        if self.delay:
            await asyncio.sleep(self.delay)
        seed = hashlib.sha256(
            repr((messages, sorted((params or {}).items()), served)).encode()
        ).hexdigest()
        value = schema_answer(schema, messages, seed)
        if not isinstance(value, dict):
            value = {}
        prompt_tokens = len(terms(repr(messages)))
        completion_tokens = len(terms(json.dumps(value)))
        count(self.usage, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return Structured(value, prompt_tokens, completion_tokens, served)


if TYPE_CHECKING:  # mypy proves the class serves what the server calls
    from evaldock.engines.protocols import GenerationBackend, Judge

    def _judge(engine: MockJudge) -> Judge:
        return engine

    def _generation_backend(engine: MockJudge) -> GenerationBackend:
        return engine
