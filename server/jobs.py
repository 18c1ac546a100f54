"""Background jobs from a persisted queue: the one job lifecycle every surface uses.

The ``jobs`` table *is* the queue: a worker claims the oldest queued row in one UPDATE,
so nothing accepted lives only in memory. A surface

- submits a job with :meth:`JobRunner.submit` inside the transaction that creates its
  resource (accept and enqueue are atomic; the runner wakes when that commits);
- reports progress with :meth:`Job.progress`, passing its own transaction so results and
  progress commit together;
- runs work that grows with its input (parsing, scoring, metrics, encoding) with
  :meth:`Job.run_task`: a plain function of picklable inputs, run in a worker process
  under the task limits (:mod:`evaldock.server.compute`); cancelling the job kills it;
- runs the little blocking work left in the API process (moving files) with
  :meth:`Job.run_blocking`, on the runner's own small thread pool;
- reads job state through the ``job_view`` SQL view (or :meth:`JobRunner.view`), never
  by joining or updating ``jobs`` itself.

At start-up, a job found ``running`` was cut off by a crash: it is queued again (its
handler resumes from what it already stored) until ``max_attempts``, then failed with
the reason. A job that failed for its input (:class:`JobFailed`) stays failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from .compute import TaskFailed, TaskLimits, WorkerPool
from .compute.worker import TaskContext
from .db import Database, Transaction, utcnow

log = logging.getLogger("evaldock.jobs")

T = TypeVar("T")

# An idle worker looks at the queue at least this often even without a wake-up, so a
# job inserted by another path (a CLI, a migration) is never stranded.
IDLE_POLL_SECONDS = 1.0


class JobState(StrEnum):
    """Core job states. ``waiting`` is a job paused for outside input (a person's scores)."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


class JobFailed(Exception):
    """Raised by a handler to end its job as failed with a reason a person can act on."""


class JobCancelled(Exception):
    """Raised in a blocking worker by ``check_cancelled()`` once its job is cancelled or
    the server is stopping; the job ends cancelled (or is requeued at shutdown)."""


class StatusMap:
    """A surface's words for the core job states, in the order a job moves through them.

    ``StatusMap([("queued", "accepted"), ("running", "processing"), ("completed", …)])``;
    terminal branches (failed, cancelled) and pauses (waiting) are named like the rest.
    The order is what the control plane follows when it advances a job one step.
    """

    def __init__(self, pairs: Sequence[tuple[str, Any]]) -> None:
        self.pairs = [(JobState(state), word) for state, word in pairs]
        self._words = dict(self.pairs)
        missing = {JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED} - set(self._words)
        if missing:
            raise ValueError(f"status map lacks {sorted(missing)}")

    def word(self, state: str) -> Any:
        return self._words[JobState(state)]

    @property
    def path(self) -> list[JobState]:
        """The states a successful job passes through, in order (branches left out)."""
        return [s for s, _ in self.pairs if s not in (JobState.FAILED, JobState.CANCELLED)]

    def next(self, state: str) -> JobState | None:
        path = self.path
        current = JobState(state)
        if current not in path or current is path[-1]:
            return None
        return path[path.index(current) + 1]


@dataclass(frozen=True)
class JobView:
    """What a surface reads of a job (the ``job_view`` row)."""

    id: str
    kind: str
    tenant: str | None
    status: str
    processed: int
    total: int
    attempts: int
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


class BlockingContext:
    """Handed to a function run by :meth:`Job.run_blocking` in a worker thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        cancelled: threading.Event,
        on_say: Callable[[str], Coroutine[Any, Any, None]] | None,
        job: Job | None = None,
    ) -> None:
        self._loop = loop
        self._cancelled = cancelled
        self._on_say = on_say
        self._job = job

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` once the job is cancelled or the server stops.

        Call it between steps (every few thousand rows): it costs one Event read."""
        if self._cancelled.is_set():
            raise JobCancelled

    def progress(self, processed: int, total: int | None = None) -> None:
        """Record the job's progress from the worker thread (waits for the commit)."""
        self.check_cancelled()
        if self._job is not None:
            done = asyncio.run_coroutine_threadsafe(
                self._job.progress(processed, total), self._loop
            )
            done.result(60)

    def say(self, message: str) -> None:
        """A progress line for the job's log (as the surface records it)."""
        self.check_cancelled()
        if self._on_say is None:
            log.info("%s", message)
            return
        done = asyncio.run_coroutine_threadsafe(self._on_say(message), self._loop)
        done.result(60)


# A long job says how far it got in the server log at most this often (not per item).
PROGRESS_LOG_SECONDS = 10.0


@dataclass
class Job:
    id: str
    kind: str
    tenant: str | None
    attempts: int
    runner: JobRunner
    _logged_at: float = 0.0

    @property
    def db(self) -> Database:
        return self.runner.db

    async def progress(
        self, processed: int, total: int | None = None, *, conn: Transaction | None = None
    ) -> None:
        """Record progress; with ``conn`` it commits together with the caller's results."""
        now = time.monotonic()
        if now - self._logged_at >= PROGRESS_LOG_SECONDS:
            if self._logged_at:
                of = f"/{total}" if total is not None else ""
                log.info("job %s (%s): %d%s done", self.id, self.kind, processed, of)
            self._logged_at = now
        sql, args = "UPDATE jobs SET processed = ?, updated_at = ?", [processed, utcnow()]
        if total is not None:
            sql += ", total = ?"
            args.append(total)
        args.append(self.id)
        if conn is not None:
            await conn.execute(sql + " WHERE id = ?", args)
        else:
            await self.db.execute(sql + " WHERE id = ?", args)

    async def run_task(
        self,
        fn: Callable[..., T],
        *args: Any,
        limits: TaskLimits | None = None,
        on_say: Callable[[str], Coroutine[Any, Any, None]] | None = None,
        progress: bool = True,
    ) -> T:
        """``fn(ctx, *args)`` in a worker process; its value, or its exception raised here.

        The task's ``ctx.progress(done, total)`` becomes the job's progress (unless
        ``progress`` is False), its ``ctx.say(text)`` goes to ``on_say`` (default: the
        server log). A task stopped over a limit, or whose worker crashed, ends the job
        failed with the reason, which names the setting to raise. Without a pool (unit
        tests of the runner) the task runs on the runner's thread pool."""
        on_progress = self.progress if progress else None
        pool = self.runner.pool
        if pool is None:
            context = TaskContext(None, None)
            return await self.run_blocking(lambda ctx: fn(context, *args))
        try:
            value: T = await pool.run(
                fn, *args, limits=limits, on_say=on_say, on_progress=on_progress
            )
        except TaskFailed as exc:
            raise JobFailed(exc.message) from None
        return value

    async def wait(self, message: str | None = None) -> None:
        """Pause the job for outside input: the handler returns, the job stays ``waiting``
        until :meth:`JobRunner.resume` queues it again."""
        raise _Waiting(message)

    async def run_blocking(
        self,
        fn: Callable[[BlockingContext], T],
        *,
        on_say: Callable[[str], Coroutine[Any, Any, None]] | None = None,
    ) -> T:
        """Run ``fn(ctx)`` on the runner's bounded pool; cancelling the job (or stopping
        the server) sets the flag that ``ctx.check_cancelled()`` reads."""
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()
        self.runner._blocking_flags.add(cancelled)
        ctx = BlockingContext(loop, cancelled, on_say, self)
        call = contextvars.copy_context().run
        future = loop.run_in_executor(self.runner.executor, call, fn, ctx)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            # Let the thread reach its next check before the job's state is written.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(30):
                    await asyncio.shield(future)
            raise
        finally:
            self.runner._blocking_flags.discard(cancelled)


class _Waiting(Exception):
    pass


Handler = Callable[[Job], Coroutine[Any, Any, None]]


class JobRunner:
    def __init__(
        self,
        db: Database,
        *,
        concurrency: int = 4,
        max_attempts: int = 3,
        threads: int | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.db = db
        # Worker processes for job work (Job.run_task); None runs tasks on threads.
        self.pool = pool
        self._ended: dict[str, asyncio.Event] = {}
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self._handlers: dict[str, Handler] = {}
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._blocking_flags: set[threading.Event] = set()
        self._stopping = False
        # Blocking job work gets its own pool (not the loop's default one, which file
        # responses and to_thread calls share): a runaway parse cannot starve a DELETE.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads or concurrency, thread_name_prefix="evaldock-job"
        )
        # Hooks the control plane's job timing uses: may a queued job be claimed now
        # (gates), and what a claimed job waits for before its handler runs.
        self.gates: list[Callable[[JobView], bool]] = []
        self.start_gates: list[Callable[[Job], Awaitable[None]]] = []

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    # -- submission (inside the caller's transaction, so accept and enqueue are atomic) --
    def submit(
        self, tx: Transaction, job_id: str, kind: str, tenant: str | None, total: int = 0
    ) -> Awaitable[Any]:
        """Queue a job in the resource's transaction; workers wake when it commits."""
        now = utcnow()
        tx.on_commit(self.wake)
        return tx.execute(
            "INSERT INTO jobs (id, kind, tenant, status, total, created_at, updated_at)"
            " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
            (job_id, kind, tenant, total, now, now),
        )

    def wake(self) -> None:
        self._wake.set()

    async def wait(self, job_id: str, timeout: float) -> JobView | None:
        """The job's view once it ended, or as it is when ``timeout`` seconds passed
        (None: no such job). Woken by the job's end, not by polling."""
        ended = self._ended.setdefault(job_id, asyncio.Event())
        try:
            view = await self.view(job_id)
            if view is None or view.done:
                return view
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while not (view is None or view.done):
                        await ended.wait()
                        ended.clear()
                        view = await self.view(job_id)
            return await self.view(job_id)
        finally:
            self._ended.pop(job_id, None)

    def _ended_now(self, job_id: str) -> None:
        event = self._ended.get(job_id)
        if event is not None:
            event.set()

    async def view(self, job_id: str) -> JobView | None:
        row = await self.db.fetchone("SELECT * FROM job_view WHERE id = ?", (job_id,))
        return JobView(**dict(row)) if row else None

    async def views(self, kind: str | None = None, *, active_only: bool = False) -> list[JobView]:
        sql, args = "SELECT * FROM job_view WHERE 1=1", []
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        if active_only:
            sql += " AND status IN ('queued', 'running', 'waiting')"
        rows = await self.db.fetchall(sql + " ORDER BY created_at, id", args)
        return [JobView(**dict(r)) for r in rows]

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued, waiting or running job; False when it had already ended."""
        now = utcnow()
        async with self.db.transaction() as tx:
            cur = await tx.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ?"
                " WHERE id = ? AND status IN ('queued', 'waiting')",
                (now, now, job_id),
            )
            if cur.rowcount:
                tx.on_commit(lambda: self._ended_now(job_id))
                return True
            cur = await tx.execute(
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

    async def resume(self, job_id: str) -> bool:
        """Queue a ``waiting`` job again (its handler picks up where it paused)."""
        changed = await self.db.execute(
            "UPDATE jobs SET status = 'queued', updated_at = ? WHERE id = ? AND status = 'waiting'",
            (utcnow(), job_id),
        )
        if changed:
            self.wake()
        return bool(changed)

    async def fail(self, job_id: str, reason: str) -> bool:
        """End a not-yet-finished job as failed with ``reason`` (control plane, deletes)."""
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        now = utcnow()
        changed = await self.db.execute(
            "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, updated_at = ?"
            " WHERE id = ? AND status IN ('queued', 'running', 'waiting', 'cancelled')",
            (reason, now, now, job_id),
        )
        self._ended_now(job_id)
        return bool(changed)

    async def forget(self, tx: Transaction, job_ids: Sequence[str]) -> None:
        """Delete job rows (a surface's reset), after cancelling any that still run."""
        for job_id in job_ids:
            task = self._running.get(job_id)
            if task is not None:
                task.cancel()
        await tx.executemany("DELETE FROM jobs WHERE id = ?", [(j,) for j in job_ids])
        # Whoever waits for one of them (JobRunner.wait) learns it is gone at the commit.
        forgotten = list(job_ids)

        def wake() -> None:
            for job_id in forgotten:
                self._ended_now(job_id)

        tx.on_commit(wake)

    # -- lifecycle ------------------------------------------------------------------------
    async def recover(self) -> dict[str, int]:
        """Resume or fail the jobs a crash left ``running``."""
        now = utcnow()
        counts = {"resumed": 0, "failed": 0}
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT id, attempts, cancel_requested FROM jobs WHERE status = 'running'"
            )
            for row in rows:
                if row["cancel_requested"]:
                    await tx.execute(
                        "UPDATE jobs SET status='cancelled', finished_at=?, updated_at=?"
                        " WHERE id=?",
                        (now, now, row["id"]),
                    )
                elif row["attempts"] >= self.max_attempts:
                    reason = (
                        f"interrupted by a server restart during attempt {row['attempts']} "
                        f"of {self.max_attempts}; not resumed again (setting [jobs] max_attempts)"
                    )
                    await tx.execute(
                        "UPDATE jobs SET status='failed', error=?, finished_at=?, updated_at=?"
                        " WHERE id=?",
                        (reason, now, now, row["id"]),
                    )
                    counts["failed"] += 1
                else:
                    await tx.execute(
                        "UPDATE jobs SET status='queued', updated_at=? WHERE id=?",
                        (now, row["id"]),
                    )
                    counts["resumed"] += 1
        if any(counts.values()):
            log.warning("recovered interrupted jobs: %s", counts)
        return counts

    async def start(self) -> None:
        self._stopping = False
        await self.recover()
        self._workers = [
            asyncio.create_task(self._worker(i), name=f"evaldock-job-worker-{i}")
            for i in range(self.concurrency)
        ]
        self.wake()

    async def stop(self) -> None:
        # Blocking work sees the flag at its next check; workers cancel their own handler
        # tasks and requeue them (see _run), so SIGTERM never waits on a runaway thread.
        self._stopping = True
        for flag in list(self._blocking_flags):
            flag.set()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        self.executor.shutdown(wait=False, cancel_futures=True)

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
        # Look before taking the write lock: an idle worker's claim is otherwise a write
        # transaction (four of them a second, and eight after every submit, each queueing
        # ahead of the requests' own writes).
        if await self.db.fetchone("SELECT 1 FROM jobs WHERE status='queued' LIMIT 1") is None:
            return None
        now = utcnow()
        claim = (
            "UPDATE jobs SET status='running', attempts=attempts+1,"
            " started_at=COALESCE(started_at, ?), updated_at=? WHERE id = {target}"
            " RETURNING id, kind, tenant, attempts"
        )
        async with self.db.transaction() as tx:
            if not self.gates:
                row = await tx.fetchone(
                    claim.format(
                        target="(SELECT id FROM jobs WHERE status='queued'"
                        " ORDER BY created_at, rowid LIMIT 1)"
                    ),
                    (now, now),
                )
            else:
                # Gates are asked inside the claiming transaction, so a job committed
                # between a look and the claim cannot slip past a hold.
                queued = await tx.fetchall(
                    "SELECT id, kind, tenant, status, processed, total, attempts, error,"
                    " created_at, started_at, finished_at FROM jobs WHERE status='queued'"
                    " ORDER BY created_at, rowid"
                )
                views = (JobView(**dict(r)) for r in queued)
                pick = next((v for v in views if all(g(v) for g in self.gates)), None)
                if pick is None:
                    return None
                row = await tx.fetchone(claim.format(target="?"), (now, now, pick.id))
        if row is None:
            return None
        return Job(row["id"], row["kind"], row["tenant"], row["attempts"], self)

    async def _worker(self, index: int) -> None:
        # The flag, not only the cancellation, ends the loop: on Python 3.11 a
        # cancellation that lands as the wake-up fires can be swallowed by a timeout
        # wrapper, and a worker that missed it would keep stop() waiting forever.
        while not self._stopping:
            job = await self._claim()
            if job is None:
                self._wake.clear()
                # Re-check after clearing so a wake between claim and clear is not lost.
                job = await self._claim()
                if job is None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(IDLE_POLL_SECONDS):
                            await self._wake.wait()
                    continue
            self._wake.set()  # there may be more: let another idle worker look
            await self._run(job)

    async def _run(self, job: Job) -> None:
        handler = self._handlers.get(job.kind)
        if handler is None:
            await self._finish(job.id, "failed", f"no handler for job kind {job.kind!r}")
            return
        inner = asyncio.create_task(self._gated(handler, job), name=f"evaldock-job-{job.id}")
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
        except JobCancelled:
            await self._finish(job.id, "cancelled", None)
        except _Waiting:
            await self.db.execute(
                "UPDATE jobs SET status='waiting', updated_at=? WHERE id=? AND status='running'",
                (utcnow(), job.id),
            )
        except JobFailed as exc:
            await self._finish(job.id, "failed", str(exc))
        except Exception as exc:  # a bug in a handler must not take the worker down
            log.exception("job %s failed", job.id)
            await self._finish(job.id, "failed", f"internal error: {type(exc).__name__}: {exc}")
        else:
            await self._finish(job.id, "completed", None)
        finally:
            self._running.pop(job.id, None)

    async def _gated(self, handler: Handler, job: Job) -> None:
        for gate in self.start_gates:
            await gate(job)
        await handler(job)

    async def _finish(self, job_id: str, status: str, error: str | None) -> None:
        now = utcnow()
        # Only a job still running ends here: a job failed or cancelled from outside
        # meanwhile keeps that outcome.
        await self.db.execute(
            "UPDATE jobs SET status=?, error=?, finished_at=?, updated_at=?"
            " WHERE id=? AND status='running'",
            (status, error, now, now, job_id),
        )
        self._ended_now(job_id)


async def in_batches(
    calls: Iterable[Coroutine[Any, Any, T]],
    flush: Callable[[list[T]], Awaitable[None]],
    every: int,
) -> None:
    """Run ``calls`` together, hand their results to ``flush`` ``every`` at a time as
    they complete (one transaction per batch: a crash costs at most one batch, and the
    job resumes from what was flushed), and cancel what is left on the way out.

    The callers bound their own concurrency (a semaphore inside each call)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    buffer: list[T] = []
    try:
        for next_done in asyncio.as_completed(tasks):
            buffer.append(await next_done)
            if len(buffer) >= every:
                await flush(buffer)
                buffer = []
        if buffer:
            await flush(buffer)
    finally:
        for task in tasks:
            task.cancel()


async def commit_in_batches(
    job: Job,
    calls: Iterable[Coroutine[Any, Any, T]],
    save: Callable[[Transaction, list[T]], Awaitable[None]],
    *,
    done: int,
    total: int | None = None,
    every: int = 32,
) -> int:
    """Run ``calls`` together (each bounds its own concurrency) and commit their results
    ``every`` at a time: ``save(tx, batch)`` and the job's progress in one transaction, so
    a crash costs at most one batch and the job resumes from what was committed. Returns
    the progress reached. (32 a commit: each commit is an fsync, ~1-3 ms here.)"""

    async def flush(batch: list[T]) -> None:
        nonlocal done
        async with job.db.transaction() as tx:
            await save(tx, batch)
            done += len(batch)
            await job.progress(done, total, conn=tx)

    await in_batches(calls, flush, every)
    return done
