"""Job work on a Ray cluster (``[compute] backend = "ray"``): the same task functions.

:class:`RayPool` is a :class:`.pool.WorkerPool` whose *job* lane runs on Ray; work a
request waits for (a SQL query, a page of a file) stays on the local request workers: a
client is waiting, and a cluster round trip plus a cold worker would cost it.

- A task ``fn(ctx, *args)`` is a Ray task (a streaming generator) asking for
  ``[compute.resources.task]`` (default 1 CPU); a task that builds an engine
  (``ctx.engine(kind, P)`` in its body) runs on an actor of that kind
  (``[compute.resources.<kind>]``, default no CPU held, as Ray's actors;
  ``[compute] actors`` of them), whose process builds the engine on its first task and
  keeps it, as a local worker does.
- The server's settings go to the object store once (``ray.put``), not with each task.
- ``ctx.say`` / ``ctx.progress`` stream back as the task yields them; the answer (or
  the task's exception, as itself) is the last item. The API process commits, as with
  local workers: state and durability stay where they are.
- Limits: wall time is watched here, from the task's start on its node (time queued
  for resources does not count); CPU time and resident memory are sampled in the Ray
  worker every :data:`WATCH_SECONDS` by a thread (a C extension holding the GIL delays
  that check; the wall time still stops it). Over a limit, or on cancel, the task is
  killed: ``ray.cancel(force=True)`` for a task, ``ray.kill`` for an actor (replaced by
  the next task that needs one). The caller gets :class:`LimitExceeded` or
  ``CancelledError``, as from the local pool.
- A Ray worker, actor or node that dies under a task: the task is sent again, up to
  ``[compute] retries`` times (Ray's own retries are off: a limit kill, a cancel or the
  task's own error is never retried), each retry a line in the job's log; then it fails
  with :class:`WorkerCrashed` whose message says which died.
- Actors: one idle ``[compute] actor_idle_seconds`` is killed (its CPUs, GPUs and model
  memory freed), and one whose process stays above ``[jobs] worker_recycle_mb`` after a
  task is killed after it, as a local worker is retired.

Task arguments are paths on this machine's disk, as for local workers. Inputs marked
:class:`.marks.InputFile` (datasets) may instead travel through the object store, once
per file (``[compute] ship_inputs``, :mod:`.shipping`); outputs are written under
``[server] data``, so on a cluster of several machines that folder must be mounted at the
same path on every node (checked when joining a cluster: a node that cannot see it is a
warning), and evaldock must be installed on every node (same version).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dis
import logging
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from ..config import ComputeSettings, ConfigError, Settings, TaskResources
from . import worker as worker_module
from .limits import LimitExceeded, TaskFailed, TaskLimits, WorkerCrashed
from .marks import RETIRE_ATTR
from .pool import Progress, Say, WorkerPool
from .shipping import InputCache, check_shared_data, materialise, ship_args

log = logging.getLogger("evaldock.compute.ray")

INSTALL = "pip install 'evaldock[ray]'"
# How often a Ray worker samples its own CPU time and memory during a task.
WATCH_SECONDS = 0.1
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def import_ray() -> Any:
    """The ``ray`` module, or a ConfigError whose fix is the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f'[compute] backend = "ray" needs Ray, which is not installed: {INSTALL} '
            '(or set [compute] backend = "local")'
        ) from None
    return ray


def engine_kinds(fn: Callable[..., Any], args: tuple[Any, ...] = ()) -> tuple[str, ...]:
    """The engine kinds ``fn`` builds, read from its bytecode: ``ctx.engine("ranker", …)``
    is a load of the attribute ``engine`` followed by the kind as a constant. A function
    may declare them instead (``fn.evaldock_engines = ("embedder",)``)."""
    declared = getattr(fn, "evaldock_engines", None)
    if declared is not None:
        return tuple(declared)
    if fn is worker_module.check_engine and args:
        return (str(args[0]),)
    code = getattr(fn, "__code__", None)
    if code is None or "engine" not in code.co_names:
        return ()
    found: list[str] = []
    previous: dis.Instruction | None = None
    for ins in dis.get_instructions(code):
        if (
            previous is not None
            and previous.opname in ("LOAD_METHOD", "LOAD_ATTR")
            and previous.argval == "engine"
            and ins.opname == "LOAD_CONST"
            and isinstance(ins.argval, str)
            and ins.argval not in found
        ):
            found.append(ins.argval)
        previous = ins
    return tuple(sorted(found))


# -- the Ray worker's side ----------------------------------------------------------------


class _StreamContext(worker_module.TaskContext):
    """A task's context in a Ray worker: say/progress go to the generator's queue."""

    def __init__(self, out: queue.SimpleQueue[tuple[Any, ...]], settings: Settings | None):
        super().__init__(None, settings)
        self._out = out

    def say(self, message: str) -> None:
        self._out.put(("say", str(message)))

    def progress(self, done: int, total: int | None = None) -> None:
        self._out.put(("progress", int(done), total))


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE / (1024 * 1024)
    except OSError:
        return 0.0


def serve(
    settings: Settings | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    cpu_seconds: float,
    memory_mb: float,
) -> Iterator[tuple[Any, ...]]:
    """In a Ray worker: ``fn(ctx, *args)`` on a thread, its messages yielded as they come,
    then ``("ok", value, rss)`` or ``("error", packed, traceback, rss)`` (``rss``: this
    process's resident MB after the task, for ``[jobs] worker_recycle_mb``);
    ``("limit", …)`` when the process went over its CPU time or memory (the API process
    then kills it). Shipped inputs become node-local paths first (:mod:`.shipping`)."""
    out: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
    ctx = _StreamContext(out, settings)

    def work() -> None:
        try:
            value = fn(ctx, *materialise(args))
        except BaseException as exc:  # everything goes back, as from a local worker
            packed = worker_module.pack_error(exc)
            out.put(("error", packed, traceback.format_exc(), _rss_mb()))
            return
        out.put(("ok", value, _rss_mb()))

    cpu_start = time.process_time()  # every thread of this process
    yield ("started", os.getpid())
    threading.Thread(target=work, name="evaldock-task", daemon=True).start()
    while True:
        try:
            message = out.get(timeout=WATCH_SECONDS)
        except queue.Empty:
            over = _over(time.process_time() - cpu_start, cpu_seconds, _rss_mb(), memory_mb)
            if over is not None:
                yield over
                # The API process kills this process now; should it be gone, stop anyway.
                time.sleep(30)
                os._exit(1)
            continue
        yield message
        if message[0] in ("ok", "error"):
            return


def _over(cpu: float, cpu_bound: float, rss: float, rss_bound: float) -> tuple[Any, ...] | None:
    if cpu > cpu_bound:
        return ("limit", "cpu_seconds", f"{cpu:.1f} s")
    if rss > rss_bound:
        return ("limit", "memory_mb", f"{rss:.0f} MB")
    return None


class EngineActor:
    """An actor that runs tasks needing engines; its process builds each engine on the
    first task that asks (``worker.engine_for``) and keeps it for the actor's life."""

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings

    def serve(
        self, fn: Callable[..., Any], args: tuple[Any, ...], cpu_seconds: float, memory_mb: float
    ) -> Iterator[tuple[Any, ...]]:
        yield from serve(self.settings, fn, args, cpu_seconds, memory_mb)


# -- the API process's side ---------------------------------------------------------------


class _Actors:
    """The actors of one engine kind: at most ``size``, each running one task at a time;
    ``idle`` holds (actor, when it went idle), newest last."""

    def __init__(self, size: int) -> None:
        self.free = asyncio.Semaphore(max(1, size))
        self.idle: list[tuple[Any, float]] = []
        self.all: list[Any] = []


class _Lost(Exception):
    """The cluster lost the task (its worker, actor or node died): it may be sent again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_LIMIT_NAMES = {"wall_seconds": "wall-time", "cpu_seconds": "CPU-time", "memory_mb": "memory"}
SHIP_INPUTS = ("auto", "always", "never")


class RayPool(WorkerPool):
    """:class:`WorkerPool`'s interface with the job lane on a Ray cluster."""

    def __init__(
        self, settings: Settings | None, *, compute: ComputeSettings | None = None, **kw: Any
    ) -> None:
        super().__init__(settings, **kw)
        self.ray = import_ray()
        if compute is None:
            compute = settings.compute if settings is not None else ComputeSettings()
        if compute.ship_inputs not in SHIP_INPUTS:
            raise ConfigError(
                f"[compute] ship_inputs must be one of {', '.join(SHIP_INPUTS)}, "
                f"not {compute.ship_inputs!r}"
            )
        self.compute = compute
        self._ray_io = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="evaldock-ray"
        )
        self._connecting: asyncio.Future[None] | None = None
        self._started_ray = False
        self._settings_ref: Any = None
        self._task_fn: Any = None
        self._task_once: Any = None
        self._task_options: dict[str, Any] = {}
        self._actor_cls: Any = None
        self._actors: dict[tuple[str, ...], _Actors] = {}
        self._reaper: asyncio.TimerHandle | None = None
        # "auto": a cluster joined by its address may have other machines, which do not
        # see this one's disk; a Ray this server starts is this machine.
        ship = compute.ship_inputs
        self.ships_inputs = ship == "always" or (ship == "auto" and bool(compute.ray_address))
        self.inputs = InputCache(self.ray, self._ray_io)
        self.shared_data_missing: concurrent.futures.Future[list[str]] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Connect to Ray in the background (a local Ray takes seconds to start); job
        tasks wait for it. The local request workers start on first use."""
        self._connect_soon()

    def _connect_soon(self) -> asyncio.Future[None]:
        if self._connecting is None:
            loop = asyncio.get_running_loop()
            self._connecting = loop.run_in_executor(self._ray_io, self._connect)
        return self._connecting

    def _connect(self) -> None:
        ray = self.ray
        address = self.compute.ray_address
        if not ray.is_initialized():
            options: dict[str, Any] = {"namespace": "evaldock", "log_to_driver": False}
            if address:
                options["address"] = address
            else:
                # A Ray of this machine: its workers import what this process imports
                # (a test's task module), as local workers do.
                path = os.pathsep.join(p for p in sys.path if p)
                options["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
                options["include_dashboard"] = False
            ray.init(**options)
            self._started_ray = True
        self._settings_ref = ray.put(self.settings)
        task = self._resources("task")
        self._task_fn = ray.remote(serve)
        # A retiring task's worker exits after it (max_calls is not an .options() one).
        self._task_once = ray.remote(max_calls=1)(serve)
        self._task_options = {
            "num_returns": "streaming",
            "max_retries": 0,
            "num_cpus": task.num_cpus,
            "num_gpus": task.num_gpus,
        }
        self._actor_cls = ray.remote(EngineActor)
        log.info("job tasks run on Ray (%s)", address or "a Ray started by this server")
        if address and self.settings is not None:
            # Off the first task's path: the answer is a warning, not a refusal.
            self.shared_data_missing = self._ray_io.submit(self.check_shared_data)

    def check_shared_data(self) -> list[str]:
        """The nodes that cannot see ``[server] data`` (each logged with the fix)."""
        if self.settings is None:
            return []
        try:
            return check_shared_data(self.ray, self.settings.data_dir)
        except Exception:
            log.exception("could not check that every Ray node sees [server] data")
            return []

    async def _ready(self) -> None:
        try:
            await asyncio.shield(self._connect_soon())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            where = self.compute.ray_address or "this machine"
            raise TaskFailed(
                f"could not reach the Ray cluster at {where}: {type(exc).__name__}: {exc}; "
                'check [compute] ray_address (or set [compute] backend = "local")'
            ) from None

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        connecting = self._connecting
        if connecting is not None and connecting.done() and connecting.exception() is None:
            for actors in self._actors.values():
                for actor in actors.all:
                    with contextlib.suppress(Exception):
                        self.ray.kill(actor, no_restart=True)
            self._actors.clear()
            self.inputs.clear()
            if self._started_ray:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._ray_io, self.ray.shutdown)
        await super().close()
        self._ray_io.shutdown(wait=False, cancel_futures=True)

    def _resources(self, kind: str) -> TaskResources:
        return self.compute.resources.get(kind) or TaskResources()

    # -- running a task -----------------------------------------------------------------
    async def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        limits: TaskLimits | None = None,
        lane: str = "job",
        on_say: Say | None = None,
        on_progress: Progress | None = None,
        retire: bool | None = None,
    ) -> Any:
        """``fn(ctx, *args)`` on the cluster (job lane and engine checks) or in a local
        worker (request lane); its value, or its exception re-raised here. ``retire``
        (or ``fn`` marked by ``retire_worker``): the process that ran it ends with it
        (a Ray task's worker exits, ``max_calls=1``; an actor is killed). A task the
        cluster lost is sent again up to ``[compute] retries`` times."""
        kinds = engine_kinds(fn, args)
        if lane == "request" and fn is not worker_module.check_engine:
            return await super().run(
                fn,
                *args,
                limits=limits,
                lane=lane,
                on_say=on_say,
                on_progress=on_progress,
                retire=retire,
            )
        if self._closed:
            raise TaskFailed("the server is stopping")
        if retire is None:
            retire = bool(getattr(fn, RETIRE_ATTR, False))
        await self._ready()
        bounds = limits or self.limits_for(lane)
        if self.ships_inputs:
            args = await ship_args(args, self.inputs.ship)
        retries = max(0, self.compute.retries)
        attempt = 0
        while True:
            try:
                return await self._attempt(fn, args, kinds, bounds, retire, on_say, on_progress)
            except _Lost as lost:
                if attempt >= retries:
                    after = f" (after {attempt} {'retry' if attempt == 1 else 'retries'})"
                    raise WorkerCrashed(lost.reason + (after if attempt else "")) from None
                attempt += 1
                line = f"retried on Ray after: {lost.reason}"
                if on_say is not None:
                    await _quietly(on_say, line)
                else:
                    log.warning("%s: %s", getattr(fn, "__name__", fn), line)

    async def _attempt(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kinds: tuple[str, ...],
        bounds: TaskLimits,
        retire: bool,
        on_say: Say | None,
        on_progress: Progress | None,
    ) -> Any:
        if not kinds:
            remote = (self._task_once if retire else self._task_fn).options(**self._task_options)
            gen = remote.remote(self._settings_ref, fn, args, bounds.cpu_seconds, bounds.memory_mb)
            value, _rss = await self._follow(gen, None, fn, bounds, on_say, on_progress)
            return _answer(value)
        actors = self._actors.setdefault(kinds, _Actors(self.compute.actors))
        async with actors.free:
            actor = actors.idle.pop()[0] if actors.idle else self._new_actor(kinds, actors)
            done = retire
            try:
                gen = actor.serve.options(num_returns="streaming").remote(
                    fn, args, bounds.cpu_seconds, bounds.memory_mb
                )
                value, rss = await self._follow(gen, actor, fn, bounds, on_say, on_progress)
                if rss > self.recycle_mb:
                    # As a local worker: a task that decoded a large file leaves no
                    # gigabytes behind in a process that lives on.
                    log.info(
                        "retiring a Ray actor of %s: %.0f MB resident after its task "
                        "(> [jobs] worker_recycle_mb %d)",
                        ", ".join(kinds),
                        rss,
                        self.recycle_mb,
                    )
                    done = True
            finally:
                if done:
                    self._kill(None, actor)
                elif actor in actors.all:  # still alive (an answer, the task's own error)
                    actors.idle.append((actor, time.monotonic()))
                    self._schedule_reap()
            return _answer(value)

    def _new_actor(self, kinds: tuple[str, ...], actors: _Actors) -> Any:
        # A kind not listed holds no CPU (Ray's own default for actors): an idle actor
        # of each surface's engine would otherwise hold a CPU each for its life, and on
        # a 2-CPU Ray the ranker's and the embedder's left no CPU for any task.
        wanted = [self.compute.resources.get(k) or TaskResources(num_cpus=0) for k in kinds]
        actor = self._actor_cls.options(
            num_cpus=max(r.num_cpus for r in wanted),
            num_gpus=max(r.num_gpus for r in wanted),
            max_restarts=0,
            max_task_retries=0,
        ).remote(self._settings_ref)
        actors.all.append(actor)
        return actor

    def _schedule_reap(self) -> None:
        """Wake when the longest-idle actor reaches ``[compute] actor_idle_seconds``."""
        limit = self.compute.actor_idle_seconds
        if self._reaper is not None or self._closed or limit <= 0:
            return
        since = [t for actors in self._actors.values() for _, t in actors.idle]
        if not since:
            return
        delay = max(0.0, min(since) + limit - time.monotonic())
        self._reaper = asyncio.get_running_loop().call_later(delay, self._reap)

    def _reap(self) -> None:
        """Kill the actors idle for ``[compute] actor_idle_seconds``: an idle actor holds
        its CPUs or GPUs and its model's memory on the cluster for nothing."""
        self._reaper = None
        limit = self.compute.actor_idle_seconds
        now = time.monotonic()
        for kinds, actors in self._actors.items():
            stale = [a for a, t in actors.idle if now - t >= limit]
            actors.idle = [(a, t) for a, t in actors.idle if now - t < limit]
            for actor in stale:
                log.info(
                    "retiring a Ray actor of %s: idle for %g s ([compute] actor_idle_seconds)",
                    ", ".join(kinds),
                    limit,
                )
                self._kill(None, actor)
        self._schedule_reap()

    def _kill(self, gen: Any, actor: Any) -> None:
        with contextlib.suppress(Exception):
            if actor is None:
                self.ray.cancel(gen, force=True)
            else:
                self.ray.kill(actor, no_restart=True)
        if actor is not None:
            for actors in self._actors.values():
                if actor in actors.all:
                    actors.all.remove(actor)

    async def _follow(
        self,
        gen: Any,
        actor: Any,
        fn: Callable[..., Any],
        limits: TaskLimits,
        on_say: Say | None,
        on_progress: Progress | None,
    ) -> tuple[Any, float]:
        """(the answer: ``("ok", value)`` or ``("error", exception)``, the resident MB
        of the process that ran it). Raises :class:`_Lost` when the cluster lost it."""
        ray = self.ray
        started: float | None = None
        try:
            while True:
                timeout = None
                if started is not None:
                    timeout = max(0.0, limits.wall_seconds - (time.monotonic() - started))
                try:
                    message = await asyncio.wait_for(_next(gen), timeout)
                except TimeoutError:
                    self._kill(gen, actor)
                    used = f"{time.monotonic() - (started or 0):.1f} s"
                    raise _limit(limits, "wall_seconds", used) from None
                kind = message[0]
                if kind == "started":
                    started = time.monotonic()
                elif kind == "say":
                    if on_say is not None:
                        await _quietly(on_say, message[1])
                    else:
                        log.info("%s", message[1])
                elif kind == "progress":
                    if on_progress is not None:
                        await _quietly(on_progress, message[1], message[2])
                elif kind == "limit":
                    self._kill(gen, actor)
                    raise _limit(limits, message[1], message[2])
                elif kind == "ok":
                    return ("ok", message[1]), float(message[2])
                elif kind == "error":
                    exc = worker_module.unpack_error(message[1])
                    log.debug("task %s raised on Ray:\n%s", getattr(fn, "__name__", fn), message[2])
                    return ("error", exc), float(message[3])
        except asyncio.CancelledError:
            self._kill(gen, actor)
            raise
        except StopAsyncIteration:
            if actor is not None:
                self._kill(gen, actor)
            raise _Lost("the task's Ray worker ended without an answer") from None
        except ray.exceptions.RayError as exc:
            if actor is not None:
                self._kill(gen, actor)  # a dead actor is not reused
            reason = describe(ray, exc)
            # A cancel by someone else, or serve() itself failing on the node (a module
            # that does not import there): sending it again would meet the same.
            if isinstance(exc, ray.exceptions.TaskCancelledError | ray.exceptions.RayTaskError):
                raise WorkerCrashed(reason) from None
            raise _Lost(reason) from None


def _answer(answer: tuple[str, Any]) -> Any:
    kind, value = answer
    if kind == "error":
        raise value
    return value


async def _next(gen: Any) -> tuple[Any, ...]:
    ref = await gen.__anext__()
    message: tuple[Any, ...] = await ref
    return message


async def _quietly(callback: Callable[..., Any], *args: Any) -> None:
    try:
        await callback(*args)
    except Exception:  # a log line that failed must not fail the task
        log.exception("could not record a Ray task's message")


def _limit(limits: TaskLimits, field: str, used: str) -> LimitExceeded:
    unit = "MB" if field == "memory_mb" else "s"
    bound = getattr(limits, field)
    return LimitExceeded(_LIMIT_NAMES[field], used, f"{bound:g} {unit}", limits.settings[field])


def describe(ray: Any, exc: BaseException) -> str:
    """What happened to a task the cluster did not answer, in a job's words."""
    errors = ray.exceptions
    first = (str(exc).strip().splitlines() or [""])[0]
    name = type(exc).__name__
    if isinstance(exc, errors.OutOfMemoryError):
        what = "Ray's memory monitor killed the task: its node ran out of memory"
    elif isinstance(exc, getattr(errors, "NodeDiedError", ())) or "node" in first.lower():
        what = "the Ray node running the task was lost"
    elif isinstance(exc, errors.WorkerCrashedError):
        what = "the Ray worker process running the task died (killed, or a crash)"
    elif isinstance(exc, errors.RayActorError):
        what = "the Ray actor running the task died"
    elif isinstance(exc, errors.TaskCancelledError):
        what = "the task was cancelled on the Ray cluster"
    elif isinstance(exc, errors.ObjectLostError):
        what = "the task's answer was lost with the node that held it"
    else:
        what = "the Ray cluster failed the task"
    return f"{what} ({name}: {first})" if first else f"{what} ({name})"
