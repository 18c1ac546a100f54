"""Handlers of echo.yaml, one method per operationId, and the echo job."""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

import msgspec
from starlette.responses import Response

from evaldock.server import jsonio
from evaldock.server.db import utcnow
from evaldock.server.errors import ApiError, ErrorCode, VendorErrors
from evaldock.server.jobs import Job, StatusMap
from evaldock.server.surface import ApiRequest, Provider

JOB_KIND = "echo.job"


class EchoSettings(msgspec.Struct, kw_only=True):
    """The ``[echo]`` table."""

    # A number the tests override through the environment (EVALDOCK_ECHO__SOMETHING=5).
    something: int = 3
    greeting: str = "hello"


# Echo's words for the job states, in order.
STATUSES = StatusMap(
    [
        ("queued", "pending"),
        ("running", "working"),
        ("completed", "done"),
        ("failed", "broken"),
        ("cancelled", "stopped"),
    ]
)


class EchoErrors(VendorErrors):
    """Echo's envelope: ``{"error": {"code": …, "message": …}}``."""

    def render(self, err: ApiError) -> Response:
        return jsonio.JSONResponse(
            {"error": {"code": str(err.code), "message": err.message}},
            status_code=err.status,
            headers=err.headers,
        )


def item_not_found(item_id: str) -> ApiError:
    return ApiError(404, f"No item {item_id}", code=ErrorCode.NOT_FOUND)


class EchoProvider(Provider):
    errors: ClassVar[VendorErrors] = EchoErrors()
    options: EchoSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resets: list[str | None] = []  # what reset() was asked to do (tests read it)

    # -- jobs and the control plane -------------------------------------------------------
    async def run_job(self, job: Job) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE echo_items SET echoed = 1 WHERE id = ?", (job.id,))
            await job.progress(1, 1, conn=tx)

    async def reset(self, tenant: str | None) -> None:
        self.resets.append(tenant)
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(f"SELECT id FROM echo_items {where}", args)
            await self.runner.forget(tx, [r["id"] for r in rows])
            await tx.execute(f"DELETE FROM echo_items {where}", args)

    # -- items ----------------------------------------------------------------------------
    async def _item(self, tenant: str, item_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT i.*, j.status AS job_status, j.processed, j.total"
            " FROM echo_items i JOIN job_view j ON j.id = i.id"
            " WHERE i.id = ? AND i.tenant = ?",
            (item_id, tenant),
        )
        if row is None:
            return None
        return {
            "id": row["id"],
            "name": row["name"],
            "body": jsonio.decode(row["body"]),
            "echoed": bool(row["echoed"]),
            "status": STATUSES.word(row["job_status"]),
            "progress": {"processed": row["processed"], "total": row["total"]},
            "created_at": row["created_at"],
        }

    # POST /echo-v1/items
    async def create_item(self, req: ApiRequest) -> Response:
        item_id = "it_" + secrets.token_hex(8)
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO echo_items (id, tenant, name, body, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (item_id, req.tenant, req.body["name"], jsonio.encode(req.body), utcnow()),
            )
            await self.runner.submit(tx, item_id, JOB_KIND, req.tenant, 1)
        return jsonio.JSONResponse(
            {
                "id": item_id,
                "status": STATUSES.word("queued"),
                "url": req.url_for(f"/echo-v1/items/{item_id}"),
            }
        )

    # GET /echo-v1/items/{id}
    async def get_item(self, req: ApiRequest) -> Response:
        item = await self._item(req.tenant, req.path["id"])
        if item is None:
            raise item_not_found(req.path["id"])
        return jsonio.JSONResponse(item)

    # GET /echo-v1/items
    async def list_items(self, req: ApiRequest) -> Response:
        rows = await self.db.fetchall(
            "SELECT id, name FROM echo_items WHERE tenant = ? ORDER BY rowid LIMIT ?",
            (req.tenant, req.query["limit"]),
        )
        out: dict[str, Any] = {"items": [dict(r) for r in rows]}
        if req.query["verbose"]:
            out["limit"] = req.query["limit"]
        return jsonio.JSONResponse(out)

    # POST /echo-v1/items/reindex
    async def reindex_items(self, req: ApiRequest) -> Response:
        return jsonio.JSONResponse({"reindexed": True})

    # -- uploads --------------------------------------------------------------------------
    # PUT /echo-v1/blobs/{name}
    async def put_blob(self, req: ApiRequest) -> Response:
        assert req.body_file is not None  # the spec streams octet-stream bodies
        streamed_to = str(req.body_file)
        kept = None
        if req.query["keep"]:
            folder = self.settings.data_dir / "echo" / "blobs"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / req.path["name"]
            req.body_file.replace(target)
            kept = str(target)
        return jsonio.JSONResponse(
            {
                "name": req.path["name"],
                "size": req.body_size,
                "raw_body_bytes": len(req.raw_body),
                "streamed_to": streamed_to,
                "kept": kept,
            }
        )

    # -- things: a catch-all beside specific siblings -------------------------------------
    # POST /echo-v1/things/{branch}/{path:path}
    async def thing_path(self, req: ApiRequest) -> Response:
        return jsonio.JSONResponse(
            {"op": "thing_path", "branch": req.path["branch"], "path": req.path["path"]}
        )

    # POST /echo-v1/things/{id}/cancel
    async def cancel_thing(self, req: ApiRequest) -> Response:
        return jsonio.JSONResponse({"op": "cancel_thing", "id": req.path["id"]})

    # GET /echo-v1/things/{id}
    async def get_thing(self, req: ApiRequest) -> Response:
        return jsonio.JSONResponse({"op": "get_thing", "id": req.path["id"]})

    # GET /echo-v1/open
    async def open_ping(self, req: ApiRequest) -> Response:
        return jsonio.JSONResponse(
            {
                "greeting": self.options.greeting,
                "something": self.options.something,
                "tenant": req.tenant,
                "base_url": req.base_url,
            }
        )
