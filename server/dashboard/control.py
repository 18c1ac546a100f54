"""The control plane's levers as pages: jobs (timing, advance, fail), faults (list, add,
delete), the request journal with its filters.

The same calls as ``/_evaldock/*`` (server/control/provider.py) on the same objects,
behind the dashboard's guard instead of the control key header: a session, and on every
state-changing form a CSRF token (sessions.py). Each form posts, then redirects back
(post/redirect/get: a reload resends nothing) with what it did shown once. The bounds are
the API's (openapi/evaldock.yaml FaultRequest), checked here because a form is not run
through the spec's validation.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..control.faults import MAX_FAULTS, Faults, TooManyFaults
from ..control.timing import TimingError
from ..jobs import JobView
from .badquery import BadQuery
from .sessions import Session

if TYPE_CHECKING:
    from .pages import Dashboard

Handler = Callable[[Request, Session], Awaitable[Response]]
# What a job's form does, given (form, surface, job id): the message shown back.
JobAction = Callable[[dict[str, str], str, str], Awaitable[str]]
Guard = Callable[..., Callable[[Request], Awaitable[Response]]]

MODES = ("immediate", "polls", "seconds", "hold")
FAULT_KINDS = ("error", "latency", "drop", "slow_body")
METHODS = ("*", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# The journal page shows the newest entries first, this many by default (the ring holds
# [control] journal_size, 1,000 by default).
JOURNAL_PAGE = 100
# The jobs page lists at most this many (finished ones included with "all"); polling
# asks for the ids on the page only.
JOBS_SHOWN = 500


class FormError(Exception):
    """A field of a control form out of the API's bounds: the message names it."""


def _field_int(form: dict[str, str], name: str, low: int, high: int) -> int | None:
    text = (form.get(name) or "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise FormError(f"{name} must be a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise FormError(f"{name} must be from {low} to {high}; got {value}")
    return value


def _field_float(form: dict[str, str], name: str, low: float, high: float) -> float | None:
    text = (form.get(name) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise FormError(f"{name} must be a number from {low:g} to {high:g}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise FormError(f"{name} must be from {low:g} to {high:g}; got {text}")
    return value


def fault_spec(form: dict[str, str], surfaces: set[str]) -> dict[str, Any]:
    """A fault form as the body ``POST /_evaldock/faults`` takes, within its bounds."""
    surface = (form.get("surface") or "").strip()
    if surface != "*" and surface not in surfaces:
        raise FormError(f"surface must be * or one of {', '.join(sorted(surfaces))}")
    method = (form.get("method") or "*").strip().upper()
    if method not in METHODS:
        raise FormError(f"method must be one of {', '.join(METHODS)}")
    path = (form.get("path") or "*").strip() or "*"
    if len(path) > 512:
        raise FormError("path is at most 512 characters (an fnmatch pattern)")
    kind = form.get("kind") or "error"
    if kind not in FAULT_KINDS:
        raise FormError(f"kind must be one of {', '.join(FAULT_KINDS)}")
    spec: dict[str, Any] = {"surface": surface, "method": method, "path": path, "kind": kind}
    message = (form.get("message") or "").strip()
    if len(message) > 2000:
        raise FormError("message is at most 2,000 characters")
    if message:
        spec["message"] = message
    for name, low, high in (("status", 200, 599), ("code", 0, 9_999_999), ("count", 1, 100)):
        value = _field_int(form, name, low, high)
        if value is not None:
            spec[name] = value
    latency = _field_int(form, "latency_ms", 0, 5000)
    if latency is not None:
        spec["latency_ms"] = latency
    rate = _field_float(form, "rate", 0, 1)
    if rate is not None:
        spec["rate"] = rate
    ttl = _field_float(form, "ttl_seconds", 0.1, 3600)
    if ttl is not None:
        spec["ttl_seconds"] = ttl
    if "count" not in spec and "ttl_seconds" not in spec:
        spec["ttl_seconds"] = 60  # every fault is bounded, as the API does
    return spec


def remove_fault(faults: Faults, fault_id: str) -> bool:
    """Take one fault out of the list (as ``DELETE /_evaldock/faults/{id}`` does)."""
    return faults.remove(fault_id)


class ControlPages:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    @property
    def plane(self) -> Any:
        return self.dash.plane

    def routes(self, page: Guard) -> list[BaseRoute]:
        c = "/_evaldock/ui/control"
        return [
            Route(c + "/jobs", page(self.jobs), methods=["GET"]),
            Route(c + "/jobs.json", page(self.jobs_json, json=True), methods=["GET"]),
            Route(c + "/jobs/timing", page(self.set_timing), methods=["POST"]),
            Route(c + "/jobs/{surface}/{job_id}/advance", page(self.advance), methods=["POST"]),
            Route(c + "/jobs/{surface}/{job_id}/fail", page(self.fail), methods=["POST"]),
            Route(c + "/faults", page(self.faults), methods=["GET"]),
            Route(c + "/faults", page(self.add_fault), methods=["POST"]),
            Route(c + "/faults/clear", page(self.clear_faults), methods=["POST"]),
            Route(c + "/faults/{fault_id}/delete", page(self.delete_fault), methods=["POST"]),
            Route(c + "/journal", page(self.journal), methods=["GET"]),
            Route(c + "/journal/clear", page(self.clear_journal), methods=["POST"]),
        ]

    # -- jobs -----------------------------------------------------------------------------
    def job_json(self, view: JobView) -> dict[str, Any]:
        surface, statuses = self.plane.kinds.get(view.kind, ("", None))
        vendor = statuses.word(view.status) if statuses is not None else view.status
        return {
            "surface": surface,
            "id": view.id,
            "kind": view.kind,
            "status": view.status,
            "vendor_status": " / ".join(vendor) if isinstance(vendor, tuple) else str(vendor),
            "processed": view.processed,
            "total": view.total,
            "error": view.error,
            "held": view.id in self.plane.timing.held,
            "created_at": view.created_at,
        }

    async def jobs(self, request: Request, session: Session) -> Response:
        everything = request.query_params.get("all") in ("1", "on", "true")
        views = await self.dash.ctx.runner.views(active_only=not everything)
        # Newest first: the job just made is the one a person looks for.
        jobs = [self.job_json(v) for v in reversed(views[-JOBS_SHOWN:])]
        linked = {s.view.job_kind: s.name for s in self.dash.surfaces if s.view is not None}
        names = sorted(self.plane.surface_names)
        return self.dash._page(
            request,
            "jobs.html",
            session,
            jobs=jobs,
            everything=everything,
            linked=set(linked.values()),
            timings=[(n, self.plane.timing.policy(n)) for n in names],
            modes=MODES,
            mock=self.dash.ctx.settings.mode == "mock",
            here="/control/jobs" + ("?all=1" if everything else ""),
        )

    async def jobs_json(self, request: Request, session: Session) -> Response:
        """The jobs the page shows (``id`` repeated), for its once-a-second update."""
        ids = request.query_params.getlist("id")[:JOBS_SHOWN]
        found = []
        for job_id in ids:
            view = await self.dash.ctx.runner.view(job_id)
            if view is not None:
                found.append(self.job_json(view))
        active = await self.dash.ctx.db.fetchone(
            "SELECT COUNT(*) AS n FROM job_view WHERE status IN ('queued', 'running', 'waiting')"
        )
        return self.dash._json({"jobs": found, "active": int(active["n"]) if active else 0})

    def _return_to(self, form: dict[str, str]) -> str:
        back = form.get("back") or "/control/jobs"
        return back if back.startswith("/control/") and "//" not in back else "/control/jobs"

    async def set_timing(self, request: Request, session: Session) -> Response:
        form = await self.dash.posted(request, session)
        if form is None:
            return self.dash.stale(request, session)
        surface, mode = form.get("surface") or "", form.get("mode") or ""
        back = self._return_to(form)
        if surface not in self.plane.surface_names or mode not in MODES:
            return self.dash.back(request, back, f"No surface {surface!r} or mode {mode!r}.")
        if self.dash.ctx.settings.mode != "mock" and mode != "immediate":
            return self.dash.back(
                request, back, "Job timing applies in mock mode only (evaldock serve --mode mock)."
            )
        try:
            n = _field_float(form, "n", 0, 86_400) or 0.0
        except FormError as exc:
            return self.dash.back(request, back, str(exc))
        self.plane.timing.set(surface, mode, n)
        return self.dash.back(request, back, f"{surface}: jobs now {mode}.")

    async def _job_form(self, request: Request, session: Session, act: JobAction) -> Response:
        """A job's form (advance, fail): the session's form, a served surface, then
        ``act(form, surface, job id)``'s message, or the TimingError's (no such job,
        already ended), shown back on the page the form came from."""
        form = await self.dash.posted(request, session)
        if form is None:
            return self.dash.stale(request, session)
        surface, job_id = request.path_params["surface"], request.path_params["job_id"]
        back = self._return_to(form)
        if surface not in self.plane.surface_names:
            return self.dash.back(request, back, f"No surface {surface!r} is served.")
        try:
            said = await act(form, surface, job_id)
        except TimingError as exc:
            said = exc.message
        return self.dash.back(request, back, said)

    async def advance(self, request: Request, session: Session) -> Response:
        async def act(form: dict[str, str], surface: str, job_id: str) -> str:
            view = await self.plane.timing.advance(surface, job_id)
            return f"Job {view.id} advanced: now {view.status}."

        return await self._job_form(request, session, act)

    async def fail(self, request: Request, session: Session) -> Response:
        async def act(form: dict[str, str], surface: str, job_id: str) -> str:
            reason = (form.get("reason") or "").strip()[:2000] or "failed by the evaldock dashboard"
            view = await self.plane.timing.job(surface, job_id)
            if not await self.dash.ctx.runner.fail(view.id, reason):
                return f"Job {view.id} already ended: {view.status}."
            return f"Job {view.id} failed: {reason}"

        return await self._job_form(request, session, act)

    # -- faults ---------------------------------------------------------------------------
    async def faults(self, request: Request, session: Session) -> Response:
        return self.dash._page(
            request,
            "faults.html",
            session,
            faults=[f.as_json() for f in self.plane.faults.active()],
            surfaces=sorted(self.plane.surface_names),
            kinds=FAULT_KINDS,
            methods=METHODS,
            limit=MAX_FAULTS,
        )

    async def add_fault(self, request: Request, session: Session) -> Response:
        form = await self.dash.posted(request, session)
        if form is None:
            return self.dash.stale(request, session)
        try:
            spec = fault_spec(form, set(self.plane.surface_names))
            fault = self.plane.faults.add(spec)
        except (FormError, TooManyFaults) as exc:
            return self.dash.back(request, "/control/faults", f"Not added: {exc}")
        return self.dash.back(request, "/control/faults", f"Fault {fault.id} added.")

    async def delete_fault(self, request: Request, session: Session) -> Response:
        form = await self.dash.posted(request, session)
        if form is None:
            return self.dash.stale(request, session)
        fault_id = request.path_params["fault_id"]
        done = remove_fault(self.plane.faults, fault_id)
        said = f"Fault {fault_id} deleted." if done else f"No fault {fault_id} (spent or expired)."
        return self.dash.back(request, "/control/faults", said)

    async def clear_faults(self, request: Request, session: Session) -> Response:
        form = await self.dash.posted(request, session)
        if form is None:
            return self.dash.stale(request, session)
        n = self.plane.faults.clear()
        return self.dash.back(
            request, "/control/faults", f"{n} fault{'' if n == 1 else 's'} deleted."
        )

    # -- journal --------------------------------------------------------------------------
    async def journal(self, request: Request, session: Session) -> Response:
        q = request.query_params
        filters = {
            k: (q.get(k) or "").strip() or None for k in ("surface", "operation", "path", "method")
        }
        text = q.get("limit") or str(JOURNAL_PAGE)
        if not text.isdigit() or not 1 <= int(text) <= 1000:
            raise BadQuery("limit must be a whole number from 1 to 1000")
        entries = self.plane.journal.find(**filters, limit=int(text))
        entries.reverse()  # newest first
        return self.dash._page(
            request,
            "journal.html",
            session,
            entries=entries,
            filters={k: v or "" for k, v in filters.items()},
            limit=int(text),
            surfaces=sorted(self.plane.surface_names),
            methods=METHODS[1:],
            query=urllib.parse.urlencode({k: v for k, v in filters.items() if v}),
        )

    async def clear_journal(self, request: Request, session: Session) -> Response:
        form = await self.dash.posted(request, session)
        if form is None:
            return self.dash.stale(request, session)
        n = self.plane.journal.clear()
        return self.dash.back(request, "/control/journal", f"{n} journal entries cleared.")
