"""``WorkerPool.run(retire=True)`` and :func:`retire_worker`: the worker that ran the task
is killed when it ends (answered, raised) and a fresh one takes its place; a plain task's
worker is kept and reused."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import pytest

from evaldock.server.compute import TaskContext, WorkerPool
from evaldock.server.compute.pool import retire_worker


def set_global(ctx: TaskContext) -> int:
    """Leave state behind in the worker's interpreter; its pid."""
    sys.modules["json"].EVALDOCK_POOL_LEAK = True  # type: ignore[attr-defined]
    return os.getpid()


@retire_worker
def set_global_marked(ctx: TaskContext) -> int:
    return set_global(ctx)


@retire_worker
def raise_marked(ctx: TaskContext) -> int:
    sys.modules["json"].EVALDOCK_POOL_LEAK = True  # type: ignore[attr-defined]
    raise ValueError(os.getpid())


def read_global(ctx: TaskContext) -> tuple[int, bool]:
    return os.getpid(), hasattr(sys.modules["json"], "EVALDOCK_POOL_LEAK")


def _run(body: Any) -> None:
    async def main() -> None:
        pool = WorkerPool(None, workers=1, request_workers=1)
        try:
            await body(pool)
        finally:
            await pool.close()

    asyncio.run(main())


async def _replaced(pool: WorkerPool) -> None:
    """Wait (bounded) for the background replacement of a retired worker."""
    for _ in range(200):
        if not pool._replacing and len(pool.pids) >= 1:
            return
        await asyncio.sleep(0.05)


def test_a_plain_task_leaves_its_worker_to_the_next() -> None:
    async def body(pool: WorkerPool) -> None:
        first = await pool.run(set_global)
        assert await pool.run(read_global) == (first, True)  # the same interpreter
        assert pool.retired == 0

    _run(body)


@pytest.mark.parametrize("how", ["argument", "marked"])
def test_a_retiring_task_leaves_nothing_to_the_next(how: str) -> None:
    async def body(pool: WorkerPool) -> None:
        if how == "argument":
            first = await pool.run(set_global, retire=True)
        else:
            first = await pool.run(set_global_marked)
        assert pool.retired == 1
        await _replaced(pool)
        assert first not in pool.pids
        later, leaked = await pool.run(read_global)
        assert later != first and leaked is False

    _run(body)


def test_a_retiring_task_that_raises_is_retired_too() -> None:
    async def body(pool: WorkerPool) -> None:
        with pytest.raises(ValueError) as raised:
            await pool.run(raise_marked, lane="request")
        await _replaced(pool)
        later, leaked = await pool.run(read_global, lane="request")
        assert later != raised.value.args[0] and leaked is False
        assert pool.retired == 1

    _run(body)
