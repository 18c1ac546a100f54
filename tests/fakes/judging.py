"""Shared bits of the judge tests (pytest-asyncio is not used: each test runs its own
event loop with ``asyncio.run``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from evaldock.engines.judge.openai import OpenAIJudge
from tests.fakes.openai_server import FakeOpenAI

SHIRT = {"detail_desc": "Straight-cut, striped shirt in cotton"}


def run(coro_factory: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await coro_factory()

    return asyncio.run(main())


def judge_for(*servers: FakeOpenAI, **options: Any) -> OpenAIJudge:
    base = {"urls": [s.url for s in servers], "model": "fake-model", "backoff": 0.01}
    return OpenAIJudge({**base, **options})


def with_judge(
    servers: tuple[FakeOpenAI, ...] | FakeOpenAI,
    use: Callable[[OpenAIJudge], Awaitable[Any]],
    **options: Any,
) -> Any:
    """Build a judge, run ``use(judge)`` in a fresh event loop, always close the judge."""
    if isinstance(servers, FakeOpenAI):
        servers = (servers,)

    async def go() -> Any:
        judge = judge_for(*servers, **options)
        try:
            return await use(judge)
        finally:
            await judge.aclose()

    return asyncio.run(go())
