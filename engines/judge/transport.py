"""HTTP to a fleet of OpenAI-compatible servers: least outstanding, bounded, retried.

Each request goes to the server with the fewest requests outstanding (a vLLM fleet; see
:mod:`.fleet`, which also takes a failing server out and health-checks it back in), at most
``concurrency`` in flight in all and ``per_url_concurrency`` per server, retried with
exponential backoff and full jitter on 429, 5xx, timeouts and connection errors (a retry
goes to another server when there is one). Cancelling the calling task closes its HTTP
request, which makes vLLM abort the generation. Nothing here knows what is asked:
:mod:`.openai` builds the bodies.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx

from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.judge.base import Usage, count
from evaldock.engines.judge.fleet import EJECT_MAX_SECONDS, EJECT_SECONDS, Fleet, Server

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
URLS_HINT = "fix EVALDOCK_JUDGE_URLS / [judge] urls (base URLs ending in /v1)"


class ChatTransport:
    """``POST {url}/chat/completions`` and ``GET {url}/models`` over ``urls``.

    ``usage`` counts requests and retries. Clients are created on first use, inside the
    event loop that drives them, so building one needs no loop.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        usage: Usage,
        api_key: str = "EMPTY",
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        concurrency: int = 256,
        pool_size: int = 8,
        per_url_concurrency: int = 0,
        eject_seconds: float = EJECT_SECONDS,
        eject_max_seconds: float = EJECT_MAX_SECONDS,
    ) -> None:
        if not urls:
            raise ValueError("a transport needs at least one base URL")
        if concurrency < 1:
            raise EngineUnavailable(f"[judge] concurrency = {concurrency}", "set it to 1 or more")
        self.urls = [str(u).rstrip("/") for u in urls]
        self.usage = usage
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        # httpx's connection pool costs CPU per request in proportion to its size (about
        # 2 ms at 8 connections, 6 ms at 64, 13 ms at 256 here), so the in-flight budget
        # is split over small pools. A slot is (pool, permit): taking one bounds the
        # requests in flight to `concurrency`, and no pool ever holds more than
        # `pool_size`. Last in, first out, so a light load keeps reusing one connection.
        self.pool_size = max(1, pool_size)
        pools = -(-concurrency // self.pool_size)
        self._slots: asyncio.LifoQueue[int] = asyncio.LifoQueue()
        for i in range(concurrency):
            self._slots.put_nowait(i % pools)
        self._clients: list[httpx.AsyncClient | None] = [None] * pools
        self.fleet = Fleet(
            self.urls,
            check=self.healthy,
            per_url_concurrency=per_url_concurrency,
            eject_seconds=eject_seconds,
            eject_max_seconds=eject_max_seconds,
        )

    def _http(self, pool: int = 0) -> httpx.AsyncClient:
        client = self._clients[pool]
        if client is None:
            size = self.pool_size
            client = self._clients[pool] = httpx.AsyncClient(
                timeout=self.timeout,
                # Keep every connection: reopening one per request halves throughput.
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                headers={"Authorization": f"Bearer {self.api_key}"},
            )
        return client

    async def served_models(self, url: str) -> list[str]:
        """The model ids ``url`` serves; EngineUnavailable saying what to fix otherwise."""
        try:
            r = await self._http().get(f"{url}/models", timeout=min(self.timeout, 10.0))
        except httpx.HTTPError as exc:
            raise EngineUnavailable(
                f"judge server {url} did not answer GET /models "
                f"({type(exc).__name__}: {exc or 'no detail'})",
                "start it (scripts/serve_judge.sh, or `python -m vllm.entrypoints.openai."
                f"api_server --model DIR --served-model-name NAME`; see docs/real-mode.md) or "
                f"{URLS_HINT}",
            ) from None
        if r.status_code in (401, 403):
            raise EngineUnavailable(
                f"judge server {url} refused the API key (HTTP {r.status_code} on GET /models)",
                "set EVALDOCK_JUDGE_API_KEY / [judge] api_key",
            )
        try:
            r.raise_for_status()
            return [str(m["id"]) for m in r.json()["data"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            guess = "" if url.endswith("/v1") else f"did you mean {url}/v1? "
            raise EngineUnavailable(
                f"judge server {url} answered GET /models with HTTP {r.status_code}, "
                "not an OpenAI model list",
                guess + URLS_HINT,
            ) from None

    async def healthy(self, url: str) -> bool:
        """The fleet's health check: ``GET {url}/models`` answers below 500."""
        try:
            r = await self._http().get(f"{url}/models", timeout=min(self.timeout, 5.0))
        except httpx.HTTPError:
            return False
        return r.status_code < 500

    async def chat(self, body: dict[str, Any], *, at: str | None = None) -> dict[str, Any]:
        """One chat completion, retried on transient failures; the answer's JSON.

        ``at`` (one of :attr:`urls`) pins every try to that server (the start-up probe
        asks each one); otherwise each try goes where :class:`.fleet.Fleet` says."""
        last = ""
        pinned = at.rstrip("/") if at else None
        if pinned is not None and pinned not in self.urls:
            raise ValueError(f"{at} is not one of this transport's URLs")
        server: Server | None = None
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            pool = await self._slots.get()
            try:
                # A retry goes to another server when there is one.
                server = await self.fleet.acquire(avoid=server, at=pinned)
                url = server.url
                ok = failed = False
                started = time.perf_counter()
                try:
                    count(self.usage, requests=1)
                    r = await self._http(pool).post(f"{url}/chat/completions", json=body)
                    ok = r.status_code < 400
                    failed = r.status_code >= 500
                except (httpx.TimeoutException, httpx.TransportError):
                    failed = True
                    raise
                finally:
                    self.fleet.release(server, time.perf_counter() - started, ok=ok, failed=failed)
            except httpx.TimeoutException as exc:
                last = f"{type(exc).__name__} after {self.timeout:g}s from {url}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__} talking to {url}: {exc}"
            else:
                try:
                    if r.status_code < 400:
                        answer = r.json()
                        if isinstance(answer, dict):
                            return answer
                        last = f"HTTP {r.status_code} from {url} is not a JSON object"
                    else:
                        last = f"HTTP {r.status_code} from {url}: {r.text[:300]}"
                        if r.status_code not in RETRY_STATUS:
                            raise EngineError(f"judge request failed: {last}")
                        wait = retry_after(r)
                except ValueError:
                    last = f"HTTP {r.status_code} from {url} is not JSON"
            finally:
                self._slots.put_nowait(pool)
            if attempt < self.max_retries:
                count(self.usage, retries=1)
                # Exponential backoff with full jitter, so a fleet does not retry in step.
                cap = min(self.max_backoff, self.backoff * 2**attempt)
                await asyncio.sleep(min(wait, self.max_backoff) if wait else random.uniform(0, cap))
        raise EngineError(f"judge request failed after {self.max_retries + 1} tries: {last}")

    async def aclose(self) -> None:
        await self.fleet.aclose()
        for i, client in enumerate(self._clients):
            if client is not None:
                await client.aclose()
                self._clients[i] = None


def retry_after(r: httpx.Response) -> float | None:
    """Seconds a 429/503 asks us to wait (``Retry-After`` in seconds), if it says."""
    raw = r.headers.get("retry-after", "")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None
