"""Handlers of echo.yaml, one method per operationId: parse, ask the backend, render."""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.responses import Response

from evaldock.server import jsonio
from evaldock.server.errors import ApiError, ErrorCode, VendorErrors
from evaldock.server.surface import ApiRequest, Provider

from .backend import STATUSES, EchoBackend, EchoSettings


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
    backend: EchoBackend

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resets: list[str | None] = []  # what reset() was asked to do (tests read it)

    # -- the control plane ----------------------------------------------------------------
    async def reset(self, tenant: str | None) -> None:
        self.resets.append(tenant)
        await self.backend.reset(tenant)

    # -- items ----------------------------------------------------------------------------
    # POST /echo-v1/items
    async def create_item(self, req: ApiRequest) -> Response:
        item_id = await self.backend.create_item(req.tenant, req.body["name"], req.body)
        return jsonio.JSONResponse(
            {
                "id": item_id,
                "status": STATUSES.word("queued"),
                "url": req.url_for(f"/echo-v1/items/{item_id}"),
            }
        )

    # GET /echo-v1/items/{id}
    async def get_item(self, req: ApiRequest) -> Response:
        item = await self.backend.item(req.tenant, req.path["id"])
        if item is None:
            raise item_not_found(req.path["id"])
        return jsonio.JSONResponse(item)

    # GET /echo-v1/items
    async def list_items(self, req: ApiRequest) -> Response:
        out: dict[str, Any] = {"items": await self.backend.items(req.tenant, req.query["limit"])}
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
            folder = self.backend.ctx.data_dir / "blobs"
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
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
