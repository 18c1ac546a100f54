"""The Starlette application, built from the OpenAPI specs.

Every operation of every ``openapi/*.yaml`` becomes a route at the vendor's own path and
again under ``/<vendor>/``; its handler is the provider method named by its operationId.
Requests are authenticated, size-checked and validated before the handler runs, and
every failure answers in the vendor's own envelope.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..engines.errors import EngineUnavailable
from . import validation
from .auth import Authenticator, AuthFailed
from .config import Settings
from .db import Database
from .errors import ApiError, VendorErrors
from .jobs import JobRunner
from .jsonio import JSONResponse, encode
from .spec import Operation, Spec, json_spec, load_specs
from .surface import ApiRequest, AppContext, Provider, provider_class

log = logging.getLogger("evaldock")

Endpoint = Callable[[Request], Any]


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _mount_base(request: Request, prefix: str) -> str:
    base = str(request.base_url).rstrip("/")
    return base + prefix if request.url.path.startswith(prefix + "/") else base


class SurfaceRuntime:
    """A provider bound to its spec, authenticator and error envelope."""

    def __init__(self, spec: Spec, provider: Provider) -> None:
        self.spec = spec
        self.provider = provider
        self.errors: VendorErrors = provider.errors
        self.auth: Authenticator = provider.authenticator()

    def render(self, err: ApiError) -> Response:
        return self.errors.render(err)

    def endpoint(self, ops: dict[str, Operation]) -> Endpoint:
        async def dispatch(request: Request) -> Response:
            op = ops.get(request.method)
            if op is None and request.method == "HEAD":
                op = ops.get("GET")
            if op is None:
                return self.render(self.errors.method_not_allowed(request.method, request.url.path))
            try:
                return await self._handle(op, request)
            except ApiError as err:
                return self.render(err)
            except Exception:
                log.exception("unhandled error in %s.%s", self.spec.surface, op.operation_id)
                return self.render(self.errors.internal())

        return dispatch

    async def _handle(self, op: Operation, request: Request) -> Response:
        limit = self.provider.max_body_bytes(op)
        try:
            raw = await _read_body(request, limit)
        except _BodyTooLarge:
            raise self.errors.body_too_large(limit) from None
        tenant = None
        if op.secured:
            try:
                tenant = await self.auth.authenticate(request, raw)
            except AuthFailed:
                raise self.errors.unauthorized() from None
        try:
            params = validation.parameters(
                op,
                request.path_params,
                {k: request.query_params.getlist(k) for k in request.query_params},
                request.headers,
            )
            body = validation.body(op, raw)
        except validation.RequestInvalid as exc:
            raise self.errors.invalid_request(exc.message) from None
        api_request = ApiRequest(
            request=request,
            operation=op,
            path=params["path"],
            query=params["query"],
            headers=params["header"],
            body=body,
            raw_body=raw,
            tenant=tenant,
            base_url=_mount_base(request, self.spec.prefix),
        )
        handler = getattr(self.provider, op.operation_id)
        return await handler(api_request)

    def not_found(self) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            return self.render(self.errors.route_not_found(request.method, request.url.path))

        return endpoint

    def routes(self) -> list[BaseRoute]:
        grouped: dict[str, dict[str, Operation]] = {}
        for op in self.spec.operations:
            grouped.setdefault(op.route, {})[op.method] = op
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        routes: list[BaseRoute] = []
        prefix = self.spec.prefix
        spec = self.spec
        for path, ops in grouped.items():
            endpoint = self.endpoint(ops)
            routes.append(Route(path, endpoint, methods=methods))
            routes.append(Route(prefix + path, endpoint, methods=methods))

        async def spec_yaml(request: Request) -> Response:
            return Response(spec.text, media_type="application/yaml")

        async def spec_json(request: Request) -> Response:
            base = str(request.base_url).rstrip("/")
            return JSONResponse(json_spec(spec, base))

        routes.insert(0, Route(f"{prefix}/openapi.yaml", spec_yaml, methods=["GET"]))
        routes.insert(0, Route(f"{prefix}/openapi.json", spec_json, methods=["GET"]))
        return routes

    def fallback_routes(self) -> list[BaseRoute]:
        """Unknown paths under the prefix or a claimed root path get this vendor's 404."""
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        endpoint = self.not_found()
        out: list[BaseRoute] = [Route(self.spec.prefix + "/{rest:path}", endpoint, methods=methods)]
        for claim in self.spec.claims:
            out.append(Route(claim, endpoint, methods=methods))
            out.append(Route(claim + "/{rest:path}", endpoint, methods=methods))
        return out


def build_runtimes(ctx: AppContext, specs: Sequence[Spec] | None = None) -> list[SurfaceRuntime]:
    return [SurfaceRuntime(s, provider_class(s)(ctx, s)) for s in (specs or load_specs())]


def create_engines(settings: Settings, kinds: Sequence[str]) -> dict[str, Any]:
    from ..engines import registry

    engines = {}
    for kind in dict.fromkeys(kinds):
        name, options = settings.engine_choice(kind)
        # Engines keep their caches beside the state, e.g. <data>/judge-cache.sqlite3.
        options.setdefault("cache_path", str(settings.data_dir / f"{kind}-cache.sqlite3"))
        engines[kind] = registry.create(kind, name, options)
    return engines


async def check_engines(engines: dict[str, Any]) -> None:
    """Let each engine prove it can serve (model loads, served model answers)."""
    for engine in engines.values():
        check = getattr(engine, "check", None)
        if check is not None:
            await check()


def create_app(settings: Settings, *, engines: dict[str, Any] | None = None) -> Starlette:
    """Build the app; engines are created here so a missing library fails at start-up."""
    specs = load_specs()
    needed = [k for s in specs for k in provider_class(s).engines]
    db = Database(settings.data_dir / "evaldock.sqlite3")
    runner = JobRunner(
        db,
        concurrency=int(settings.tree["jobs"]["concurrency"]),
        max_attempts=int(settings.tree["jobs"]["max_attempts"]),
    )
    ctx = AppContext(settings, db, runner, engines if engines is not None else {})
    if engines is None:
        ctx.engines.update(create_engines(settings, needed))
    runtimes = build_runtimes(ctx, specs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await check_engines(ctx.engines)
        except EngineUnavailable as exc:
            log.error("cannot start: %s", exc)
            raise
        await db.open()
        await db.migrate("core", "evaldock.server")
        for rt in runtimes:
            await rt.provider.startup()
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()
            for engine in ctx.engines.values():
                close = getattr(engine, "aclose", None)
                if close is not None:
                    await close()
            await db.close()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "mode": settings.mode})

    async def surfaces(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
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
                for rt in runtimes
            ]
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        return Response(
            encode({"message": f"No route for {request.method} {request.url.path}"}),
            status_code=404,
            media_type="application/json",
        )

    routes: list[BaseRoute] = [
        Route("/_evaldock/health", health, methods=["GET"]),
        Route("/_evaldock/surfaces", surfaces, methods=["GET"]),
    ]
    for rt in runtimes:
        routes.extend(rt.routes())
    for rt in runtimes:
        routes.extend(rt.fallback_routes())
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found})
    app.state.ctx = ctx
    app.state.runtimes = runtimes
    return app
