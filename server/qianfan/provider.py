"""Handlers of openapi/qianfan.yaml (the console's v1 evaluation API and evaldock's
dataset extension), one method per operationId: each parses the call, asks the backend
(backend.py: the rules, state and jobs) and renders the answer in Baidu's envelope."""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from ..auth import Authenticator
from ..jsonio import JSONResponse
from ..spec import Operation
from ..surface import ApiRequest, Provider, shown_key
from . import datasets as ds
from . import v2
from .auth import BceAuthenticator, key_pairs
from .backend import QianfanBackend
from .detail import MODEL_SOURCE
from .errors import QianfanErrors, log_id, param_invalid
from .results import EXPORT_FIELDS, case_entry
from .settings import QianfanSettings
from .store import numeric_id, string_id


def ok(result: Any) -> Response:
    return JSONResponse({"log_id": log_id(), "result": result})


def ok_v2(result: Any) -> Response:
    request_id = log_id()
    return JSONResponse({"requestId": request_id, "log_id": request_id, "result": result})


# exportPath: the console names its BOS object under model_eval_result_export/; here the
# zip's name in that form (the file itself comes from downloadUrl).
EXPORT_FOLDER = "model_eval_result_export"


def evaluable_model(version_id: str, backend: str, served: str) -> dict[str, Any]:
    """One eval/model/list entry: a ``[qianfan.models]`` version (its own model), with
    the console's fields (the SDK's mock server) and evaldock's ``backend``: the model
    the judge engine sends its prompts to (``served``; "" when it serves none)."""
    about = (
        f"served by {served} ([qianfan.models])"
        if served
        else f"{backend!r} is not a model the judge engine serves; map it in [judge.models]"
    )
    number = numeric_id(version_id)
    return {
        "modelId": number,
        "modelIdStr": version_id,
        "modelName": backend or version_id,
        "source": MODEL_SOURCE,
        "modelType": 0,  # as the SDK's mock server shows the preset chat models
        "trainType": "",
        "modelVersionList": [
            {
                "modelVersionId": number,
                "modelVersionIdStr": version_id,
                "version": "1",
                "sourceType": MODEL_SOURCE,
                "framework": "",
                "algorithm": "",
                "modelNet": backend,
                "trainType": "",
                "description": about,
                "backend": served,
            }
        ],
    }


def _id_text(value: Any) -> str:
    return str(value).strip()


class QianfanProvider(Provider):
    errors: ClassVar[QianfanErrors] = QianfanErrors()
    options: QianfanSettings
    backend: QianfanBackend

    def authenticator(self) -> Authenticator:
        _, keys = self.settings.auth_for(self.spec.surface)
        o = self.options
        return BceAuthenticator(
            keys, self.spec.prefix, o.clock_skew_seconds, o.max_expiration_seconds
        )

    def credentials_hint(self) -> str:
        _, keys = self.settings.auth_for(self.spec.surface)
        pairs = key_pairs(keys)
        if not pairs:
            return "no keys configured"
        ak = next(iter(pairs))
        return f"access key {shown_key(ak)} with its secret key (bce-auth-v1)"

    async def reset(self, tenant: str | None) -> None:
        await self.backend.reset(tenant)

    async def authorize(self, operation: Operation, request: Request) -> str | None:
        if operation.operation_id != "download_export":
            return None
        export_id = str(request.path_params.get("exportId", ""))
        q = request.query_params
        if not self.backend.signer.valid(export_id, q.get("expires"), q.get("signature")):
            raise self.errors.forbidden(
                "the download URL's signature is invalid or expired; ask eval/result/export/"
                "info for a fresh downloadUrl"
            )
        return None

    # -- evaluation tasks -------------------------------------------------------------------
    # POST /wenxinworkshop/modelrepo/eval/create
    async def create_eval(self, req: ApiRequest) -> Response:
        num, eval_id = await self.backend.create_task(req.tenant, req.body)
        return ok({"evalId": num, "evalIdStr": eval_id})

    # POST /wenxinworkshop/modelrepo/eval/detail
    async def eval_detail(self, req: ApiRequest) -> Response:
        task = await self.backend.task(req.tenant, req.body["id"])
        return ok(await self.backend.detail(task))

    # POST /wenxinworkshop/modelrepo/eval/report
    async def eval_report(self, req: ApiRequest) -> Response:
        task = await self.backend.task(req.tenant, req.body["id"])
        return ok(await self.backend.report(task))

    # POST /wenxinworkshop/modelrepo/eval/cancel
    async def eval_cancel(self, req: ApiRequest) -> Response:
        # {result, errorMessage} as the console documents it and the SDK's mock server
        # answers; a refused stop is result false with the reason (HTTP 200).
        refused = await self.backend.cancel(await self.backend.task(req.tenant, req.body["id"]))
        return ok({"result": not refused, "errorMessage": refused})

    # POST /wenxinworkshop/modelrepo/eval/result/list
    async def eval_result_list(self, req: ApiRequest) -> Response:
        task = await self.backend.task(req.tenant, req.body["id"])
        page_no, page_size = int(req.body.get("pageNo", 1)), int(req.body.get("pageSize", 20))
        rows, total = await self.backend.result_page(task, req.body, page_no, page_size)
        items = []
        for r in rows:
            entry = case_entry(r, set(EXPORT_FIELDS))
            entry.pop("evaluation", None)
            items.append(
                {
                    "id": r["id"],
                    "evaluationId": r["eval_num"],
                    "evaluationIdStr": task.id,
                    "modelId": r["model_num"],
                    "modelIdStr": string_id(r["model_id"], "am-"),
                    "modelVersionId": r["model_version_num"],
                    "modelVersionIdStr": string_id(r["model_version_id"], "amv-"),
                    "caseIndex": r["case_idx"],
                    **entry,
                }
            )
        return ok({"pageNo": page_no, "pageSize": page_size, "totalCount": total, "items": items})

    # POST /wenxinworkshop/modelrepo/eval/delete
    async def eval_delete(self, req: ApiRequest) -> Response:
        await self.backend.delete_refs(req.tenant, req.body["evalIds"])
        return ok(True)

    # POST /wenxinworkshop/modelrepo/eval/model/list
    async def eval_model_list(self, req: ApiRequest) -> Response:
        models = [
            evaluable_model(version_id, backend, self.backend.served_model(backend))
            for version_id, backend in self.backend.model_catalogue().items()
        ]
        return ok(models)

    # POST /wenxinworkshop/modelrepo/eval/result/export
    async def eval_result_export(self, req: ApiRequest) -> Response:
        task = await self.backend.task(req.tenant, req.body["id"])
        export_id = await self.backend.create_export(
            req.tenant,
            task,
            req.body.get("exportType", "local"),
            req.body.get("exportContent"),
            req.body.get("resultIds") if req.body.get("exportOpt") == "part" else None,
            part=req.body.get("exportOpt") == "part",
        )
        return ok({"exportID": numeric_id(export_id), "exportIDStr": export_id})

    # POST /wenxinworkshop/modelrepo/eval/result/export/info
    async def eval_export_info(self, req: ApiRequest) -> Response:
        export_id = _id_text(req.body["exportID"])
        url = req.url_for(f"/wenxinworkshop/evaldock/export/{export_id}/download")
        export = await self.backend.export_state(req.tenant, export_id, url)
        number = numeric_id(export_id)
        return ok(
            {
                # The console's fields (the SDK's mock server); only local exports here.
                "id": number,
                "exportID": number,
                "exportIDStr": export_id,
                "state": export.state,
                "exportType": "local",
                "volumeId": "",
                "exportPath": f"{EXPORT_FOLDER}/{export_id}.zip",
                "downloadUrl": export.download_url,
                # evaldock's: why a Fail failed.
                "errMsg": export.error,
            }
        )

    # GET /wenxinworkshop/evaldock/export/{exportId}/download (signed URL, no bce signature)
    async def download_export(self, req: ApiRequest) -> Response:
        export_id = req.path["exportId"]
        path = self.backend.export_file(export_id)
        if path is None:
            raise self.errors.route_not_found("GET", f"export {export_id} (deleted)")
        return FileResponse(path, media_type="application/zip", filename=f"{export_id}.zip")

    # -- datasets (evaldock extension) ------------------------------------------------------
    # POST /wenxinworkshop/evaldock/dataset/create
    async def create_dataset(self, req: ApiRequest) -> Response:
        # A JSON body {name, cases} or JSON Lines with ?name=; parsed in a worker.
        json_body = req.body is not None
        name = (req.body.get("name") if json_body else req.query.get("name")) or ""
        source: bytes | str = str(req.body_file) if req.body_file is not None else req.raw_body
        try:
            view = await self.backend.register_dataset(
                req.tenant, name, source, "json" if json_body else "jsonl"
            )
        except ds.DatasetInvalid as exc:
            raise param_invalid(exc.field, exc.why) from None
        return ok(view)

    # POST /wenxinworkshop/evaldock/dataset/list
    async def list_datasets(self, req: ApiRequest) -> Response:
        rows = await self.backend.datasets(req.tenant)
        return ok({"items": [ds.dataset_view(r) for r in rows]})

    # -- manual scores (evaldock extension) -------------------------------------------------
    # POST /wenxinworkshop/evaldock/eval/manual/score
    async def submit_manual_scores(self, req: ApiRequest) -> Response:
        task = await self.backend.task(req.tenant, req.body["id"])
        held, needed, finished = await self.backend.save_manual_scores(
            task,
            req.body.get("scores") or [],
            req.body.get("subjectiveImpressions") or [],
            bool(req.body.get("finish")),
        )
        return ok({"evalIdStr": task.id, "scored": held, "needed": needed, "finished": finished})

    # -- v2 ---------------------------------------------------------------------------------
    # POST /v2/eval?Action=...
    async def eval_v2(self, req: ApiRequest) -> Response:
        action = str(req.query.get("Action", ""))
        body: dict[str, Any] = req.body if isinstance(req.body, dict) else {}
        v2.check_body(action, body)
        if action == "CreateEvalTask":
            num, eval_id = await self.backend.create_task(req.tenant, v2.v1_create_body(body))
            return ok_v2({"taskId": eval_id, "evalId": num})
        if action == "DescribeEvalTasks":
            return ok_v2(await self._v2_list(req.tenant, body))
        task = await self.backend.find_task(req.tenant, body["taskId"])
        if task is None:
            raise param_invalid("taskId", f"{body['taskId']} not found")
        if action == "DescribeEvalTask":
            return ok_v2(v2.task_view(task, await self.backend.units(task.id)))
        if action == "DescribeEvalTaskReport":
            return ok_v2({"taskId": task.id, "reportList": await self.backend.report(task)})
        await self.backend.delete([task.id])  # DeleteEvalTask
        return ok_v2(True)

    async def _v2_list(self, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
        max_keys = int(body.get("maxKeys") or v2.DEFAULT_MAX_KEYS)
        marker = str(body.get("marker") or "")
        page, truncated = await self.backend.tasks_page(
            tenant,
            max_keys,
            marker,
            bool(body.get("pageReverse")),
            str(body.get("keyFilter") or ""),
        )
        views = [v2.task_view(t, await self.backend.units(t.id)) for t in page]
        return {
            "taskList": views,
            "pageInfo": {
                "marker": marker,
                "maxKeys": max_keys,
                "isTruncated": truncated,
                "nextMarker": page[-1].id if truncated else "",
            },
        }
