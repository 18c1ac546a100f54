"""Background jobs from a persisted queue.

The ``jobs`` table *is* the queue: a worker claims the oldest queued row in one UPDATE,
so nothing accepted lives only in memory. Concurrency is bounded by the number of
workers. Progress is written as it goes. At start-up, a job found ``running`` was cut
off by a crash: it is queued again (its handler resumes from what it already stored)
until ``max_attempts``, then failed with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .db import Database, utcnow

log = logging.getLogger("evaldock.jobs")

TERMINAL = frozenset({"completed", "failed", "cancelled"})


class JobFailed(Exception):
    """Raised by a handler to end its job as failed with a reason a person can act on."""


@dataclass
class Job:
    id: str
    kind: str
    tenant: str | None
    attempts: int
    runner: JobRunner

    @property
    def db(self) -> Database:
        return self.runner.db

    async def progress(self, processed: int, total: int | None = None) -> None:
        if total is None:
            await self.db.execute(
                "UPDATE jobs SET processed = ?, updated_at = ? WHERE id = ?",
                (processed, utcnow(), self.id),
            )
        else:
            await self.db.execute(
                "UPDATE jobs SET processed = ?, total = ?, updated_at = ? WHERE id = ?",
                (processed, total, utcnow(), self.id),
            )


Handler = Callable[[Job], Awaitable[None]]


def new_job_id(prefix: str = "") -> str:
    return prefix + secrets.token_hex(16)


class JobRunner:
    def __init__(self, db: Database, *, concurrency: int = 4, max_attempts: int = 3) -> None:
        self.db = db
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self._handlers: dict[str, Handler] = {}
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Condition()

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    # -- submission (inside the caller's transaction, so accept and enqueue are atomic) --
    @staticmethod
    async def enqueue(conn: Any, job_id: str, kind: str, tenant: str | None, total: int) -> None:
        now = utcnow()
        await conn.execute(
            "INSERT INTO jobs (id, kind, tenant, status, total, created_at, updated_at)"
            " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
            (job_id, kind, tenant, total, now, now),
        )

    def wake(self) -> None:
        self._wake.set()

    async def status(self, job_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return dict(row) if row else None

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False when it had already ended."""
        now = utcnow()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ?"
                " WHERE id = ? AND status = 'queued'",
                (now, now, job_id),
            )
            if cur.rowcount:
                return True
            cur = await conn.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ?"
                " WHERE id = ? AND status = 'running'",
                (now, job_id),
            )
            if not cur.rowcount:
                return False
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()
        return True

    # -- lifecycle ------------------------------------------------------------------------
    async def recover(self) -> dict[str, int]:
        """Resume or fail the jobs a crash left ``running``."""
        now = utcnow()
        counts = {"resumed": 0, "failed": 0}
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT id, attempts, cancel_requested FROM jobs WHERE status = 'running'"
            ) as cur:
                rows = list(await cur.fetchall())
            for row in rows:
                if row["cancel_requested"]:
                    await conn.execute(
                        "UPDATE jobs SET status='cancelled', finished_at=?, updated_at=?"
                        " WHERE id=?",
                        (now, now, row["id"]),
                    )
                elif row["attempts"] >= self.max_attempts:
                    reason = (
                        f"interrupted by a server restart during attempt {row['attempts']} "
                        f"of {self.max_attempts}; not resumed again"
                    )
                    await conn.execute(
                        "UPDATE jobs SET status='failed', error=?, finished_at=?, updated_at=?"
                        " WHERE id=?",
                        (reason, now, now, row["id"]),
                    )
                    counts["failed"] += 1
                else:
                    await conn.execute(
                        "UPDATE jobs SET status='queued', updated_at=? WHERE id=?",
                        (now, row["id"]),
                    )
                    counts["resumed"] += 1
        if any(counts.values()):
            log.warning("recovered interrupted jobs: %s", counts)
        return counts

    async def start(self) -> None:
        await self.recover()
        self._workers = [
            asyncio.create_task(self._worker(i), name=f"evaldock-job-worker-{i}")
            for i in range(self.concurrency)
        ]
        self.wake()

    async def stop(self) -> None:
        # Workers cancel their own handler tasks and requeue them (see _run).
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Test helper: wait until no job is queued or running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            row = await self.db.fetchone(
                "SELECT COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running')"
            )
            if row is not None and row["n"] == 0:
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("jobs still running")

    # -- workers --------------------------------------------------------------------------
    async def _claim(self) -> Job | None:
        now = utcnow()
        async with (
            self.db.transaction() as conn,
            conn.execute(
                "UPDATE jobs SET status='running', attempts=attempts+1,"
                " started_at=COALESCE(started_at, ?), updated_at=?"
                " WHERE id = (SELECT id FROM jobs WHERE status='queued'"
                "             ORDER BY created_at, rowid LIMIT 1)"
                " RETURNING id, kind, tenant, attempts",
                (now, now),
            ) as cur,
        ):
            row = await cur.fetchone()
        if row is None:
            return None
        return Job(row["id"], row["kind"], row["tenant"], row["attempts"], self)

    async def _worker(self, index: int) -> None:
        while True:
            job = await self._claim()
            if job is None:
                self._wake.clear()
                # Re-check after clearing so a wake between claim and clear is not lost.
                job = await self._claim()
                if job is None:
                    await self._wake.wait()
                    continue
            self._wake.set()  # there may be more: let another idle worker look
            await self._run(job)

    async def _run(self, job: Job) -> None:
        handler = self._handlers.get(job.kind)
        task = asyncio.current_task()
        assert task is not None
        if handler is None:
            await self._finish(job.id, "failed", f"no handler for job kind {job.kind!r}")
            return
        inner = asyncio.create_task(handler(job), name=f"evaldock-job-{job.id}")
        self._running[job.id] = inner
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            if inner.cancelled() or inner.done():
                await self._finish(job.id, "cancelled", None)
            else:
                # The worker itself is being stopped (graceful shutdown): put the job back
                # in the queue without spending one of its attempts.
                inner.cancel()
                await asyncio.gather(inner, return_exceptions=True)
                await self.db.execute(
                    "UPDATE jobs SET status='queued', attempts=MAX(attempts-1, 0), updated_at=?"
                    " WHERE id=? AND status='running'",
                    (utcnow(), job.id),
                )
                raise
        except JobFailed as exc:
            await self._finish(job.id, "failed", str(exc))
        except Exception as exc:  # a bug in a handler must not take the worker down
            log.exception("job %s failed", job.id)
            await self._finish(job.id, "failed", f"internal error: {type(exc).__name__}: {exc}")
        else:
            await self._finish(job.id, "completed", None)
        finally:
            self._running.pop(job.id, None)

    async def _finish(self, job_id: str, status: str, error: str | None) -> None:
        now = utcnow()
        await self.db.execute(
            "UPDATE jobs SET status=?, error=?, finished_at=?, updated_at=? WHERE id=?",
            (status, error, now, now, job_id),
        )
