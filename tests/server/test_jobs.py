"""The persisted job queue: claim order, progress, cancellation, crash recovery."""

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from evaldock.server.db import Database
from evaldock.server.jobs import Job, JobFailed, JobRunner, commit_in_batches


async def _runner(tmp_path: Path, **kw) -> JobRunner:
    db = Database(tmp_path / "jobs.sqlite3")
    await db.open()
    await db.migrate("core", "evaldock.server")
    return JobRunner(db, **kw)


async def _enqueue(runner: JobRunner, job_id: str, kind: str = "k", total: int = 3) -> None:
    async with runner.db.transaction() as tx:
        await runner.submit(tx, job_id, kind, "t", total)


async def _status(runner: JobRunner, job_id: str) -> dict:
    view = await runner.view(job_id)
    assert view is not None
    return dataclasses.asdict(view)


def test_jobs_run_in_order_with_bounded_concurrency(tmp_path: Path) -> None:
    async def main() -> None:
        runner = await _runner(tmp_path, concurrency=2)
        seen, active, peak = [], 0, 0

        async def handler(job: Job) -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            seen.append(job.id)
            await asyncio.sleep(0.02)
            await job.progress(3, 3)
            active -= 1

        runner.register("k", handler)
        for i in range(6):
            await _enqueue(runner, f"j{i}")
        await runner.start()
        await runner.wait_idle()
        await runner.stop()
        assert sorted(seen) == [f"j{i}" for i in range(6)]
        assert seen[:2] == ["j0", "j1"]
        assert peak == 2
        row = await _status(runner, "j5")
        assert row is not None and row["status"] == "completed" and row["processed"] == 3
        await runner.db.close()

    asyncio.run(main())


def test_failures_are_recorded_with_reason(tmp_path: Path) -> None:
    async def main() -> None:
        runner = await _runner(tmp_path)

        async def fails(job: Job) -> None:
            raise JobFailed("dataset has no rows")

        async def crashes(job: Job) -> None:
            raise ZeroDivisionError("boom")

        runner.register("fails", fails)
        runner.register("crashes", crashes)
        await _enqueue(runner, "a", "fails")
        await _enqueue(runner, "b", "crashes")
        await _enqueue(runner, "c", "unknown-kind")
        await runner.start()
        await runner.wait_idle()
        await runner.stop()
        assert (await _status(runner, "a"))["error"] == "dataset has no rows"
        assert "ZeroDivisionError: boom" in (await _status(runner, "b"))["error"]
        assert "no handler" in (await _status(runner, "c"))["error"]
        await runner.db.close()

    asyncio.run(main())


def test_cancel_queued_and_running(tmp_path: Path) -> None:
    async def main() -> None:
        runner = await _runner(tmp_path, concurrency=1)
        started = asyncio.Event()

        async def slow(job: Job) -> None:
            started.set()
            await asyncio.sleep(30)

        runner.register("k", slow)
        await _enqueue(runner, "running")
        await _enqueue(runner, "queued")
        await runner.start()
        await started.wait()
        assert await runner.cancel("queued")
        assert await runner.cancel("running")
        await runner.wait_idle()
        assert (await _status(runner, "running"))["status"] == "cancelled"
        assert (await _status(runner, "queued"))["status"] == "cancelled"
        assert not await runner.cancel("running")  # already ended
        await runner.stop()
        await runner.db.close()

    asyncio.run(main())


def test_recovery_resumes_then_fails_after_max_attempts(tmp_path: Path) -> None:
    async def main() -> None:
        runner = await _runner(tmp_path, max_attempts=2)
        await _enqueue(runner, "fresh")
        await _enqueue(runner, "tired")
        # What a SIGKILL leaves behind: rows marked running, attempts spent.
        await runner.db.execute("UPDATE jobs SET status='running', attempts=1 WHERE id='fresh'")
        await runner.db.execute("UPDATE jobs SET status='running', attempts=2 WHERE id='tired'")
        counts = await runner.recover()
        assert counts == {"resumed": 1, "failed": 1}
        assert (await _status(runner, "fresh"))["status"] == "queued"
        tired = await _status(runner, "tired")
        assert tired["status"] == "failed"
        assert "interrupted by a server restart" in tired["error"]
        await runner.db.close()

    asyncio.run(main())


def test_graceful_stop_requeues_without_spending_an_attempt(tmp_path: Path) -> None:
    async def main() -> None:
        runner = await _runner(tmp_path)
        started = asyncio.Event()

        async def slow(job: Job) -> None:
            started.set()
            await asyncio.sleep(30)

        runner.register("k", slow)
        await _enqueue(runner, "j")
        await runner.start()
        await started.wait()
        await runner.stop()
        row = await _status(runner, "j")
        assert (row["status"], row["attempts"]) == ("queued", 0)
        await runner.db.close()

    asyncio.run(main())


def test_idle_workers_take_no_write_lock(tmp_path: Path) -> None:
    """An idle worker looks for queued jobs with a read; only a job to claim costs a
    write transaction (each one queues ahead of the requests' own writes)."""

    async def main() -> None:
        runner = await _runner(tmp_path, concurrency=4)
        db = runner.db
        opened = 0
        real = db.transaction

        def counting():  # type: ignore[no-untyped-def]
            nonlocal opened
            opened += 1
            return real()

        db.transaction = counting  # type: ignore[method-assign]
        done = asyncio.Event()

        async def handler(job: Job) -> None:
            done.set()

        runner.register("k", handler)
        await runner.start()
        opened = 0  # start-up recovery has its own
        try:
            for _ in range(3):  # wakes and idle polls alike
                runner.wake()
                await asyncio.sleep(0.01)
            assert opened == 0
            await _enqueue(runner, "j1")  # its own transaction
            await asyncio.wait_for(done.wait(), 5)
            await asyncio.sleep(0.1)
            # The submit, one claim, the finish: not one per worker.
            assert opened <= 4, opened
        finally:
            await runner.stop()
            await db.close()

    asyncio.run(main())


def test_commit_in_batches_commits_rows_with_the_progress(tmp_path: Path) -> None:
    """commit_in_batches: rows and progress in one transaction per batch; a failure
    keeps what was committed (the job resumes from it)."""

    async def main() -> None:
        db = Database(tmp_path / "db.sqlite3")
        await db.open()
        await db.migrate("core", "evaldock.server")
        await db.execute("CREATE TABLE seen (n INTEGER)")
        runner = JobRunner(db)
        async with db.transaction() as tx:
            await runner.submit(tx, "j1", "k", "t", 70)
        job = Job("j1", "k", "t", 1, runner)
        commits: list[tuple[int, int]] = []

        async def save(tx: Any, batch: list[tuple[int]]) -> None:
            await tx.executemany("INSERT INTO seen VALUES (?)", batch)

        async def one(n: int) -> tuple[int]:
            await asyncio.sleep(0)
            if n == 50:
                raise RuntimeError("the judge went away")
            return (n,)

        async def record(done: int, total: int | None = None, *, conn: Any = None) -> None:
            await Job.progress(job, done, total, conn=conn)
            rows = await conn.fetchone("SELECT COUNT(*) AS n FROM seen")
            commits.append((done, rows["n"]))

        job.progress = record  # type: ignore[method-assign]
        reached = await commit_in_batches(
            job, (one(n) for n in range(40)), save, done=0, total=70, every=16
        )
        assert reached == 40 and commits == [(16, 16), (32, 32), (40, 40)]
        with pytest.raises(RuntimeError):
            await commit_in_batches(
                job, (one(n) for n in range(40, 70)), save, done=40, total=70, every=16
            )
        view = await runner.view("j1")
        seen = await db.fetchone("SELECT COUNT(*) AS n FROM seen")
        assert view is not None and seen is not None
        assert view.processed == seen["n"] == 40  # the failed batch left nothing behind
        await db.close()

    asyncio.run(main())
