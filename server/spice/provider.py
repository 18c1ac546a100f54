"""Handlers of openapi/spice.yaml, one method per operationId, and the eval job."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from evaldock.engines.scorers import BUILTIN

from .. import jsonio, negotiation, validation
from ..auth import Authenticator, AuthFailed, KeyAuthenticator, OpenAuthenticator
from ..errors import ApiError
from ..jobs import Job
from ..spec import Operation
from ..surface import ApiRequest, Provider
from . import spicepod, sql
from .errors import SpiceErrors, bad_request, not_found
from .runs import EvalRunner
from .spicepod import BUILTIN_MODELS, EvalSpec, Spicepod, SpicepodError
from .store import Run, SpiceStore

log = logging.getLogger("evaldock.spice")

RESPONSE_SHAPES = ("runtime", "documented")
OPEN_OPERATIONS = frozenset({"health", "ready"})
RUN_COLUMNS = (
    "id",
    "created_at",
    "completed_at",
    "dataset",
    "model",
    "status",
    "error_message",
    "scorers",
    "metrics",
)
DOCUMENTED_COLUMNS = (
    "primary_key",
    "time_column",
    "dataset",
    "model",
    "status",
    "error_message",
    "scorers",
    "metrics",
)
SPEC_COLUMNS = ("name", "description", "dataset", "scorers")


class SpiceSettings(msgspec.Struct, kw_only=True):
    """The ``[spice]`` table."""

    # The spicepod.yaml to load; empty: the example shipped in the package.
    spicepod: str = ""
    # Folders (besides the spicepod's own) whose files a dataset may name.
    dataset_dirs: list[str] = []
    # "runtime": the v1 runtime's wire answer (a JSON array of one run row, what the
    # `spice eval` CLI decodes); "documented": the object of the runtime's OpenAPI page.
    response_shape: str = "runtime"
    # Seconds POST /v1/evals/{name} waits for its run before answering it as it stands.
    run_timeout: float = 300.0
    # Model requests in flight per run (judge-routed models).
    concurrency: int = 32
    # Cases one dataset may hold (10,000 cases x 5 scorers score in ~1 s).
    max_cases: int = 100_000
    # /v1/sql: seconds a query may run, and rows it may return.
    sql_timeout: float = 5.0
    sql_max_rows: int = 100_000
    # ...and bytes of values it may return (SELECT printf('%.*c', 1e9, 'x') would else
    # build a 1 GB answer): 256 MiB holds 100,000 rows of 2.5 KiB.
    sql_max_bytes: int = 256 * 1024 * 1024


class SpiceAuthenticator:
    """Open (one tenant, "public") unless ``[auth.spice] keys`` is configured, as the
    runtime, whose ``runtime.auth.api-key`` is off by default; then ``X-API-Key``."""

    def __init__(self, keys: list[str] | None) -> None:
        self.inner: Authenticator = (
            KeyAuthenticator("spice", keys, "x-api-key", bearer=False)
            if keys
            else OpenAuthenticator()
        )

    @property
    def open(self) -> bool:
        return self.inner.open

    async def authenticate(self, request: Request) -> str:
        return await self.inner.authenticate(request)


class SpiceProvider(Provider):
    errors: ClassVar[SpiceErrors] = SpiceErrors()
    options: SpiceSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.options.response_shape not in RESPONSE_SHAPES:
            from ..config import ConfigError

            raise ConfigError(
                f"[spice] response_shape must be one of {', '.join(RESPONSE_SHAPES)}, "
                f"not {self.options.response_shape!r}"
            )
        self.pod = Spicepod(folder=Path("."))
        self._auth = SpiceAuthenticator(self._configured_keys())
        self._tenants: dict[int, str] = {}

    # -- auth: open by default --------------------------------------------------------------
    def _configured_keys(self) -> list[str] | None:
        """Keys only when [auth.spice] names some (the core's default is the dev key)."""
        table = self.settings.section("auth", "spice")
        if "keys" not in table or not table.get("enabled", True):
            return None
        _, keys = self.settings.auth_for("spice")
        return keys or None

    def authenticator(self) -> Authenticator:
        return SpiceAuthenticator(self._configured_keys())

    def credentials_hint(self) -> str:
        return "open (no key)" if self._configured_keys() is None else super().credentials_hint()

    async def authorize(self, operation: Operation, request: Request) -> str | None:
        # The spec marks every operation open (schemathesis would otherwise require a 401
        # without a key, which the runtime's default never gives); the key is checked here,
        # before the body is read, and its tenant becomes req.tenant.
        if operation.operation_id in OPEN_OPERATIONS:
            return None
        try:
            return await self._auth.authenticate(request)
        except AuthFailed:
            raise self.errors.unauthorized() from None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def store(self) -> SpiceStore:
        return SpiceStore(self.db, self.runner)

    @property
    def roots(self) -> list[Path]:
        return [self.pod.folder, *(Path(d).expanduser() for d in self.options.dataset_dirs)]

    async def startup(self) -> None:
        path = Path(self.options.spicepod).expanduser() if self.options.spicepod else None
        try:
            self.pod = spicepod.load(path or spicepod.example_path())
        except SpicepodError as exc:
            from ..config import ConfigError

            raise ConfigError(str(exc)) from None
        log.info("spice: spicepod %s with %d evals", path or "(example)", len(self.pod.evals))

    async def reset(self, tenant: str | None) -> None:
        await self.store.reset(tenant)

    async def run_eval_job(self, job: Job) -> None:
        engines = self.ctx.engines
        runner = EvalRunner(
            store=self.store,
            pod=self.pod,
            judge=engines.get("judge"),
            embedder=engines.get("embedder"),
            concurrency=self.options.concurrency,
            max_cases=self.options.max_cases,
        )
        await runner(job)

    # -- open endpoints ---------------------------------------------------------------------
    async def health(self, req: ApiRequest) -> Response:
        return Response("ok", media_type="text/plain; charset=utf-8")

    async def ready(self, req: ApiRequest) -> Response:
        return Response("ready", media_type="text/plain; charset=utf-8")

    # -- eval specs -------------------------------------------------------------------------
    async def _specs(self, tenant: str) -> dict[str, tuple[EvalSpec, bool]]:
        """name -> (spec, added at run time), the tenant's own shadowing the spicepod's."""
        specs = {name: (spec, False) for name, spec in self.pod.evals.items()}
        specs.update({s.name: (s, True) for s in await self.store.specs(tenant)})
        return specs

    async def list_evals(self, req: ApiRequest) -> Response:
        specs = [s.to_json() for s, _ in (await self._specs(req.tenant)).values()]
        rows = [{**s, "scorers": ", ".join(s["scorers"])} for s in specs]
        return negotiation.respond(req.accept, specs, rows=rows, columns=SPEC_COLUMNS)

    async def put_eval(self, req: ApiRequest) -> Response:
        tenant, name, body = req.tenant, req.path["name"], req.body
        if not name.strip() or len(name) > 128:
            raise bad_request("an eval name must have 1 to 128 characters")
        scorers = list(dict.fromkeys(body["scorers"]))
        known = {*BUILTIN, *self.pod.embeddings, *self.pod.models}
        unknown = [s for s in scorers if s not in known]
        if unknown:
            raise bad_request(
                f"scorer '{unknown[0]}' is not defined; use a built-in ({', '.join(BUILTIN)})"
                f" or a component of the spicepod ({', '.join(sorted(known - set(BUILTIN)))})"
            )
        dataset = body["dataset"]
        rows: list[dict[str, Any]] | None = None
        source: str | None = None
        if "data" in body and "from" in body:
            raise bad_request("give the cases in data or a file in from, not both")
        if "data" in body:
            try:
                rows = spicepod.check_rows(body["data"], "data", self.options.max_cases)
            except SpicepodError as exc:
                raise bad_request(str(exc)) from None
        elif "from" in body:
            try:
                path = spicepod.resolve_file(body["from"], self.roots, self.pod.folder)
            except SpicepodError as exc:
                raise bad_request(str(exc)) from None
            source = str(path)
        elif dataset not in self.pod.datasets and await self.store.dataset(tenant, dataset) is None:
            raise not_found("dataset", dataset)
        spec = EvalSpec(name, dataset, tuple(scorers), body.get("description"))
        await self.store.put_spec(tenant, spec, rows, source)
        return jsonio.JSONResponse(spec.to_json())

    async def delete_eval(self, req: ApiRequest) -> Response:
        tenant, name = req.tenant, req.path["name"]
        if await self.store.delete_spec(tenant, name):
            return Response(status_code=204)
        if name in self.pod.evals:
            raise bad_request(
                f"eval '{name}' comes from the spicepod; remove it from "
                f"{self.options.spicepod or 'the spicepod file'} instead"
            )
        raise not_found("eval", name)

    # -- runs -------------------------------------------------------------------------------
    async def run_eval(self, req: ApiRequest) -> Response:
        tenant, name, model = req.tenant, req.path["name"], req.body["model"]
        found = (await self._specs(tenant)).get(name)
        if found is None:
            raise not_found("eval", name)
        spec, _ = found
        if model not in BUILTIN_MODELS and model not in self.pod.models:
            raise not_found("model", model)
        source = await self._source(tenant, spec.dataset)
        run_id = await self.store.create_run(
            tenant,
            {
                "eval": spec.name,
                "dataset": spec.dataset,
                "model": model,
                "scorers": list(spec.scorers),
                "source": source,
            },
            0,
        )
        run = await self._wait(run_id, self.options.run_timeout)
        return self._render(req, run)

    async def _source(self, tenant: str, dataset: str) -> dict[str, Any]:
        """Where the run reads its cases: the tenant's uploaded dataset, a file, or the
        reason the spicepod's dataset cannot be read (the run then fails with it)."""
        stored = await self.store.dataset(tenant, dataset)
        if stored is not None:
            rows, file = stored
            if rows is None and file:
                # Checked again: [spice] dataset_dirs may have changed since the PUT, or
                # the file been swapped for a link out of them.
                try:
                    return {"file": str(spicepod.resolve_file(file, self.roots, self.pod.folder))}
                except SpicepodError as exc:
                    return {"error": str(exc)}
            return {"tenant": tenant}
        component = self.pod.datasets.get(dataset)
        if component is None:
            raise not_found("dataset", dataset)
        try:
            path = spicepod.resolve_file(component.source, self.roots, self.pod.folder)
        except SpicepodError as exc:
            return {"error": str(exc)}
        return {"file": str(path)}

    async def _wait(self, run_id: str, timeout: float) -> Run:
        """The run once done, or as it stands after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        pause = 0.005
        while True:
            run = await self.store.run(run_id)
            assert run is not None
            if run.done or loop.time() >= deadline:
                return run
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, 0.1)  # quick runs answer in ms; long ones poll at 10 Hz

    async def get_run(self, req: ApiRequest) -> Response:
        run = await self.store.run(req.path["id"], req.tenant)
        if run is None or run.eval != req.path["name"]:
            raise ApiError(404, f"run '{req.path['id']}' not found")
        return self._render(req, run)

    def _render(self, req: ApiRequest, run: Run) -> Response:
        if self.options.response_shape == "documented":
            body: Any = {
                "primary_key": run.id,
                "time_column": run.created_at,
                "dataset": run.dataset,
                "model": run.model,
                "status": run.status.lower(),
                "error_message": run.error_message,
                "scorers": run.scorers,
                "metrics": run.metrics,
            }
            columns: tuple[str, ...] = DOCUMENTED_COLUMNS
            row = dict(body)
        else:
            row = {
                "id": run.id,
                "created_at": run.created_at,
                "completed_at": run.completed_at,
                "dataset": run.dataset,
                "model": run.model,
                "status": run.status,
                "error_message": run.error_message,
                "scorers": run.scorers,
                "metrics": run.metrics,
            }
            # arrow_json's writer leaves null fields out.
            body = [{k: v for k, v in row.items() if v is not None}]
            columns = RUN_COLUMNS
        media = negotiation.choose(req.accept)
        if media == negotiation.TEXT:
            row = {**row, "scorers": ", ".join(run.scorers), "metrics": json.dumps(run.metrics)}
        elif media == negotiation.CSV:
            metrics = ", ".join(f"{json.dumps(k)}:{v}" for k, v in run.metrics.items())
            row = {**row, "scorers": json.dumps(run.scorers), "metrics": "{" + metrics + "}"}
        return negotiation.respond(req.accept, body, rows=[row], columns=columns)

    # -- SQL --------------------------------------------------------------------------------
    async def sql(self, req: ApiRequest) -> Response:
        try:
            text = req.raw_body.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("the SQL text must be UTF-8") from None
        if validation.is_json(req.content_type):
            try:
                body = validation.decode_json(req.raw_body)  # depth-bounded
            except validation.RequestInvalid as exc:
                raise self.errors.invalid_request(str(exc)) from None
            if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
                raise bad_request('a JSON body must be {"sql": "<query>"}')
            text = body["sql"]
        if len(text) > sql.MAX_SQL_CHARS:  # the spec's maxLength: the core does not read text
            raise bad_request(
                f"the SQL text has {len(text)} characters; at most {sql.MAX_SQL_CHARS} run here"
            )
        try:
            columns, rows = await asyncio.to_thread(
                sql.run_query,
                self.db.path,
                req.tenant,
                text,
                timeout=self.options.sql_timeout,
                max_rows=self.options.sql_max_rows,
                max_bytes=self.options.sql_max_bytes,
            )
        except sql.QueryRefused as exc:
            raise bad_request(str(exc)) from None
        return negotiation.respond(req.accept, rows, rows=rows, columns=columns)
