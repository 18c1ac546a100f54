"""Handlers of openapi/evaldock.yaml: the control plane's operations."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

from starlette.responses import Response

from ..auth import Authenticator, KeyAuthenticator, OpenAuthenticator
from ..errors import ApiError, ErrorCode, VendorErrors
from ..jobs import JobView
from ..jsonio import JSONResponse
from ..surface import ApiRequest, Provider
from .faults import TooManyFaults
from .timing import TimingError

if TYPE_CHECKING:
    from . import ControlPlane


class ControlErrors(VendorErrors):
    """``{"error": code, "message": text}``: evaldock's own envelope."""

    def render(self, err: ApiError) -> Response:
        return JSONResponse(
            {"error": str(err.code), "message": err.message},
            status_code=err.status,
            headers=err.headers,
        )

    def unauthorized(self) -> ApiError:
        return ApiError(
            401,
            "The control plane needs the control key in X-Evaldock-Control-Key: read it from "
            "<data dir>/control.key, or set [control] key (or [control] open = true on a "
            "disposable test box)",
            code=ErrorCode.UNAUTHORIZED,
        )


def _version() -> str:
    try:
        return metadata.version("evaldock")
    except metadata.PackageNotFoundError:
        return "dev"


class ControlProvider(Provider):
    errors: ClassVar[ControlErrors] = ControlErrors()
    plane: ControlPlane

    def authenticator(self) -> Authenticator:
        key = self.plane.key
        if key is None:
            return OpenAuthenticator()
        return KeyAuthenticator("evaldock", [key], "x-evaldock-control-key", bearer=False)

    # -- open ---------------------------------------------------------------------------
    async def health(self, req: ApiRequest) -> Response:
        return JSONResponse({"status": "ok", "mode": self.settings.mode})

    async def version(self, req: ApiRequest) -> Response:
        return JSONResponse({"version": _version()})

    async def surfaces(self, req: ApiRequest) -> Response:
        base = str(req.request.base_url).rstrip("/")
        return JSONResponse(
            [
                {
                    "surface": rt.spec.surface,
                    "title": rt.spec.title,
                    "base_url": base,
                    "prefixed_base_url": base + rt.spec.prefix,
                    "openapi": base + rt.spec.prefix + "/openapi.yaml",
                    "operations": [o.operation_id for o in rt.spec.operations],
                }
                for rt in self.plane.runtimes
            ]
        )

    async def metrics(self, req: ApiRequest) -> Response:
        from .metrics import CONTENT_TYPE

        body = await self.plane.metrics.render(self.db, self.plane.kind_surfaces, self.ctx.engines)
        return Response(body, media_type=CONTENT_TYPE)

    # -- reset --------------------------------------------------------------------------
    async def reset_state(self, req: ApiRequest) -> Response:
        scope: Mapping[str, Any] = {**req.query, **(req.body or {})}
        surface, key = scope.get("surface"), scope.get("key")
        if key and not surface:
            raise self.errors.invalid_request("key names a tenant of one surface: give surface too")
        runtimes = self.plane.runtimes
        if surface is not None:
            runtimes = [rt for rt in runtimes if rt.spec.surface == surface]
            if not runtimes:
                raise self._unknown_surface(str(surface))
        done = []
        for rt in runtimes:
            tenant = rt.provider.tenant_for_key(str(key)) if key else None
            await rt.provider.reset(tenant)
            rt.provider.answers.forget(tenant)
            done.append({"surface": rt.spec.surface, "scope": "tenant" if key else "all"})
            if not key:
                self.plane.faults.clear(rt.spec.surface)
                self.plane.timing.clear(rt.spec.surface)
        if surface is None and not key:
            self.plane.faults.clear()
            self.plane.journal.clear()
        return JSONResponse({"reset": done})

    def _unknown_surface(self, name: str) -> ApiError:
        known = ", ".join(rt.spec.surface for rt in self.plane.runtimes)
        return ApiError(
            404, f"no surface {name!r} is served; served: {known}", code=ErrorCode.NOT_FOUND
        )

    # -- journal ------------------------------------------------------------------------
    async def get_journal(self, req: ApiRequest) -> Response:
        q = req.query
        entries = self.plane.journal.find(
            surface=q.get("surface"),
            operation=q.get("operation"),
            path=q.get("path"),
            method=q.get("method"),
            limit=int(q.get("limit") or 1000),
        )
        return JSONResponse({"entries": entries})

    async def clear_journal(self, req: ApiRequest) -> Response:
        return JSONResponse({"cleared": self.plane.journal.clear()})

    # -- faults -------------------------------------------------------------------------
    async def list_faults(self, req: ApiRequest) -> Response:
        return JSONResponse({"faults": [f.as_json() for f in self.plane.faults.active()]})

    async def add_fault(self, req: ApiRequest) -> Response:
        body = dict(req.body)
        if body["surface"] != "*" and body["surface"] not in self.plane.surface_names:
            raise self._unknown_surface(body["surface"])
        if "count" not in body and "ttl_seconds" not in body:
            body["ttl_seconds"] = 60  # every fault is bounded
        try:
            fault = self.plane.faults.add(body)
        except TooManyFaults as exc:
            raise ApiError(400, str(exc), code=ErrorCode.INVALID_REQUEST) from None
        return JSONResponse(fault.as_json())

    async def clear_faults(self, req: ApiRequest) -> Response:
        return JSONResponse({"cleared": self.plane.faults.clear()})

    async def delete_fault(self, req: ApiRequest) -> Response:
        fault_id = str(req.path["fault_id"])
        if not self.plane.faults.remove(fault_id):
            raise ApiError(
                404,
                f"no active fault {fault_id!r} (spent or expired?);"
                " GET /_evaldock/faults lists them",
                code=ErrorCode.NOT_FOUND,
            )
        return JSONResponse({"cleared": 1})

    # -- jobs ---------------------------------------------------------------------------
    def _job_json(self, view: JobView) -> dict[str, Any]:
        surface, statuses = self.plane.kinds.get(view.kind, ("", None))
        vendor = statuses.word(view.status) if statuses is not None else view.status
        return {
            "surface": surface,
            "id": view.id,
            "kind": view.kind,
            "status": view.status,
            "vendor_status": list(vendor) if isinstance(vendor, tuple) else vendor,
            "processed": view.processed,
            "total": view.total,
            "error": view.error,
            "held": view.id in self.plane.timing.held,
            "created_at": view.created_at,
            "started_at": view.started_at,
            "finished_at": view.finished_at,
        }

    async def list_jobs(self, req: ApiRequest) -> Response:
        surface = req.query.get("surface")
        views = await self.runner.views(active_only=not req.query.get("all"))
        jobs = [self._job_json(v) for v in views]
        if surface:
            jobs = [j for j in jobs if j["surface"] == surface]
        return JSONResponse({"jobs": jobs[: int(req.query.get("limit") or 500)]})

    def _surface(self, req: ApiRequest) -> str:
        surface = str(req.path["surface"])
        if surface not in self.plane.surface_names:
            raise self._unknown_surface(surface)
        return surface

    async def get_job_timing(self, req: ApiRequest) -> Response:
        return JSONResponse(self.plane.timing.policy(self._surface(req)).as_json())

    async def set_job_timing(self, req: ApiRequest) -> Response:
        surface = self._surface(req)
        if self.settings.mode != "mock" and req.body["mode"] != "immediate":
            raise self.errors.invalid_request(
                "job timing applies in mock mode only (evaldock serve --mode mock)"
            )
        timing = self.plane.timing.set(surface, req.body["mode"], float(req.body.get("n", 0)))
        return JSONResponse(timing.as_json())

    async def advance_job(self, req: ApiRequest) -> Response:
        try:
            view = await self.plane.timing.advance(self._surface(req), str(req.path["resource_id"]))
        except TimingError as exc:
            raise ApiError(exc.status, exc.message, code=_code(exc.status)) from None
        return JSONResponse(self._job_json(view))

    async def fail_job(self, req: ApiRequest) -> Response:
        surface = self._surface(req)
        reason = (req.body or {}).get("reason") or "failed by the evaldock control plane"
        try:
            view = await self.plane.timing.job(surface, str(req.path["resource_id"]))
        except TimingError as exc:
            raise ApiError(exc.status, exc.message, code=_code(exc.status)) from None
        if not await self.runner.fail(view.id, reason):
            raise ApiError(
                409, f"job {view.id} already ended: {view.status}", code=ErrorCode.CONFLICT
            )
        found = await self.runner.view(view.id)
        assert found is not None
        return JSONResponse(self._job_json(found))


def _code(status: int) -> ErrorCode:
    return {404: ErrorCode.NOT_FOUND, 409: ErrorCode.CONFLICT}.get(
        status, ErrorCode.INVALID_REQUEST
    )
