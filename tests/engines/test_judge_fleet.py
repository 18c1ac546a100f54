"""The judge's fleet client against several loopback OpenAI-compatible servers: least
outstanding requests, a failing server taken out and health-checked back in, per-server
concurrency, and the per-URL /metrics families."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import generate_latest

from evaldock.engines.errors import EngineUnavailable
from evaldock.engines.judge.base import Usage
from evaldock.engines.judge.config import fleet_options
from evaldock.engines.judge.fleet import Fleet, public_url
from evaldock.engines.judge.transport import ChatTransport
from evaldock.server.control.metrics import Metrics
from tests.fakes.openai_server import FakeOpenAI

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


def with_transport(
    urls: list[str], use: Callable[[ChatTransport], Awaitable[Any]], **options: Any
) -> Any:
    async def go() -> Any:
        transport = ChatTransport(urls, usage=Usage(), backoff=0.01, **options)
        try:
            return await use(transport)
        finally:
            await transport.aclose()

    return asyncio.run(go())


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (at most 20 s) for something the fleet does in the background."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def test_a_server_that_is_down_is_taken_out_and_comes_back() -> None:
    down = FakeOpenAI()  # its port is free: connection refused until it starts
    with FakeOpenAI() as a, FakeOpenAI() as b:
        urls = [a.url, b.url, down.url]

        async def use(t: ChatTransport) -> None:
            out = t.fleet.server(down.url)
            answers = await asyncio.gather(*(t.chat(BODY) for _ in range(30)))
            assert all(r["choices"] for r in answers)
            assert not out.up and out.failures >= 1
            assert a.count + b.count == 30
            # Out: the next requests all go to the healthy two, none is even tried there.
            tried = out.sent
            await asyncio.gather(*(t.chat(BODY) for _ in range(10)))
            assert out.sent == tried and a.count + b.count == 40
            # Its health checks keep failing (with backoff) until it answers again.
            await until(lambda: out.checks >= 2, "a second health check")
            assert not out.up
            down.start()
            await until(lambda: out.up, "the server back in")
            await asyncio.gather(*(t.chat(BODY) for _ in range(30)))
            assert down.count > 0 and out.up

        try:
            with_transport(urls, use, eject_seconds=0.05, eject_max_seconds=0.2)
        finally:
            down.stop()


def test_a_server_answering_5xx_is_taken_out() -> None:
    with FakeOpenAI() as good, FakeOpenAI() as bad:
        bad.script.extend(["500"] * 1000)

        async def use(t: ChatTransport) -> None:
            answers = await asyncio.gather(*(t.chat(BODY) for _ in range(40)))
            assert all(r["choices"] for r in answers)
            out = t.fleet.server(bad.url)
            # Every request it got (sent before the first answer came back) failed...
            assert not out.up and out.failures == out.requests == bad.count >= 1
            # ...and once out, it gets none: everything goes to the good one.
            tried = bad.count
            for _ in range(10):
                await t.chat(BODY)
            assert bad.count == tried and good.count == 50

        # Its /models answers, so a health check would let it back in for one more try:
        # a backoff longer than the test keeps it out.
        with_transport([good.url, bad.url], use, eject_seconds=30, eject_max_seconds=60)


def test_the_slow_server_gets_fewer_requests() -> None:
    with FakeOpenAI() as fast, FakeOpenAI(delay=1.0) as slow:

        async def use(t: ChatTransport) -> None:
            await asyncio.gather(*(t.chat(BODY) for _ in range(60)))

        with_transport([slow.url, fast.url], use, concurrency=8)
        assert fast.count + slow.count == 60
        # Round-robin sent each 30; least outstanding sends the slow one what it finishes.
        assert slow.count * 2 < fast.count, (slow.count, fast.count)


def test_per_url_concurrency_is_honoured() -> None:
    with FakeOpenAI(delay=0.05) as a, FakeOpenAI(delay=0.05) as b:

        async def use(t: ChatTransport) -> int:
            answers = await asyncio.gather(*(t.chat(BODY) for _ in range(24)))
            assert len(answers) == 24
            return sum(s.outstanding for s in t.fleet.servers)

        left = with_transport([a.url, b.url], use, concurrency=64, per_url_concurrency=3)
        assert left == 0
        assert a.count + b.count == 24
        # 24 requests of 50 ms at once: the bound is reached, never passed.
        assert a.max_in_flight == b.max_in_flight == 3


def test_cancelled_waiters_leave_no_room_taken() -> None:
    with FakeOpenAI(delay=0.2) as a:

        async def use(t: ChatTransport) -> None:
            tasks = [asyncio.create_task(t.chat(BODY)) for _ in range(6)]
            await until(lambda: a.in_flight == 1, "the first request in flight")
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            server = t.fleet.servers[0]
            assert server.outstanding == 0 and not t.fleet._waiters
            # The room is free: the next requests go through one at a time.
            await asyncio.gather(*(t.chat(BODY) for _ in range(3)))

        with_transport([a.url], use, per_url_concurrency=1)
        assert a.max_in_flight == 1


def test_a_pinned_request_goes_where_it_is_told() -> None:
    with FakeOpenAI() as a, FakeOpenAI() as b:

        async def use(t: ChatTransport) -> None:
            for _ in range(3):
                await t.chat(BODY, at=b.url + "/")

        with_transport([a.url, b.url], use)
        assert (a.count, b.count) == (0, 3)


def test_metrics_per_url_without_credentials() -> None:
    with FakeOpenAI() as a:
        secret_url = a.url.replace("http://", "http://user:s3cret@")
        down = "http://127.0.0.1:9/v1"

        async def use(t: ChatTransport) -> str:
            await asyncio.gather(*(t.chat(BODY) for _ in range(4)))
            return generate_latest(Metrics().registry).decode()

        text = with_transport([secret_url, down], use)
    assert "s3cret" not in text and "user" not in text
    label = f'url="{a.url}"'
    assert f"evaldock_judge_backend_requests_total{{{label}}} 4.0" in text
    assert f"evaldock_judge_backend_up{{{label}}} 1.0" in text
    assert f"evaldock_judge_backend_outstanding{{{label}}} 0.0" in text
    assert f"evaldock_judge_backend_seconds_count{{{label}}} 4.0" in text
    assert 'evaldock_judge_backend_up{url="http://127.0.0.1:9/v1"} 0.0' in text
    assert 'evaldock_judge_backend_failures_total{url="http://127.0.0.1:9/v1"} ' in text
    # A closed transport's fleet leaves /metrics.
    assert (
        "evaldock_judge_backend_requests_total{" not in generate_latest(Metrics().registry).decode()
    )


def test_public_url_and_settings() -> None:
    assert public_url("https://u:p@gpu1.example:8000/v1?key=x#f") == "https://gpu1.example:8000/v1"
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    assert fleet_options({"per_url_concurrency": "4"}) == {
        "per_url_concurrency": 4,
        "eject_seconds": 1.0,
        "eject_max_seconds": 30.0,
    }
    with pytest.raises(EngineUnavailable, match="per_url_concurrency"):
        fleet_options({"per_url_concurrency": "many"})

    async def check(url: str) -> bool:
        return True

    with pytest.raises(EngineUnavailable, match="per_url_concurrency"):
        Fleet(["http://x/v1"], check=check, per_url_concurrency=-1)
    with pytest.raises(EngineUnavailable, match="eject_max_seconds"):
        Fleet(["http://x/v1"], check=check, eject_seconds=5, eject_max_seconds=1)


def test_with_every_server_out_requests_still_go_and_an_answer_brings_it_back() -> None:
    with FakeOpenAI() as only:
        only.script.append("500")

        async def use(t: ChatTransport) -> None:
            answer = await t.chat(BODY)  # 500, taken out; the retry goes to it all the same
            server = t.fleet.servers[0]
            assert answer["choices"] and server.up and server.failures == 1

        with_transport([only.url], use, eject_seconds=30, eject_max_seconds=60)
        assert only.count == 2
