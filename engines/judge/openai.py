"""The real judge: any OpenAI-compatible chat-completions server (vLLM in production).

Structured output (a JSON schema, vLLM's guided decoding) keeps every score valid;
requests are spread round-robin over the configured base URLs, bounded in flight,
retried with backoff on 429/5xx/timeouts, and answered from the cache when the very same
request was answered before.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import EngineError, EngineUnavailable
from . import prompts
from .base import Generation, Relevance, Score, UnknownModel
from .cache import JudgeCache, cache_key

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
SETTING_HINT = (
    "set EVALDOCK_JUDGE_URLS (comma-separated base URLs ending in /v1, e.g. "
    "http://127.0.0.1:8000/v1) and EVALDOCK_JUDGE_MODEL, or [judge] urls/model in the TOML file"
)


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    invalid_outputs: int = 0


class OpenAIJudge:
    def __init__(self, options: Mapping[str, Any]) -> None:
        urls = options.get("urls") or []
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if not urls:
            raise EngineUnavailable("the openai judge has no server to talk to", SETTING_HINT)
        self.urls = [u.rstrip("/") for u in urls]
        self.model = str(options.get("model") or "")
        self.api_key = str(options.get("api_key") or "EMPTY")
        self.timeout = float(options.get("timeout", 60.0))
        self.max_retries = int(options.get("max_retries", 4))
        self.backoff = float(options.get("backoff", 0.5))
        self.output_retries = int(options.get("output_retries", 2))
        self.temperature = float(options.get("temperature", 0.0))
        self.max_tokens = int(options.get("max_tokens", 512))
        # "json_schema" (OpenAI/vLLM response_format) or "guided_json" (older vLLM).
        self.structured = str(options.get("structured", "json_schema"))
        # Vendor model name -> served model, e.g. {"gpt-4o-mini": "SmolLM2-135M-Instruct"}.
        self.aliases: dict[str, str] = {
            str(k): str(v) for k, v in (options.get("models") or {}).items()
        }
        self._gate = asyncio.Semaphore(int(options.get("concurrency", 256)))
        self._next_url = itertools.cycle(range(len(self.urls)))
        self._client = httpx.AsyncClient(
            timeout=self.timeout,
            limits=httpx.Limits(
                max_connections=int(options.get("concurrency", 256)), max_keepalive_connections=64
            ),
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        self.cache = JudgeCache(options.get("cache_path"))
        self.usage = Usage()

    @property
    def name(self) -> str:
        return f"openai:{self.model or 'served'}"

    @property
    def signature(self) -> str:
        return (
            f"judge:openai|model:{self.model}|prompt:{prompts.version(prompts.RELEVANCE)}"
            f"|temp:{self.temperature:g}|structured:{self.structured}"
        )

    # -- lifecycle ----------------------------------------------------------------------
    async def check(self) -> None:
        """Every base URL answers /models and serves the configured model."""
        for url in self.urls:
            try:
                r = await self._client.get(f"{url}/models", timeout=min(self.timeout, 10.0))
                r.raise_for_status()
                served = [m.get("id") for m in r.json().get("data", [])]
            except (httpx.HTTPError, ValueError) as exc:
                raise EngineUnavailable(
                    f"judge server {url} did not answer GET /models ({exc})",
                    "start the server (e.g. `vllm serve MODEL`) or fix EVALDOCK_JUDGE_URLS",
                ) from None
            if not self.model and served:
                self.model = str(served[0])  # one served model and none named: use it
            if self.model not in served:
                raise EngineUnavailable(
                    f"judge server {url} does not serve model '{self.model}' "
                    f"(it serves: {', '.join(map(str, served)) or 'nothing'})",
                    "set EVALDOCK_JUDGE_MODEL / [judge] model to one of those",
                )

    async def aclose(self) -> None:
        await self._client.aclose()
        await self.cache.aclose()

    # -- transport ----------------------------------------------------------------------
    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        last = ""
        for attempt in range(self.max_retries + 1):
            url = self.urls[next(self._next_url)]
            try:
                async with self._gate:
                    self.usage.requests += 1
                    r = await self._client.post(f"{url}/chat/completions", json=body)
                if r.status_code < 400:
                    return r.json()
                last = f"HTTP {r.status_code} from {url}: {r.text[:200]}"
                if r.status_code not in RETRY_STATUS:
                    raise EngineError(f"judge request failed: {last}")
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__} talking to {url}"
            except ValueError:
                last = f"non-JSON answer from {url}"
            if attempt < self.max_retries:
                self.usage.retries += 1
                # Exponential backoff with full jitter, so a fleet does not retry in step.
                await asyncio.sleep(random.uniform(0, self.backoff * 2**attempt))
        raise EngineError(f"judge request failed after {self.max_retries + 1} tries: {last}")

    def _body(
        self,
        messages: list[dict[str, Any]],
        model: str,
        schema: dict[str, Any] | None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            **dict(params or {}),
        }
        if schema is not None:
            if self.structured == "guided_json":
                body["guided_json"] = schema
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "judgement", "schema": schema, "strict": True},
                }
        return body

    async def _complete(self, body: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
        """The first choice's text and the usage; cached under the whole request."""
        key = cache_key({"backend": "openai", "kind": kind, "request": body})
        cached = await self.cache.get(key)
        if cached is not None:
            return cached["text"], cached["usage"]
        answer = await self._post(body)
        try:
            text = answer["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise EngineError("judge answer has no choices[0].message.content") from None
        usage = answer.get("usage") or {}
        self.usage.prompt_tokens += int(usage.get("prompt_tokens", 0))
        self.usage.completion_tokens += int(usage.get("completion_tokens", 0))
        return text, {
            "prompt_tokens": int(usage.get("prompt_tokens", 0)),
            "completion_tokens": int(usage.get("completion_tokens", 0)),
            "_key": key,
        }

    async def _structured(self, body: dict[str, Any], kind: str, parse: Any) -> Any:
        """Ask, parse with ``parse``; retry invalid output, cache only valid answers."""
        problem = ""
        for attempt in range(self.output_retries + 1):
            # A retry must not hit the cache nor repeat the same sampling exactly.
            attempt_body = body if attempt == 0 else {**body, "seed": attempt}
            text, usage = await self._complete(attempt_body, kind)
            try:
                value = parse(json.loads(text))
            except (ValueError, KeyError, TypeError) as exc:
                self.usage.invalid_outputs += 1
                problem = f"{exc} in {text[:120]!r}"
                continue
            key = usage.pop("_key", None)
            if key is not None:
                await self.cache.put(key, {"text": text, "usage": usage}, self.signature)
            return value
        raise EngineError(
            f"judge gave no valid answer after {self.output_retries + 1} tries: {problem}"
        )

    def served_model(self, name: str | None) -> str:
        if name is None:
            return self.model
        if name in self.aliases:
            return self.aliases[name]
        if name == self.model:
            return name
        raise UnknownModel(name, sorted({*self.aliases, self.model}))

    # -- the judge interface ------------------------------------------------------------
    async def relevance(self, query: str, obj: Mapping[str, Any]) -> Relevance:
        prompt = prompts.render(
            prompts.RELEVANCE, query=query, object=json.dumps(obj, ensure_ascii=False, indent=1)
        )
        body = self._body(
            [{"role": "user", "content": prompt}], self.model, prompts.RELEVANCE_SCHEMA
        )

        def parse(data: dict[str, Any]) -> Relevance:
            score = data["score"]
            if not isinstance(score, int) or isinstance(score, bool) or score not in (0, 1, 2):
                raise ValueError(f"score {score!r} is not 0, 1 or 2")
            return Relevance.of(score, str(data.get("explanation", "")).strip())

        return await self._structured(body, prompts.RELEVANCE, parse)

    async def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Generation:
        served = self.served_model(model)
        body = self._body(messages, served, None, params)
        text, usage = await self._complete(body, "generate")
        key = usage.pop("_key", None)
        if key is not None:
            await self.cache.put(key, {"text": text, "usage": usage}, self.signature)
        return Generation(text, served, usage["prompt_tokens"], usage["completion_tokens"])

    async def score(
        self,
        *,
        variables: Mapping[str, str],
        max_score: int,
        template: str | None = None,
        dimensions: list[dict[str, str]] | None = None,
    ) -> Score:
        names = [d["dimension"] for d in dimensions or []]
        criteria = template or "\n".join(
            f"- {d['dimension']}: {d.get('description', '')}" for d in dimensions or []
        )
        prompt = prompts.render(
            prompts.SCORE,
            max_score=max_score,
            criteria=criteria,
            input=variables.get("input", ""),
            output=variables.get("output", ""),
            reference=variables.get("reference", ""),
            dimension_note=(', and "dimensions", a score per dimension: ' + ", ".join(names))
            if names
            else "",
        )
        body = self._body(
            [{"role": "user", "content": prompt}],
            self.model,
            prompts.score_schema(max_score, names or None),
        )

        def parse(data: dict[str, Any]) -> Score:
            value = data["score"]
            if not isinstance(value, int) or not 1 <= value <= max_score:
                raise ValueError(f"score {value!r} outside 1..{max_score}")
            dims = data.get("dimensions") if names else None
            return Score(value, str(data.get("explanation", "")), dims)

        try:
            return await self._structured(body, prompts.SCORE, parse)
        except EngineError as exc:
            # Qianfan counts an unscorable answer in its -1 bucket instead of failing.
            return Score(None, str(exc))

    async def json_score(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        *,
        model: str | None = None,
    ) -> float:
        body = self._body(messages, self.served_model(model), None)
        body["metadata"] = dict(metadata)

        def parse(data: Any) -> float:
            value = data["score"]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"score {value!r} is not a number")
            return float(value)

        return await self._structured(body, "json_score", parse)
