"""The Starlette application, built from the surfaces' declarations and specs.

Every operation of every enabled surface becomes a route at the vendor's own path and
again under ``/<vendor>/``; its handler is the provider method named by its operationId,
reached through the request pipeline (:mod:`evaldock.server.pipeline`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from evaldock.engines.errors import EngineUnavailable

from .compute import TaskLimits
from .compute.backend import pool_class
from .compute.engines import build_engines, placed
from .compute.worker import check_engine
from .config import ConfigError, Settings
from .control import ControlPlane
from .control.provider import ControlProvider
from .dashboard import dashboard_routes
from .db import Database
from .jobs import JobRunner
from .jsonio import JSONResponse, encode
from .pipeline import RequestHook, SurfacePipeline, SurfaceRuntime
from .readgate import ReadGate
from .routing import (
    OperationRoute,
    RouteClash,
    RouteIndex,
    check_clashes,
    fallback_routes,
    operation_routes,
    share_templates,
)
from .spec import Spec, json_spec, load_spec, load_spec_file
from .surface import AppContext, SurfaceDeclaration, backend_context, declarations, prepare

log = logging.getLogger("evaldock")


def spec_of(decl: SurfaceDeclaration) -> Spec:
    return load_spec_file(decl.spec_file) if decl.spec_file else load_spec(f"{decl.name}.yaml")


def create_engines(settings: Settings, kinds: Sequence[str]) -> dict[str, Any]:
    """The engines that live in the API process (clients of a server, like the judge);
    those that compute are built in the worker processes."""
    return build_engines(settings, placed(kinds, "api"))


async def check_engines(engines: dict[str, Any]) -> None:
    """Let each engine prove it can serve (model loads, served model answers)."""
    for engine in engines.values():
        check = getattr(engine, "check", None)
        if check is not None:
            await check()


def _spec_routes(spec: Spec) -> list[BaseRoute]:
    prefix = spec.prefix

    async def spec_yaml(request: Request) -> Response:
        return Response(spec.text, media_type="application/yaml")

    async def spec_json(request: Request) -> Response:
        return JSONResponse(json_spec(spec, str(request.base_url).rstrip("/")))

    return [
        Route(f"{prefix}/openapi.json", spec_json, methods=["GET"]),
        Route(f"{prefix}/openapi.yaml", spec_yaml, methods=["GET"]),
    ]


def create_app(
    settings: Settings,
    *,
    engines: dict[str, Any] | None = None,
    extra_surfaces: Sequence[SurfaceDeclaration] = (),
    hooks: Sequence[RequestHook] = (),
) -> Starlette:
    """Build the app; engines are created here so a missing library fails at start-up."""
    decls = declarations(settings.surfaces or None, extra_surfaces)
    db = Database(settings.data_dir / "evaldock.sqlite3", readers=settings.db_readers)
    jobs = settings.jobs
    task_limits = TaskLimits(
        wall_seconds=jobs.task_wall_seconds,
        cpu_seconds=jobs.task_cpu_seconds,
        memory_mb=jobs.task_memory_mb,
    )
    # [compute] backend: local worker processes, or a Ray cluster for the job lane.
    pool = pool_class(settings)(
        settings,
        workers=jobs.workers,
        request_workers=jobs.request_workers,
        limits=task_limits,
        request_limits=task_limits.tighter(
            "[jobs] request_task_seconds",
            wall_seconds=jobs.request_task_seconds,
            cpu_seconds=jobs.request_task_seconds,
        ),
        recycle_mb=jobs.worker_recycle_mb,
    )
    runner = JobRunner(
        db,
        concurrency=jobs.concurrency,
        max_attempts=jobs.max_attempts,
        threads=jobs.threads or jobs.concurrency,
        pool=pool,
    )
    ctx = AppContext(settings, db, runner, engines if engines is not None else {}, pool)
    kinds = [k for d in decls for k in d.engines]
    # Real engines that compute load in a worker at start-up, so a missing library or
    # model still stops the server with its fix (mock ones cannot fail).
    worker_checks = placed(kinds, "worker") if engines is None and settings.mode == "real" else []
    if engines is None:
        ctx.engines.update(create_engines(settings, kinds))
    for engine in ctx.engines.values():
        # An engine of the API process with model work of its own (the similarity judge's
        # encoder) hands that work to the worker processes.
        offload_to = getattr(engine, "offload_to", None)
        if offload_to is not None:
            offload_to(pool.run)
    upload_dir = settings.data_dir / "tmp"
    public_url = settings.server.public_url
    plane = ControlPlane(settings, ctx, decls)
    all_hooks = [*plane.hooks(), *hooks]
    runtimes = []
    for decl in decls:
        spec = spec_of(decl)
        provider = decl.provider(ctx, spec, decl)
        if decl.backend is not None:
            bctx = backend_context(decl, settings, db, runner, pool, ctx.engines)
            provider.backend = decl.backend(bctx)
        pipeline = SurfacePipeline(
            spec,
            provider,
            hooks=all_hooks,
            upload_dir=upload_dir,
            public_url=public_url,
            body_cap=plane.body_cap,
        )
        runtimes.append(SurfaceRuntime(decl, spec, provider, pipeline))
    plane.runtimes = runtimes
    control_routes = _control_routes(ctx, plane, upload_dir, public_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await check_engines(ctx.engines)
            for kind in worker_checks:
                await pool.run(check_engine, kind, lane="request")
        except EngineUnavailable as exc:
            log.error("cannot start: %s", exc)
            await pool.close()
            raise
        await db.open()
        await db.migrate("core", "evaldock.server")
        for rt in runtimes:
            await db.migrate(rt.declaration.name, rt.declaration.package)
            backend = rt.provider.backend
            if backend is not None:
                await prepare(backend.ctx)
                await backend.startup()
            await rt.provider.startup()
            for kind, job in rt.declaration.jobs.items():
                if isinstance(job.handler, str):
                    runner.register(kind, getattr(rt.provider, job.handler))
                else:
                    runner.register(kind, functools.partial(job.handler, backend))
        # Worker processes start in the background: start-up does not wait for them.
        pool.start()
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()
            await pool.close()
            for engine in ctx.engines.values():
                close = getattr(engine, "aclose", None)
                if close is not None:
                    await close()
            await db.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        return Response(
            encode({"message": f"No route for {request.method} {request.url.path}"}),
            status_code=404,
            media_type="application/json",
        )

    # The dashboard's routes first: the control plane's fallback answers every other
    # /_evaldock/* path. Guarded by the same key, so off when the control plane is.
    routes: list[BaseRoute] = dashboard_routes(ctx, plane) if plane.enabled else []
    routes.extend(control_routes)
    for rt in runtimes:
        routes.extend(_spec_routes(rt.spec))
    # Every specific template of every surface before any catch-all (sort is stable).
    per_surface = [operation_routes(rt.pipeline) for rt in runtimes]
    ops = [op for surface_routes in per_surface for op in surface_routes]
    try:
        check_clashes(ops)
    except RouteClash as exc:
        raise ConfigError(str(exc)) from None
    ordered: list[OperationRoute] = sorted(ops, key=lambda route: route.operation.catch_all)
    routes.extend(ordered)
    for rt, surface_routes in zip(runtimes, per_surface, strict=True):
        routes.extend(fallback_routes(rt.pipeline, surface_routes))
    # Reads start a few per loop turn, before routing: the turns stay short.
    per_turn = settings.server.reads_per_turn
    app = Starlette(
        # One lookup on the first path segment instead of ~200 regexes in order.
        routes=[RouteIndex(routes)],
        lifespan=lifespan,
        exception_handlers={404: not_found},
        middleware=[Middleware(ReadGate, per_turn=per_turn)],
    )
    app.state.ctx = ctx
    app.state.runtimes = runtimes
    app.state.control = plane
    return app


CONTROL = SurfaceDeclaration(name="evaldock", provider=ControlProvider)


def _control_routes(
    ctx: AppContext, plane: ControlPlane, upload_dir: Path, public_url: str
) -> list[BaseRoute]:
    """The control plane's operations at their own paths (no hooks: faults and the
    journal never apply to ``/_evaldock/*``); only the open ones when it is disabled."""
    spec = load_spec("evaldock.yaml")
    provider = ControlProvider(ctx, spec, CONTROL)
    provider.plane = plane
    pipeline = SurfacePipeline(spec, provider, upload_dir=upload_dir, public_url=public_url)
    ops = [op for op in spec.operations if plane.enabled or not op.secured]
    routes = share_templates([OperationRoute(op.route, op, pipeline) for op in ops])
    return [*_spec_routes(spec), *routes, *fallback_routes(pipeline, routes)]
