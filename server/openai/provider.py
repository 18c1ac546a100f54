"""Handlers of openapi/openai.yaml, one method per operationId: parse, ask the backend
(:mod:`.backend`), render in OpenAI's shapes (the objects the 3.57.0 client parses)."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from .. import jsonio, negotiation
from ..spec import Operation
from ..surface import ApiRequest, Provider
from . import report
from .backend import OpenAIBackend
from .errors import OpenAIErrors, not_found
from .settings import OpenAISettings
from .store import Page, Run

REPORT_ITEMS = 1000  # items a report lists (the output_items list pages through all)


def listing(data: list[dict[str, Any]], page: Page) -> dict[str, Any]:
    """OpenAI's list envelope; ``has_more`` always present (the client pages until it
    is false, asking ``after=<last id>``)."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }


def file_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "file",
        "id": row["id"],
        "purpose": row["purpose"],
        "filename": row["filename"],
        "bytes": row["bytes"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "status": "processed",
        "status_details": None,
    }


def eval_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "eval",
        "id": row["id"],
        "name": row["name"],
        "data_source_config": row["config"],
        "testing_criteria": row["criteria"],
        "created_at": row["created_at"],
        "metadata": row["metadata"],
    }


def item_json(row: dict[str, Any], eval_id: str) -> dict[str, Any]:
    return {
        "object": "eval.run.output_item",
        "id": row["id"],
        "eval_id": eval_id,
        "run_id": row["run_id"],
        "created_at": row["created_at"],
        "status": row["status"],
        "datasource_item_id": row["idx"],
        "datasource_item": row["item"],
        "results": row["results"],
        "sample": row["sample"],
    }


class OpenAIProvider(Provider):
    errors: ClassVar[OpenAIErrors] = OpenAIErrors()
    options: OpenAISettings
    backend: OpenAIBackend

    async def authorize(self, operation: Operation, request: Request) -> str | None:
        """The signed report link (``report_url``) is its own credential: checked from
        the URL alone, before anything else."""
        if operation.operation_id != "shared_run_report":
            return None
        run_id = str(request.path_params.get("run_id", ""))
        refused = report.refusal(self.backend.signer, run_id, request.query_params)
        if refused is not None:
            raise refused
        return None

    def max_body_bytes(self, operation: Operation) -> int:
        if operation.operation_id == "create_file":
            return self.options.max_upload_bytes
        return super().max_body_bytes(operation)

    def run_json(self, req: ApiRequest, run: Run) -> dict[str, Any]:
        """A run as the service sent it: nulls where it did (a queued run's usage and
        per-criterion results; ``error`` unless the run failed)."""
        finished = run.status == "completed"
        counts = run.counts or {"total": 0, "passed": 0, "failed": 0, "errored": 0}
        error = None
        if run.status == "failed":
            error = {"code": "run_failed", "message": run.error or "the run failed"}
        return {
            "object": "eval.run",
            "id": run.id,
            "eval_id": run.eval_id,
            "name": run.name,
            "model": run.model,
            "status": run.status,
            "created_at": run.created_at,
            "metadata": run.metadata,
            "data_source": run.data_source,
            "error": error,
            "result_counts": counts,
            "per_testing_criteria_results": run.per_criteria if finished else None,
            "per_model_usage": run.usage if finished else None,
            # A signed link a browser opens without the key (server/openai/report.py).
            "report_url": report.sign(
                self.backend.signer, req.url_for(report.PATH.format(run_id=run.id)), run.id
            ),
            # evaldock: what computed each criterion's scores, sacreBLEU-style.
            "signature": run.signature,
        }

    @staticmethod
    def _order(req: ApiRequest) -> tuple[str | None, int, bool]:
        q = req.query
        return q.get("after") or None, q["limit"], q["order"] == "desc"

    # -- files ----------------------------------------------------------------------------
    async def create_file(self, req: ApiRequest) -> Response:
        row = await self.backend.create_file(
            req.tenant, req.body_file, req.request.headers.get("content-type", "")
        )
        return jsonio.JSONResponse(file_json(row))

    async def list_files(self, req: ApiRequest) -> Response:
        after, limit, desc = self._order(req)
        page = await self.backend.files(req.tenant, after, limit, desc, req.query.get("purpose"))
        return jsonio.JSONResponse(listing([file_json(r) for r in page.rows], page))

    async def retrieve_file(self, req: ApiRequest) -> Response:
        return jsonio.JSONResponse(
            file_json(await self.backend.file(req.tenant, req.path["file_id"]))
        )

    async def delete_file(self, req: ApiRequest) -> Response:
        await self.backend.delete_file(req.tenant, req.path["file_id"])
        return jsonio.JSONResponse({"object": "file", "id": req.path["file_id"], "deleted": True})

    async def file_content(self, req: ApiRequest) -> Response:
        row = await self.backend.file(req.tenant, req.path["file_id"])
        return FileResponse(row["path"], media_type="application/octet-stream")

    # -- evals ----------------------------------------------------------------------------
    async def create_eval(self, req: ApiRequest) -> Response:
        body = req.body
        row = await self.backend.create_eval(
            req.tenant,
            body.get("name") or "",
            body.get("metadata"),
            body["data_source_config"],
            body["testing_criteria"],
        )
        return jsonio.JSONResponse(eval_json(row))

    async def list_evals(self, req: ApiRequest) -> Response:
        after, limit, desc = self._order(req)
        page = await self.backend.evals(req.tenant, after, limit, desc, req.query["order_by"])
        return jsonio.JSONResponse(listing([eval_json(r) for r in page.rows], page))

    async def retrieve_eval(self, req: ApiRequest) -> Response:
        return jsonio.JSONResponse(
            eval_json(await self.backend.eval(req.tenant, req.path["eval_id"]))
        )

    async def update_eval(self, req: ApiRequest) -> Response:
        body = req.body if isinstance(req.body, dict) else {}
        changes = {k: body[k] for k in ("name", "metadata") if k in body}
        row = await self.backend.update_eval(req.tenant, req.path["eval_id"], changes)
        return jsonio.JSONResponse(eval_json(row))

    async def delete_eval(self, req: ApiRequest) -> Response:
        await self.backend.delete_eval(req.tenant, req.path["eval_id"])
        return jsonio.JSONResponse(
            {"object": "eval.deleted", "deleted": True, "eval_id": req.path["eval_id"]}
        )

    # -- runs -----------------------------------------------------------------------------
    async def create_run(self, req: ApiRequest) -> Response:
        body = req.body
        run = await self.backend.create_run(
            req.tenant,
            req.path["eval_id"],
            body.get("name"),
            body.get("metadata"),
            body["data_source"],
        )
        return jsonio.JSONResponse(self.run_json(req, run))

    async def list_runs(self, req: ApiRequest) -> Response:
        after, limit, desc = self._order(req)
        page = await self.backend.runs(
            req.tenant, req.path["eval_id"], after, limit, desc, req.query.get("status") or ""
        )
        return jsonio.JSONResponse(listing([self.run_json(req, r) for r in page.rows], page))

    async def retrieve_run(self, req: ApiRequest) -> Response:
        run = await self.backend.run(req.tenant, req.path["eval_id"], req.path["run_id"])
        return jsonio.JSONResponse(self.run_json(req, run))

    async def cancel_run(self, req: ApiRequest) -> Response:
        run = await self.backend.cancel_run(req.tenant, req.path["eval_id"], req.path["run_id"])
        return jsonio.JSONResponse(self.run_json(req, run))

    async def cancel_run_legacy(self, req: ApiRequest) -> Response:
        """``POST /evals/{eval_id}/runs/{run_id}``: how clients up to 3.22.1 cancel."""
        return await self.cancel_run(req)

    async def delete_run(self, req: ApiRequest) -> Response:
        await self.backend.delete_run(req.tenant, req.path["eval_id"], req.path["run_id"])
        return jsonio.JSONResponse(
            {"object": "eval.run.deleted", "deleted": True, "run_id": req.path["run_id"]}
        )

    async def _report(
        self, req: ApiRequest, tenant: str, run: Run
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
        """(the report, one row per output item, the rows' columns)."""
        eval_id, run_id = run.eval_id, run.id
        page = await self.backend.items(tenant, eval_id, run_id, None, REPORT_ITEMS, False, "")
        found = await self.backend.eval(tenant, eval_id)
        names = {c["id"]: c["name"] for c in found["criteria"]}
        criteria = [
            {
                **r,
                "name": names.get(r["testing_criteria"], ""),
                "signature": (run.signature or {}).get(r["testing_criteria"]),
            }
            for r in run.per_criteria or []
        ]
        rows = []
        for item in page.rows:
            row: dict[str, Any] = {"datasource_item_id": item["idx"], "status": item["status"]}
            row.update((names.get(r["name"], r["name"]), r["score"]) for r in item["results"])
            rows.append(row)
        body = {
            "run": self.run_json(req, run),
            "criteria": criteria,
            "items": rows,
            "items_truncated": page.has_more,
        }
        return body, rows, ["datasource_item_id", "status", *names.values()]

    async def run_report(self, req: ApiRequest) -> Response:
        """The report behind the API key, as JSON, CSV or text by ``Accept``."""
        run = await self.backend.run(req.tenant, req.path["eval_id"], req.path["run_id"])
        body, rows, columns = await self._report(req, req.tenant, run)
        return negotiation.respond(req.accept, body, rows=rows, columns=columns)

    async def shared_run_report(self, req: ApiRequest) -> Response:
        """``report_url``: the signature was checked in :meth:`authorize`."""
        run_id = req.path["run_id"]
        run = await self.backend.store.run(run_id)
        if run is None:
            raise not_found("EvalRun", run_id, "run_id")
        body, rows, columns = await self._report(req, run.tenant, run)
        q = req.request.query_params
        signed = {"expires": q.get("expires", ""), "signature": q.get("signature", "")}
        here = req.url_for(report.PATH.format(run_id=run_id))
        links = {
            name: f"{here}?{urlencode({**signed, 'format': fmt})}"
            for name, fmt in (("JSON", "json"), ("CSV", "csv"), ("Text", "text"))
        }
        return report.render(req.query.get("format") or "html", body, rows, columns, links)

    # -- output items ---------------------------------------------------------------------
    async def list_output_items(self, req: ApiRequest) -> Response:
        after, limit, desc = self._order(req)
        eval_id = req.path["eval_id"]
        page = await self.backend.items(
            req.tenant,
            eval_id,
            req.path["run_id"],
            after,
            limit,
            desc,
            req.query.get("status") or "",
        )
        return jsonio.JSONResponse(listing([item_json(r, eval_id) for r in page.rows], page))

    async def retrieve_output_item(self, req: ApiRequest) -> Response:
        eval_id = req.path["eval_id"]
        row = await self.backend.item(
            req.tenant, eval_id, req.path["run_id"], req.path["output_item_id"]
        )
        return jsonio.JSONResponse(item_json(row, eval_id))

    # -- graders API ----------------------------------------------------------------------
    async def run_grader(self, req: ApiRequest) -> Response:
        body = req.body
        result = await self.backend.run_grader(
            body["grader"], body["model_sample"], body.get("item")
        )
        return jsonio.JSONResponse(result)

    async def validate_grader(self, req: ApiRequest) -> Response:
        self.backend.check_grader(req.body["grader"])
        return jsonio.JSONResponse({"grader": req.body["grader"]})
