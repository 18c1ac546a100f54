"""Handlers of openapi/spice.yaml, one method per operationId: parse, ask the backend
(:mod:`.backend`), render in the runtime's shapes."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from .. import jsonio, negotiation, validation
from ..auth import Authenticator, AuthFailed, KeyAuthenticator, OpenAuthenticator
from ..errors import ApiError
from ..spec import Operation
from ..surface import ApiRequest, Provider
from . import sql
from .backend import SpiceBackend
from .errors import SpiceErrors, bad_request
from .settings import SpiceSettings
from .store import Run

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
    backend: SpiceBackend

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.options.response_shape not in RESPONSE_SHAPES:
            from ..config import ConfigError

            raise ConfigError(
                f"[spice] response_shape must be one of {', '.join(RESPONSE_SHAPES)}, "
                f"not {self.options.response_shape!r}"
            )
        self._auth = SpiceAuthenticator(self._configured_keys())

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

    async def reset(self, tenant: str | None) -> None:
        await self.backend.reset(tenant)

    # -- open endpoints ---------------------------------------------------------------------
    async def health(self, req: ApiRequest) -> Response:
        return Response("ok", media_type="text/plain; charset=utf-8")

    async def ready(self, req: ApiRequest) -> Response:
        return Response("ready", media_type="text/plain; charset=utf-8")

    # -- eval specs -------------------------------------------------------------------------
    async def list_evals(self, req: ApiRequest) -> Response:
        specs = [s.to_json() for s in (await self.backend.specs(req.tenant)).values()]
        rows = [{**s, "scorers": ", ".join(s["scorers"])} for s in specs]
        return negotiation.respond(req.accept, specs, rows=rows, columns=SPEC_COLUMNS)

    async def put_eval(self, req: ApiRequest) -> Response:
        body = req.body
        spec = await self.backend.put_spec(
            req.tenant,
            req.path["name"],
            body["dataset"],
            body["scorers"],
            description=body.get("description"),
            data=body.get("data"),
            source=body.get("from"),
        )
        return jsonio.JSONResponse(spec.to_json())

    async def delete_eval(self, req: ApiRequest) -> Response:
        await self.backend.delete_spec(req.tenant, req.path["name"])
        return Response(status_code=204)

    # -- runs -------------------------------------------------------------------------------
    async def run_eval(self, req: ApiRequest) -> Response:
        run_id = await self.backend.start_run(req.tenant, req.path["name"], req.body["model"])
        run = await self.backend.wait_run(run_id, self.options.run_timeout)
        return self._render(req, run)

    async def get_run(self, req: ApiRequest) -> Response:
        run = await self.backend.run(req.tenant, req.path["name"], req.path["id"])
        if run is None:
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
        columns, rows = await self.backend.query(req.tenant, text)
        return negotiation.respond(req.accept, rows, rows=rows, columns=columns)
