"""Worker processes with limits: a task answers, or is stopped from outside with a reason
that names the setting to raise; cancelling kills it; a crash fails it, never the pool."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from evaldock.server.compute import LimitExceeded, TaskLimits, WorkerCrashed, WorkerPool
from evaldock.server.db import Database
from evaldock.server.jobs import Job, JobRunner
from evaldock.server.load import load_settings
from tests.server import compute_tasks as tasks

CPU_SETTING = "[jobs] task_cpu_seconds"


def _run(body: Callable[[WorkerPool], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        pool = WorkerPool(None, workers=2, request_workers=1, **kw)
        try:
            await body(pool)
        finally:
            await pool.close()

    asyncio.run(main())


async def _database(tmp_path: Path) -> Database:
    db = Database(tmp_path / "jobs.sqlite3")
    await db.open()
    await db.migrate("core", "evaldock.server")
    return db


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child not reaped yet is a zombie: dead for our purposes.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_task_answers_with_its_messages_in_order() -> None:
    async def body(pool: WorkerPool) -> None:
        said: list[str] = []
        progress: list[tuple[int, int | None]] = []

        async def on_say(text: str) -> None:
            said.append(text)

        async def on_progress(done: int, total: int | None) -> None:
            progress.append((done, total))

        assert await pool.run(tasks.add, 2, 3, on_say=on_say, on_progress=on_progress) == 5
        assert said == ["adding 2 and 3"]
        assert progress[-1] == (2, 2)  # coalesced: the newest value is never lost
        worker = await pool.run(tasks.pid)
        assert worker != os.getpid()

    _run(body)


def test_the_tasks_own_exception_comes_back_as_itself() -> None:
    async def body(pool: WorkerPool) -> None:
        with pytest.raises(tasks.Refused) as caught:
            await pool.run(tasks.refuse)
        assert str(caught.value) == "cell is over 16"
        assert (caught.value.name, caught.value.limit) == ("cell", 16)
        assert await pool.run(tasks.add, 1, 1) == 2  # the worker lives on

    _run(body)


@pytest.mark.parametrize(
    ("limits", "fn", "args", "limit", "setting"),
    [
        (
            TaskLimits(cpu_seconds=0.5),
            tasks.spin_forever,
            (),
            "CPU-time",
            "[jobs] task_cpu_seconds",
        ),
        (TaskLimits(wall_seconds=0.5), tasks.sleep, (30,), "wall-time", "[jobs] task_wall_seconds"),
        (TaskLimits(memory_mb=200), tasks.hold_memory, (400,), "memory", "[jobs] task_memory_mb"),
    ],
    ids=["cpu", "wall", "memory"],
)
def test_a_task_over_a_limit_is_killed_and_the_reason_names_the_setting(
    limits: TaskLimits, fn: Any, args: tuple[Any, ...], limit: str, setting: str
) -> None:
    async def body(pool: WorkerPool) -> None:
        before = set(pool.pids)
        with pytest.raises(LimitExceeded) as caught:
            await pool.run(fn, *args, limits=limits)
        assert caught.value.limit == limit and caught.value.setting == setting
        assert f"raise {setting}" in str(caught.value)
        # The worker that ran it is gone; the pool answers the next task with a fresh one.
        await asyncio.sleep(0.2)
        assert not any(_alive(p) for p in before - set(pool.pids) if p)
        assert await pool.run(tasks.add, 2, 2) == 4

    _run(body)


def test_a_surface_bound_names_its_own_setting() -> None:
    limits = TaskLimits().tighter("[spice] sql_timeout", wall_seconds=0.3)
    assert limits.wall_seconds == 0.3 and limits.cpu_seconds == TaskLimits().cpu_seconds
    # A bound looser than the default changes nothing.
    assert TaskLimits().tighter("[x] y", memory_mb=10**9) == TaskLimits()

    async def body(pool: WorkerPool) -> None:
        with pytest.raises(LimitExceeded, match=r"raise \[spice\] sql_timeout"):
            await pool.run(tasks.sleep, 30, limits=limits)

    _run(body)


def test_cancelling_the_caller_kills_the_task_at_once() -> None:
    async def body(pool: WorkerPool) -> None:
        running = asyncio.create_task(pool.run(tasks.spin_forever))
        await asyncio.sleep(0.5)
        busy = list(pool._busy)
        assert len(busy) == 1
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await asyncio.sleep(0.2)
        assert not _alive(busy[0].pid)
        assert await pool.run(tasks.add, 1, 2) == 3

    _run(body)


def test_a_task_cancelled_while_it_is_sent_leaves_no_answer_for_the_next() -> None:
    """A DELETE that lands while the task is still being handed to its worker: that
    worker must not go back idle with the task's answer on its way, or the next task
    there reads it as its own (an OpenAI run got another task's int for its grades)."""

    async def body(pool: WorkerPool) -> None:
        first = await pool.run(tasks.pid)  # one idle worker: every run below gets it
        running = asyncio.create_task(pool.run(tasks.add, 2, 3))
        await asyncio.sleep(0)  # the run is now awaiting the send to its worker
        time.sleep(0.2)  # a busy loop: the send's thread is done before the loop sees it
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert await pool.run(tasks.add, 1, 1) == 2
        assert first not in pool.pids  # the cancelled task's worker was replaced

    _run(body)


def test_a_crashed_worker_fails_its_task_with_the_signal() -> None:
    async def body(pool: WorkerPool) -> None:
        with pytest.raises(WorkerCrashed, match="SIGSEGV"):
            await pool.run(tasks.crash)
        assert await pool.run(tasks.add, 3, 4) == 7

    _run(body)


def test_two_cpu_heavy_tasks_run_in_two_processes_at_once() -> None:
    async def body(pool: WorkerPool) -> None:
        a, b = await asyncio.gather(pool.run(tasks.spin, 0.3), pool.run(tasks.spin, 0.3))
        assert a != b

    _run(body)


def test_a_worker_holding_memory_after_its_task_is_retired() -> None:
    async def body(pool: WorkerPool) -> None:
        first = await pool.run(tasks.pid)
        # recycle_mb=1: any worker is over it after a task, so each task gets a fresh one.
        second = await pool.run(tasks.pid)
        assert first != second

    _run(body, recycle_mb=1)


def test_engines_are_built_once_per_worker_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(None, {"server.data": str(tmp_path), "server.mode": "mock"}, {})

    async def main() -> None:
        pool = WorkerPool(settings, workers=1, request_workers=1)
        try:
            name, first, pid = await pool.run(tasks.engine_name, "embedder")
            again = await pool.run(tasks.engine_name, "embedder")
            assert name == "mock" and again == (name, first, pid)
        finally:
            await pool.close()

    asyncio.run(main())


def test_a_job_over_a_limit_fails_with_the_reason(tmp_path: Path) -> None:
    async def main() -> None:
        db = await _database(tmp_path)
        pool = WorkerPool(None, workers=1, request_workers=1, limits=TaskLimits(cpu_seconds=0.3))
        runner = JobRunner(db, pool=pool)

        async def handler(job: Job) -> None:
            await job.run_task(tasks.spin_forever)

        async def counted(job: Job) -> None:
            assert await job.run_task(tasks.add, 1, 1) == 2

        runner.register("spin", handler)
        runner.register("add", counted)
        async with db.transaction() as tx:
            await runner.submit(tx, "j1", "spin", "t")
            await runner.submit(tx, "j2", "add", "t")
        await runner.start()
        ended = await runner.wait("j1", timeout=30)
        assert ended is not None and ended.status == "failed"
        assert ended.error is not None and "[jobs] task_cpu_seconds" in ended.error
        done = await runner.wait("j2", timeout=30)
        assert done is not None and done.status == "completed" and done.processed == 2
        await runner.stop()
        await pool.close()
        await db.close()

    asyncio.run(main())


def test_cancelling_a_running_job_kills_its_task(tmp_path: Path) -> None:
    async def main() -> None:
        db = await _database(tmp_path)
        pool = WorkerPool(None, workers=1, request_workers=1)
        runner = JobRunner(db, pool=pool)
        started = asyncio.Event()

        async def handler(job: Job) -> None:
            started.set()
            await job.run_task(tasks.spin_forever)

        runner.register("spin", handler)
        async with db.transaction() as tx:
            await runner.submit(tx, "j1", "spin", "t")
        await runner.start()
        await started.wait()
        await asyncio.sleep(0.3)
        pids = [w.pid for w in pool._busy]
        assert await runner.cancel("j1")
        ended = await runner.wait("j1", timeout=10)
        assert ended is not None and ended.status == "cancelled"
        await asyncio.sleep(0.2)
        assert pids and not any(_alive(p) for p in pids)
        await runner.stop()
        await pool.close()
        await db.close()

    asyncio.run(main())


def test_wait_answers_at_the_timeout_for_a_job_still_running(tmp_path: Path) -> None:
    async def main() -> None:
        db = await _database(tmp_path)
        runner = JobRunner(db)
        async with db.transaction() as tx:
            await runner.submit(tx, "j1", "none-registered-yet", "t")
        view = await runner.wait("j1", timeout=0.1)
        assert view is not None and view.status == "queued"
        assert await runner.wait("nope", timeout=0.1) is None
        await db.close()

    asyncio.run(main())


def test_real_engines_that_compute_are_checked_in_a_worker_not_built_here(
    tmp_path: Path,
) -> None:
    from starlette.testclient import TestClient

    from evaldock.engines.errors import EngineUnavailable
    from evaldock.server.app import create_app

    flags = {
        "server.data": str(tmp_path),
        "server.mode": "real",
        "server.surfaces": ["spice"],
        "judge.impl": "mock",
    }
    # A real embedder that cannot be built stops the start-up with its fix, from the worker.
    broken = load_settings(None, {**flags, "engines.embedder.impl": "nope"}, {})
    app = create_app(broken)
    with pytest.raises(EngineUnavailable, match="unknown embedder engine 'nope'"):
        TestClient(app).__enter__()
    # The API process holds the judge only: embedders live in the workers.
    ok = load_settings(None, {**flags, "engines.embedder.impl": "mock"}, {})
    app = create_app(ok)
    with TestClient(app) as client:
        assert set(app.state.ctx.engines) == {"judge"}
        assert client.get("/_evaldock/health").status_code == 200


def test_an_attribute_that_does_not_unpickle_is_left_behind() -> None:
    async def body(pool: WorkerPool) -> None:
        with pytest.raises(tasks.Wrapped) as caught:
            await pool.run(tasks.wrap)
        assert str(caught.value) == "outer: cell is over 16"
        assert not hasattr(caught.value, "cause")  # it would not load here

    _run(body)


def test_the_request_lane_has_limits_of_its_own() -> None:
    request = TaskLimits().tighter("[jobs] request_task_seconds", wall_seconds=0.3)

    async def body(pool: WorkerPool) -> None:
        with pytest.raises(LimitExceeded, match=r"raise \[jobs\] request_task_seconds"):
            await pool.run(tasks.sleep, 30, lane="request")
        assert await pool.run(tasks.sleep, 0.5) != os.getpid()  # the job lane's are looser

    _run(body, request_limits=request)


def test_wait_learns_at_once_that_a_queued_job_was_forgotten(tmp_path: Path) -> None:
    async def main() -> None:
        db = await _database(tmp_path)
        runner = JobRunner(db)
        async with db.transaction() as tx:
            await runner.submit(tx, "j1", "never-claimed", "t")
        waiting = asyncio.create_task(runner.wait("j1", timeout=60))
        await asyncio.sleep(0.05)
        async with db.transaction() as tx:
            await runner.forget(tx, ["j1"])
        async with asyncio.timeout(5):  # not the 60 s of its timeout
            assert await waiting is None
        await db.close()

    asyncio.run(main())


def test_warming_up_keeps_a_worker_that_ran_first_in_line() -> None:
    async def body(pool: WorkerPool) -> None:
        first = await pool.run(tasks.pid)  # a start-up check: it may hold a loaded engine
        pool.start()
        assert pool._warming is not None
        await pool._warming
        assert len(pool.pids) == 2  # topped up to [jobs] workers, not two more
        assert await pool.run(tasks.pid) == first

    _run(body)
