"""Job timing for contract tests (mock mode), moto's state manager done on a real queue.

Per surface: ``immediate`` (default: a job runs as soon as a worker is free), ``polls``
(a claimed job waits until its resource has been read ``n`` times), ``seconds`` (a
claimed job waits ``n`` seconds), ``hold`` (a job stays queued until advanced, then
running until advanced again). ``advance`` moves one job one state along its surface's
ordered status map; the surface's own rendering is untouched, since the job really is
in the state the client is told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import VendorErrors
from ..jobs import TERMINAL, Job, JobRunner, JobState, JobView, StatusMap
from ..pipeline import Call

MODES = ("immediate", "polls", "seconds", "hold")
# How long advance waits for the step it caused to show (a mock job takes milliseconds).
SETTLE_SECONDS = 10.0


@dataclass
class Timing:
    mode: str = "immediate"
    n: float = 0

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "n": self.n}


@dataclass
class _Held:
    claimable: bool = False
    polls: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)


class TimingError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class JobTiming:
    def __init__(
        self,
        runner: JobRunner,
        kinds: Mapping[str, tuple[str, StatusMap]],
        configured: Mapping[str, Any],
    ) -> None:
        self.runner = runner
        self.kinds = dict(kinds)  # job kind -> (surface, status map)
        self.policies: dict[str, Timing] = {}
        self.held: dict[str, _Held] = {}
        self._owners: dict[str, str] = {}  # held job id -> surface
        for surface, table in configured.items():
            if isinstance(table, Mapping):
                self.set(surface, str(table.get("mode", "immediate")), float(table.get("n", 0)))
        runner.gates.append(self.claim_gate)
        runner.start_gates.append(self.start_gate)

    def surfaces(self) -> set[str]:
        return {surface for surface, _ in self.kinds.values()}

    def policy(self, surface: str) -> Timing:
        return self.policies.get(surface, Timing())

    def set(self, surface: str, mode: str, n: float = 0) -> Timing:
        if mode not in MODES:
            raise TimingError(400, f"mode must be one of {', '.join(MODES)}")
        self.policies[surface] = Timing(mode, n)
        if mode == "immediate":  # release whatever this surface held
            for job_id, held in list(self.held.items()):
                if self._surface_of_held(job_id) == surface:
                    held.claimable = True
                    held.release.set()
            self.runner.wake()
        return self.policies[surface]

    def clear(self, surface: str | None = None) -> None:
        for name in list(self.policies) if surface is None else [surface]:
            self.set(name, "immediate")

    def _surface_of_held(self, job_id: str) -> str | None:
        return self._owners.get(job_id)

    def _track(self, job_id: str, kind: str) -> _Held | None:
        owner = self.kinds.get(kind)
        if owner is None:
            return None
        self._owners[job_id] = owner[0]
        return self.held.setdefault(job_id, _Held())

    # -- runner gates -------------------------------------------------------------------
    def claim_gate(self, view: JobView) -> bool:
        owner = self.kinds.get(view.kind)
        if owner is None or self.policy(owner[0]).mode != "hold":
            return True
        held = self._track(view.id, view.kind)
        return held is None or held.claimable

    async def start_gate(self, job: Job) -> None:
        owner = self.kinds.get(job.kind)
        if owner is None:
            return
        timing = self.policy(owner[0])
        if timing.mode == "seconds":
            await asyncio.sleep(min(timing.n, 3600))
            return
        if timing.mode not in ("polls", "hold"):
            return
        held = self._track(job.id, job.kind)
        assert held is not None
        if timing.mode == "polls" and held.polls >= timing.n:
            return
        try:
            await held.release.wait()
        finally:
            self.held.pop(job.id, None)
            self._owners.pop(job.id, None)

    def polled(self, ids: list[str]) -> None:
        for job_id in ids:
            held = self.held.get(job_id) or self.held.get(job_id.lower())
            surface = self._owners.get(job_id) or self._owners.get(job_id.lower())
            if held is None or surface is None:
                continue
            held.polls += 1
            timing = self.policy(surface)
            if timing.mode == "polls" and held.polls >= timing.n:
                held.release.set()

    # -- the control plane's calls ------------------------------------------------------
    async def job(self, surface: str, resource_id: str) -> JobView:
        view = await self.runner.view(resource_id) or await self.runner.view(resource_id.lower())
        if view is None or self.kinds.get(view.kind, ("",))[0] != surface:
            raise TimingError(404, f"no job of surface {surface!r} for resource {resource_id!r}")
        return view

    async def advance(self, surface: str, resource_id: str) -> JobView:
        view = await self.job(surface, resource_id)
        if view.status in TERMINAL:
            raise TimingError(409, f"job {view.id} already ended: {view.status}")
        if view.status == JobState.WAITING:
            await self.runner.resume(view.id)
            return await self._settle(view, frozenset({JobState.WAITING}))
        if view.status == JobState.QUEUED:
            held = self._track(view.id, view.kind)
            if held is not None:
                held.claimable = True
            self.runner.wake()
            return await self._settle(view, frozenset({JobState.QUEUED}))
        held = self.held.get(view.id)
        if held is None:
            raise TimingError(
                409,
                f"job {view.id} is running and not held; it finishes on its own "
                f"(set the timing of {surface} to hold or polls to step it)",
            )
        held.release.set()
        return await self._settle(view, frozenset({JobState.RUNNING}))

    async def _settle(self, view: JobView, leaving: frozenset[str]) -> JobView:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_SECONDS
        current = view
        while loop.time() < deadline:
            found = await self.runner.view(view.id)
            if found is None:
                break
            current = found
            if current.status not in leaving:
                break
            await asyncio.sleep(0.01)
        return current


class PollHook:
    """Counts reads of a resource (a GET naming its id in the path) for ``polls``."""

    def __init__(self, timing: JobTiming) -> None:
        self.timing = timing

    async def before(self, call: Call, errors: VendorErrors) -> Response | None:
        return None

    def after(self, call: Call, response: Response) -> Response | None:
        request: Request = call.request
        if request.method == "GET" and self.timing.held:
            ids = [str(v) for v in request.path_params.values()]
            self.timing.polled(ids)
        return None
