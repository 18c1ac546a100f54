"""The real judge: any OpenAI-compatible chat-completions server (vLLM in production).

Structured output (a JSON schema: vLLM's guided decoding) keeps every score valid; an
answer that still fails validation (a score off its scale included) is asked again a
bounded number of times, then raised as ``EngineError``. How the schema travels is
``[judge] structured`` (:data:`STRUCTURED`); servers that do not know a field ignore it
and answer unconstrained, so :meth:`OpenAIJudge.check` asks every server one tiny
constrained question at start-up and refuses to start, naming the setting to use, when
the constraint did not hold. :meth:`OpenAIJudge.structured` sends a caller's own schema
the same way and validates the answer against it (``jsonschema``). Every validated answer
(with its ``finish_reason``) is cached under a hash of the whole request, so
a re-run costs no model call. HTTP (round-robin over a fleet, bounded concurrency,
retries) is :mod:`.transport`'s; vendor model names are routed by :mod:`.routing`, which
gets its backends from :func:`make_backend`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jsonschema

from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.protocols import GenerationBackend
from evaldock.engines.signature import Signature

from . import templates
from .base import (
    GENERATOR_HINT,
    Generation,
    Relevance,
    Score,
    Structured,
    Usage,
    count,
    dimension_names,
)
from .cache import JudgeCache, cache_key
from .config import fleet_options
from .mock import MockJudge
from .routing import ModelRoutes
from .transport import ChatTransport

# Request fields a caller's sampling parameters may not replace: they define what is
# asked, and streaming would break parsing.
_FIXED = frozenset(
    {"model", "messages", "response_format", "guided_json", "structured_outputs", "stream"}
)
# How a JSON schema reaches the server, and which vLLM honours it (vLLM's docs: guided_json
# deprecated in 0.10.2 and removed in 0.12.0, where structured_outputs replaced it; an
# unknown field is ignored, not refused, so 0.32 answered guided_json unconstrained):
#   json_schema         OpenAI's response_format: every vLLM since 0.6, OpenAI, most servers
#   structured_outputs  vLLM's own field, 0.10.2 and later
#   guided_json         vLLM's old field, before 0.12
STRUCTURED = ("json_schema", "structured_outputs", "guided_json")
STRUCTURED_FIX = {
    "json_schema": (
        "the server does not apply OpenAI's response_format json_schema: on vLLM before 0.6 "
        'set [judge] structured = "guided_json"; elsewhere turn on its structured output, '
        "or set [judge] probe = false to start anyway (answers are then only validated "
        "and re-asked, and judgements may fail)"
    ),
    "structured_outputs": (
        "vLLM before 0.10.2 has no structured_outputs field: set [judge] structured = "
        '"json_schema" (any vLLM since 0.6), or "guided_json" (vLLM before 0.12)'
    ),
    "guided_json": (
        "vLLM 0.12 and later dropped guided_json: set [judge] structured = "
        '"json_schema" (any vLLM since 0.6) or "structured_outputs" (vLLM 0.10.2 and later)'
    ),
}
# Free-text generation (Oxen text rows, Spice's model under evaluation, Qianfan's
# generation step) stops here unless the request says otherwise: long enough for an
# eval answer of ~700 words, short enough that a small model looping ("the the the ...")
# ends in bounded time (1,024 tokens is ~20 s at the ~50 tokens/s SmolLM2-135M makes on
# 2 CPU cores). 0: no limit from evaldock (the server's: what the context has left).
GENERATION_MAX_TOKENS = 1024
# A judgement is a JSON object: a bounded explanation (400 characters, ~100 tokens) and a
# score, or one per dimension: 512 leaves room for a dozen dimensions.
JUDGE_MAX_TOKENS = 512


def _json_object(text: str) -> dict[str, Any]:
    """The JSON object in a reply; tolerates a Markdown fence (servers without guided
    decoding add one)."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("the reply is not a JSON object")
    return data


def _number(value: Any, bounds: tuple[float, float] | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"score {value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"score {value!r} is not finite")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"score {value!r} is outside {bounds[0]:g}..{bounds[1]:g}")
    return float(value)


def _integer(value: Any, low: int, high: int, what: str = "score") -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value != int(value)
    ):
        raise ValueError(f"{what} {value!r} is not an integer")
    if not low <= int(value) <= high:
        raise ValueError(f"{what} {value!r} is outside {low}..{high}")
    return int(value)


class OpenAIJudge:
    """Options (``[judge]``): ``urls``, ``model``, ``api_key``, ``timeout`` (s),
    ``max_retries``, ``backoff``/``max_backoff`` (s), ``output_retries``, ``concurrency``
    (requests in flight), ``pool_size`` (connections per HTTP client),
    ``temperature``, ``max_tokens`` (judgements), ``generation_max_tokens`` (free text;
    0: the server's limit), ``structured`` (one of :data:`STRUCTURED`), ``probe`` (check
    at start-up that the server applies it), ``explanation_max_chars`` (a bound in the
    output schema; 0: none), ``models`` (vendor model names, see :mod:`.routing`),
    ``cache_path``. A request's own parameters (``params``) override the limits."""

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        cache: JudgeCache | None = None,
        usage: Usage | None = None,
    ) -> None:
        urls = options.get("urls") or options.get("url") or []
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if not urls:
            raise EngineUnavailable("the openai judge has no server to talk to", GENERATOR_HINT)
        self.model = str(options.get("model") or "")
        self.output_retries = int(options.get("output_retries", 2))
        self.temperature = float(options.get("temperature", 0.0))
        self.max_tokens = int(options.get("max_tokens", JUDGE_MAX_TOKENS))
        self.generation_max_tokens = int(
            options.get("generation_max_tokens", GENERATION_MAX_TOKENS)
        )
        self.probe = bool(options.get("probe", True))
        self.explanation_max_chars = int(
            options.get("explanation_max_chars", templates.EXPLANATION_MAX_CHARS)
        )
        self.structured_field = str(options.get("structured", "json_schema"))
        if self.structured_field not in STRUCTURED:
            raise EngineUnavailable(
                f"[judge] structured = '{self.structured_field}' is not supported",
                "use 'json_schema' (OpenAI's response_format: vLLM 0.6 and later, most "
                "servers), 'structured_outputs' (vLLM 0.10.2 and later) or 'guided_json' "
                "(vLLM before 0.12; later versions ignore it and answer unconstrained)",
            )
        self.usage = usage if usage is not None else Usage()
        self.transport = ChatTransport(
            [str(u) for u in urls],
            usage=self.usage,
            api_key=str(options.get("api_key") or "EMPTY"),  # vLLM ignores it unless set
            timeout=float(options.get("timeout", 60.0)),
            max_retries=int(options.get("max_retries", 4)),
            backoff=float(options.get("backoff", 0.5)),
            max_backoff=float(options.get("max_backoff", 8.0)),
            concurrency=int(options.get("concurrency", 256)),
            pool_size=int(options.get("pool_size", 8)),
            **fleet_options(options),
        )
        self._own_cache = cache is None
        self.cache = cache if cache is not None else JudgeCache(options.get("cache_path"))
        self.routes = ModelRoutes(
            options.get("models"),
            own=self,
            own_model=self.model,
            shared=options,
            backends=functools.partial(make_backend, cache=self.cache, usage=self.usage),
        )

    @property
    def urls(self) -> list[str]:
        return self.transport.urls

    @property
    def name(self) -> str:
        return f"openai:{self.model or 'unnamed'}"

    @property
    def signature(self) -> str:
        return Signature.of(
            "judge",
            "openai",
            model=self.model,
            prompt=templates.version(templates.RELEVANCE),
            temp=f"{self.temperature:g}",
            max_tokens=self.max_tokens,
            structured=self.structured_field,
        ).format()

    def generation_signature(self, model: str | None = None) -> str:
        """What free text from ``model`` (a vendor name; None: the judge's own) is made
        with: not :attr:`signature`, whose prompt and schema are the judgements'."""
        target, served = self.routes.resolve(model)
        return target.generation_signature_served(served)

    def generation_signature_served(self, served: str) -> str:
        return Signature.of(
            "generate",
            "openai",
            model=served,
            max_tokens=self.generation_max_tokens or "server",
            temp=f"{self.temperature:g}",
        ).format()

    def known_models(self) -> list[str]:
        return self.routes.known()

    # -- lifecycle ----------------------------------------------------------------------
    async def check(self) -> None:
        """Every base URL answers ``GET /models`` and serves every model it must serve."""
        for url in self.urls:
            served = await self.transport.served_models(url)
            if not self.model:
                if len(served) != 1:
                    raise EngineUnavailable(
                        f"no judge model is named and {url} serves "
                        f"{', '.join(served) or 'nothing'}",
                        "set EVALDOCK_JUDGE_MODEL / [judge] model to one of those",
                    )
                self.model = self.routes.own_model = served[0]  # the only one: use it
            for model in dict.fromkeys([self.model, *self.routes.served_by(self)]):
                if model not in served:
                    raise EngineUnavailable(
                        f"judge server {url} does not serve model '{model}' "
                        f"(it serves: {', '.join(served) or 'nothing'})",
                        "set EVALDOCK_JUDGE_MODEL / [judge] model (or the [judge.models] "
                        "entry) to one of those, or serve that model there",
                    )
            if self.probe:
                await self._probe(url)
        for backend in self.routes.backends():
            if backend is not self:
                await backend.check()

    async def _probe(self, url: str) -> None:
        """Ask ``url`` for an answer under a schema only a constrained decoder meets; an
        answer that does not meet it means the server ignored ``[judge] structured``
        (vLLM 0.32 ignores guided_json: every judgement then failed after 3 tries)."""
        body = self._body(
            [{"role": "user", "content": templates.PROBE_PROMPT}],
            self.model,
            templates.probe_schema(),
            max_tokens=48,
        )
        what = f"[judge] structured = '{self.structured_field}'"
        try:
            answer = await self.transport.chat(body, at=url)
            choice = answer["choices"][0]
            text = str(choice["message"]["content"] or "")
        except EngineError as exc:
            raise EngineUnavailable(
                f"judge server {url} refused a structured-output request ({what}): {exc}",
                STRUCTURED_FIX[self.structured_field],
            ) from None
        except (KeyError, IndexError, TypeError):
            raise EngineUnavailable(
                f"judge server {url} answered a chat completion without choices[0].message",
                f"check that {url} is an OpenAI-compatible server",
            ) from None
        try:
            held = json.loads(text) == {"probe": templates.PROBE_VALUE}
        except ValueError:
            # Cut off inside the object (a small model may pad with whitespace, which
            # the grammar allows): a constrained answer all the same.
            held = choice.get("finish_reason") == "length" and text.lstrip().startswith("{")
        if not held:
            raise EngineUnavailable(
                f"judge server {url} ignored {what}: asked for a JSON object under a "
                f"schema, it answered {text[:120]!r}",
                STRUCTURED_FIX[self.structured_field],
            )

    async def aclose(self) -> None:
        await self.routes.aclose()
        await self.transport.aclose()
        if self._own_cache:
            await self.cache.aclose()

    # -- requests -----------------------------------------------------------------------
    def _body(
        self,
        messages: list[dict[str, Any]],
        model: str,
        schema: dict[str, Any] | None,
        params: Mapping[str, Any] | None = None,
        *,
        max_tokens: int | None = None,
        schema_name: str = "judgement",
    ) -> dict[str, Any]:
        """The request; ``max_tokens`` None: the judgement limit; 0: none sent."""
        limit = self.max_tokens if max_tokens is None else max_tokens
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": self.temperature,
        }
        if limit:
            body["max_tokens"] = limit
        body.update({k: v for k, v in (params or {}).items() if k not in _FIXED})
        if schema is not None:
            if self.structured_field == "guided_json":
                body["guided_json"] = schema
            elif self.structured_field == "structured_outputs":
                body["structured_outputs"] = {"json": schema}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": schema_name, "schema": schema, "strict": True},
                }
        return body

    async def _call(
        self,
        body: dict[str, Any],
        kind: str,
        parse: Callable[[str], Any] | None = None,
    ) -> tuple[Any, list[str], int, int, str]:
        """(parsed first choice, all choices, prompt tokens, completion tokens, the first
        choice's finish_reason as the server gave it).

        Answered from the cache when this very request was answered before; otherwise
        asked, and with ``parse`` re-asked (bounded) while the answer fails validation.
        The valid answer is stored under the first request's key, so a re-run hits.
        """
        key = cache_key({"backend": "openai", "kind": kind, "request": body})
        hit = await self.cache.get(key)
        if hit is not None:
            count(self.usage, cache_hits=1)
            texts = hit["choices"]
            value = parse(texts[0]) if parse else None
            finish = str(hit.get("finish_reason") or "stop")  # entries before it: "stop"
            return value, texts, hit["prompt_tokens"], hit["completion_tokens"], finish
        try:
            attempt_body, problem = body, ""
            for attempt in range(1 + (self.output_retries if parse else 0)):
                answer = await self.transport.chat(attempt_body)
                try:
                    choices = answer["choices"]
                    texts = [str(c["message"]["content"] or "") for c in choices]
                    finish = choices[0].get("finish_reason")
                    usage = answer.get("usage") or {}
                    p, c = (
                        int(usage.get("prompt_tokens", 0)),
                        int(usage.get("completion_tokens", 0)),
                    )
                except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                    raise EngineError("judge answer has no choices[0].message.content") from None
                count(self.usage, prompt_tokens=p, completion_tokens=c)
                value = None
                if parse is not None:
                    try:
                        value = parse(texts[0])
                    except (ValueError, KeyError, TypeError) as exc:
                        count(self.usage, invalid_outputs=1)
                        problem = f"{exc} (reply: {texts[0][:160]!r}, finish: {finish})"
                        attempt_body = self._retry_body(body, attempt_body, attempt + 1, finish)
                        continue
                finish_reason = str(finish or "stop")
                stored = {
                    "choices": texts,
                    "prompt_tokens": p,
                    "completion_tokens": c,
                    "finish_reason": finish_reason,
                }
                await self.cache.put(key, stored, self.signature)
                return value, texts, p, c, finish_reason
            raise EngineError(
                f"judge model gave no valid answer after {1 + self.output_retries} tries: {problem}"
            )
        except EngineError:
            count(self.usage, errors=1)
            raise

    def _retry_body(
        self, first: dict[str, Any], last: dict[str, Any], attempt: int, finish: Any
    ) -> dict[str, Any]:
        """The next try: a cut-off answer gets more room; otherwise a different sample,
        since greedy decoding would repeat the same invalid answer."""
        retry = {**last, "seed": attempt}
        if finish == "length":
            retry["max_tokens"] = min(int(last.get("max_tokens", self.max_tokens)) * 2, 8192)
        elif not first.get("temperature"):
            retry["temperature"] = 0.7
        return retry

    # -- the judge interface ------------------------------------------------------------
    async def relevance(self, query: str, obj: Mapping[str, Any]) -> Relevance:
        prompt = templates.render(
            templates.RELEVANCE, query=query, object=json.dumps(obj, ensure_ascii=False, indent=1)
        )
        body = self._body(
            [{"role": "user", "content": prompt}],
            self.model,
            templates.relevance_schema(self.explanation_max_chars),
        )

        def parse(text: str) -> Relevance:
            data = _json_object(text)
            score = _integer(data["score"], 0, 2)
            return Relevance.of(score, str(data.get("explanation", "")).strip())

        value, *_ = await self._call(body, templates.RELEVANCE, parse)
        return value

    async def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Generation:
        target, served = self.routes.resolve(model)
        return await target.generate_served(messages, served, params)

    async def generate_served(
        self, messages: list[dict[str, Any]], served: str, params: Mapping[str, Any] | None
    ) -> Generation:
        body = self._body(messages, served, None, params, max_tokens=self.generation_max_tokens)
        _, texts, p, c, finish = await self._call(body, "generate")
        return Generation(texts[0], texts, p, c, served, finish)

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
        names = dimension_names(dimensions)
        scale = {"min_score": min_score, "max_score": max_score}
        dimension_note = (
            ', and "dimensions", an object with an integer score for each of: ' + ", ".join(names)
            if names
            else ""
        )
        answer = templates.render(templates.SCORE_ANSWER, **scale, dimension_note=dimension_note)
        criteria = "\n".join(
            f"- {d['dimension']}: {d.get('description') or d['dimension']}"
            for d in dimensions or []
        )
        if prompt_template:
            # A user's template (Qianfan's templateContent): its slots are filled, and the
            # texts it does not place itself are appended, so the judge always sees them.
            values = {**scale, "criteria": criteria, **variables}
            parts = [templates.fill(prompt_template, values)]
            placed = templates.slots(prompt_template)
            for key in ("input", "output", "reference"):
                if key not in placed and variables.get(key):
                    parts.append(f"{key.capitalize()}:\n{variables[key]}")
            prompt = "\n\n".join([*parts, answer])
        else:
            base = {"input": "", "output": "", "reference": "", **variables}
            prompt = templates.render(templates.SCORE, **scale, criteria=criteria, **base)
            prompt = f"{prompt}\n{answer}"
        schema = templates.score_schema(
            max_score, names or None, min_score, self.explanation_max_chars
        )
        body = self._body([{"role": "user", "content": prompt}], self.model, schema, params)

        def parse(text: str) -> Score:
            data = _json_object(text)
            value = _integer(data["score"], min_score, max_score)
            per: dict[str, int] | None = None
            if names:
                got = data["dimensions"]
                per = {n: _integer(got[n], min_score, max_score, n) for n in names}
            return Score(value, per, str(data.get("explanation", "")).strip())

        try:
            value, *_ = await self._call(body, templates.SCORE, parse)
        except EngineUnavailable:
            raise
        except EngineError as exc:
            # Qianfan counts an answer the judge could not score in its -1 bucket.
            return Score(None, None, f"unscorable: {exc}")
        return value

    async def json_score(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> float:
        target, served = self.routes.resolve(model)
        return await target.json_score_served(messages, metadata, served, params)

    async def json_score_served(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        served: str,
        params: Mapping[str, Any] | None,
    ) -> float:
        # Spice sends {input, actual, ideal} as metadata beside an empty user message and
        # leaves the prompt to the judge model's parameterized prompt ({{ input }} ...):
        # fill those slots here; with no prompt at all, use ours.
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
        filled = [
            {**m, "content": templates.fill(m["content"], values)}
            if isinstance(m.get("content"), str)
            else m
            for m in messages
        ]
        # Our prompt asks for 0.0-1.0 (Spice's runtime reads any number, but takes the
        # scale from the prompt, and here the prompt is ours): an answer off it is
        # invalid, re-asked, and after the retries fails the case (Spice fails an eval
        # whose judge gives no usable score), never clamped into a number nobody gave.
        bounds: tuple[float, float] | None = None
        if not any(isinstance(m.get("content"), str) and m["content"].strip() for m in filled):
            base = {"input": "", "actual": "", "ideal": "", **values}
            filled = [{"role": "user", "content": templates.render(templates.JSON_SCORE, **base)}]
            bounds = templates.JSON_SCORE_RANGE
        schema = templates.json_score_schema(self.explanation_max_chars, bounds)
        body = self._body(filled, served, schema, params)

        def parse(text: str) -> float:
            return _number(_json_object(text)["score"], bounds)

        value, *_ = await self._call(body, templates.JSON_SCORE, parse)
        return value

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: Mapping[str, Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Structured:
        target, served = self.routes.resolve(model)
        return await target.structured_served(messages, schema, served, params)

    async def structured_served(
        self,
        messages: list[dict[str, Any]],
        schema: Mapping[str, Any],
        served: str,
        params: Mapping[str, Any] | None,
    ) -> Structured:
        """The messages as they are, with ``schema`` as the response format (``[judge]
        structured``) and the judgement token limit (``params`` may raise it); the reply
        parsed as JSON and validated against ``schema``, re-asked (bounded) while it is
        not valid."""
        validator = _validator(schema)
        body = self._body(messages, served, dict(schema), params, schema_name="answer")

        def parse(text: str) -> dict[str, Any]:
            data = _json_object(text)
            problem = jsonschema.exceptions.best_match(validator.iter_errors(data))
            if problem is not None:
                where = "/".join(str(p) for p in problem.absolute_path) or "the answer"
                raise ValueError(f"{where} does not match the schema: {problem.message[:200]}")
            return data

        value, _, p, c, finish = await self._call(body, "structured", parse)
        return Structured(value, p, c, served, finish)


def _validator(schema: Mapping[str, Any]) -> Any:
    """A validator of ``schema``; a schema that is not one (or whose root is not an
    object) is the caller's error, raised as ``EngineError`` before any request."""
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise EngineError(
            f"the answer's schema is not a valid JSON schema: {exc.message}"
        ) from None
    if schema.get("type") != "object":
        raise EngineError('structured output needs a schema whose root is {"type": "object"}')
    return cls(schema)


def make_backend(
    kind: str, options: Mapping[str, Any], *, cache: JudgeCache, usage: Usage
) -> GenerationBackend:
    """The backend a ``[judge.models]`` entry routes to (see :mod:`.routing`): a mock, or
    an OpenAI-compatible server sharing the judge's cache and usage counters."""
    if kind == "mock":
        return MockJudge({})
    return OpenAIJudge(options, cache=cache, usage=usage)


if TYPE_CHECKING:  # mypy proves the class serves what the server calls
    from evaldock.engines.protocols import GenerationBackend, Judge

    def _judge(engine: OpenAIJudge) -> Judge:
        return engine

    def _generation_backend(engine: OpenAIJudge) -> GenerationBackend:
        return engine
