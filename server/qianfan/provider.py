"""Handlers of openapi/qianfan.yaml (the console's v1 evaluation API and evaldock's
dataset extension), one method per operationId, and the surface's two jobs."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from evaldock.engines.text_metrics import TextMetrics

from ..auth import Authenticator
from ..jobs import Job
from ..jsonio import JSONResponse
from ..masking import mask_key
from ..spec import Operation
from ..surface import ApiRequest, Provider
from . import datasets as ds
from .auth import BceAuthenticator, key_pairs
from .errors import QianfanErrors, evaluation_not_found, log_id, param_invalid
from .store import (
    EXPORT_STATUSES,
    METRIC_COLUMNS,
    QianfanStore,
    Task,
    Unit,
    numeric_id,
    string_id,
)
from .tasks import case_entry, export_path, run_export, run_task
from .urls import UrlSigner, load_secret

MOCK_MODEL = "amv-evaldock-mock"
EVAL_MODES = ("rule", "model", "manual")
AVAILABLE_MODES = ("rule",)  # judge and manual modes: the second Qianfan issue
EXPORT_FIELDS = ("prompt", "prediction", "completion", "metrics")
FINISHED = ("Done", "PartlyDone")


class QianfanSettings(msgspec.Struct, kw_only=True):
    """The ``[qianfan]`` table."""

    # Characters per dataset field (prompt, reference, prediction).
    max_field_chars: int = 4000
    # Cases per dataset.
    max_cases: int = 100_000
    # Seconds a signature's timestamp may lie outside [signed, signed + expiration].
    clock_skew_seconds: int = 300
    # Signed download URLs of exports live this long (seconds).
    url_expiry_seconds: int = 3600
    # Inference calls in flight per task.
    concurrency: int = 16
    # Model version (or model) id -> generation backend: a model name the judge engine
    # serves ([judge.models]); "" is the judge's own model (the mock in mock mode).
    models: dict[str, str] = msgspec.field(default_factory=dict)


def ok(result: Any) -> Response:
    return JSONResponse({"log_id": log_id(), "result": result})


def _id_text(value: Any) -> str:
    return str(value).strip()


class QianfanProvider(Provider):
    errors: ClassVar[QianfanErrors] = QianfanErrors()
    options: QianfanSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signer = UrlSigner(b"", self.options.url_expiry_seconds)
        self._metrics: TextMetrics | None = None

    @property
    def store(self) -> QianfanStore:
        return QianfanStore(self.db, self.runner)

    def authenticator(self) -> Authenticator:
        _, keys = self.settings.auth_for(self.spec.surface)
        return BceAuthenticator(keys, self.spec.prefix, self.options.clock_skew_seconds)

    def credentials_hint(self) -> str:
        _, keys = self.settings.auth_for(self.spec.surface)
        pairs = key_pairs(keys)
        if not pairs:
            return "no keys configured"
        ak = next(iter(pairs))
        return f"access key {mask_key(ak)!r} with its secret key (bce-auth-v1)"

    async def startup(self) -> None:
        self.signer = UrlSigner(await load_secret(self.db), self.options.url_expiry_seconds)

    async def reset(self, tenant: str | None) -> None:
        for export_id in await self.store.reset(tenant):
            export_path(self.settings.data_dir, export_id).unlink(missing_ok=True)

    async def authorize(self, operation: Operation, request: Request) -> None:
        if operation.operation_id != "download_export":
            return
        export_id = str(request.path_params.get("exportId", ""))
        q = request.query_params
        if not self.signer.valid(export_id, q.get("expires"), q.get("signature")):
            raise self.errors.forbidden(
                "the download URL's signature is invalid or expired; ask eval/result/export/"
                "info for a fresh downloadUrl"
            )

    # -- jobs -------------------------------------------------------------------------------
    def metrics_engine(self) -> TextMetrics:
        if self._metrics is None:
            self._metrics = TextMetrics(self.settings.data_dir / "jieba")
        return self._metrics

    async def run_eval(self, job: Job) -> None:
        await run_task(job, self.ctx.engine("judge"), self.metrics_engine, self.options.concurrency)

    async def run_export(self, job: Job) -> None:
        await run_export(job, self.settings.data_dir)

    # -- helpers ----------------------------------------------------------------------------
    async def _task(self, req: ApiRequest, field: str = "id") -> Task:
        ref = req.body[field]
        task = await self.store.task(req.tenant, ref)
        if task is None:
            raise evaluation_not_found(ref)
        return task

    def _backend(self, model_id: str, version_id: str) -> str | None:
        models = self.options.models
        backend = models.get(version_id, models.get(model_id))
        return backend or None

    def _model_catalogue(self) -> dict[str, str]:
        models = dict(self.options.models)
        if not models and self.settings.mode == "mock":
            models[MOCK_MODEL] = ""
        return models

    # -- evaluation tasks -------------------------------------------------------------------
    # POST /wenxinworkshop/modelrepo/eval/create
    async def create_eval(self, req: ApiRequest) -> Response:
        body = req.body
        conf: dict[str, Any] = dict(body["evalStandardConf"])
        modes = [m.strip() for m in str(conf.get("evalMode", "")).split(",") if m.strip()]
        for mode in modes:
            if mode not in EVAL_MODES:
                raise param_invalid(
                    "evalStandardConf.evalMode", f"{mode} is not one of rule, model, manual"
                )
            if mode not in AVAILABLE_MODES:
                raise param_invalid(
                    "evalStandardConf.evalMode",
                    f"{mode} is not available on this server yet (rule is)",
                )
        if not modes:
            raise param_invalid("evalStandardConf.evalMode", "must name rule, model or manual")
        if body.get("id") is not None:
            raise param_invalid(
                "id", f"{body['id']} is not a pending evaluation (tasks start at creation)"
            )
        dataset_id = _id_text(body["datasetId"])
        dataset = await self.store.dataset(dataset_id, req.tenant)
        if dataset is None:
            raise param_invalid(
                "datasetId",
                f"{dataset_id} not found; register it with `evaldock qianfan add-dataset` or "
                "POST /wenxinworkshop/evaldock/dataset/create",
            )
        judge = self.ctx.engine("judge")
        known = set(judge.known_models())
        units = []
        for i, info in enumerate(body["versionEvalInfo"]):
            model_id = _id_text(info["modelId"])
            version_id = _id_text(info["modelVersionId"])
            backend = self._backend(model_id, version_id)
            if backend is not None and backend not in known and not dataset["with_predictions"]:
                raise param_invalid(
                    f"versionEvalInfo[{i}].modelVersionId",
                    f"{version_id} maps to {backend!r}, which the judge engine does not serve; "
                    f'map it in [judge.models] "{backend}" = "<served model>"',
                )
            units.append(
                Unit(
                    model_id=model_id,
                    model_version_id=version_id,
                    model_name=backend or string_id(model_id, "am-"),
                    model_version=string_id(version_id, "amv-"),
                    backend=backend,
                )
            )
        conf["evalMode"] = ",".join(modes)
        num, eval_id = await self.store.create_task(
            req.tenant,
            name=body["name"],
            description=body.get("description") or "",
            dataset=dataset,
            eval_mode=conf["evalMode"],
            standard_conf=conf,
            units=units,
            metrics_signature=self.metrics_engine().signature,
        )
        return ok({"evalId": num, "evalIdStr": eval_id})

    # POST /wenxinworkshop/modelrepo/eval/detail
    async def eval_detail(self, req: ApiRequest) -> Response:
        task = await self._task(req)
        units = await self.store.units(task.id)
        result: dict[str, Any] = {
            "id": task.num,
            "evalId": task.num,
            "evalIdStr": task.id,
            "name": task.name,
            "description": task.description,
            "state": task.state,
            "datasetId": task.dataset_id,
            "datasetName": task.dataset_name,
            "evalStandardConf": {**task.standard_conf, "resultDatasetIdStr": ""},
            "versionEvalInfo": [
                {
                    "modelId": u["model_num"],
                    "modelIdStr": string_id(u["model_id"], "am-"),
                    "modelVersionId": u["model_version_num"],
                    "modelVersionIdStr": string_id(u["model_version_id"], "amv-"),
                    "modelName": u["model_name"],
                    "modelVersion": u["model_version"],
                    "evalUnitId": u["id"],
                }
                for u in units
            ],
            "createTime": task.created_at,
            "startTime": task.started_at or "",
            "finishTime": task.finished_at or "",
            "progress": {"processed": task.processed, "total": task.total},
            "failedCases": task.failed_cases,
            "errMsg": task.job_error or "",
        }
        return ok(result)

    # POST /wenxinworkshop/modelrepo/eval/report
    async def eval_report(self, req: ApiRequest) -> Response:
        task = await self._task(req)
        if task.state not in FINISHED:
            raise param_invalid("evaluation", f"{task.id} has no report: its state is {task.state}")
        dataset = await self.store.dataset(task.dataset_id, task.tenant)
        with_predictions = bool(dataset and dataset["with_predictions"])
        entries = []
        for u in await self.store.units(task.id):
            rules = msgspec.json.decode(u["metrics"]) if u["metrics"] else {}
            effect: dict[str, Any] = {"id": u["report_id"]}
            effect.update({k: float(rules.get(k, 0.0)) for k in METRIC_COLUMNS})
            effect.update(
                {
                    "avgJudgeScore": 0,
                    "stdJudgeScore": 0,
                    "medianJudgeScore": 0,
                    "scoreDistribution": None,
                    "manualAvgScore": 0,
                    "goodCaseProportion": 0,
                    "subjectiveImpression": "",
                    "manualScoreDistribution": None,
                }
            )
            entries.append(
                {
                    "modelName": u["model_name"],
                    "modelVersion": u["model_version"],
                    "modelVersionSource": "evaldock",
                    "evalMode": task.eval_mode,
                    "evaluationName": task.name,
                    "id": u["report_id"],
                    "modelVersionId": u["model_version_num"],
                    "modelId": u["model_num"],
                    "userId": 1,
                    "evaluationId": task.num,
                    "modelForm": "inferDataset" if with_predictions else "model",
                    "modelIdStr": string_id(u["model_id"], "am-"),
                    "modelVersionIdStr": string_id(u["model_version_id"], "amv-"),
                    "evaluationIdStr": task.id,
                    "evalUnitId": u["id"],
                    "inferDatasetId": task.dataset_id,
                    "inferDatasetName": task.dataset_name,
                    "effectMetric": effect,
                    "performanceMetric": {},
                    "metricsSignature": task.metrics_signature,
                }
            )
        return ok(entries)

    # POST /wenxinworkshop/modelrepo/eval/cancel
    async def eval_cancel(self, req: ApiRequest) -> Response:
        task = await self._task(req)
        if task.state not in ("Pending", "Doing", "DoingWithManualBegin"):
            raise param_invalid(
                "evaluation", f"{task.id} is {task.state}; only a running task can be stopped"
            )
        await self.store.request_stop(task.id)
        await self.runner.cancel(task.id)
        return ok(True)

    # POST /wenxinworkshop/modelrepo/eval/result/list
    async def eval_result_list(self, req: ApiRequest) -> Response:
        task = await self._task(req)
        page_no, page_size = int(req.body.get("pageNo", 1)), int(req.body.get("pageSize", 20))
        rows, total = await self.store.result_page(task.id, req.body, page_no, page_size)
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
        found = []
        for i, ref in enumerate(req.body["evalIds"]):
            task = await self.store.task(req.tenant, ref)
            if task is None:
                raise param_invalid(f"evalIds[{i}]", f"evaluation {ref} not found")
            found.append(task.id)
        unique = list(dict.fromkeys(found))
        exports = await self.store._export_ids(unique)
        await self.store.delete_tasks(unique)
        for export_id in exports:
            export_path(self.settings.data_dir, export_id).unlink(missing_ok=True)
        return ok(True)

    # POST /wenxinworkshop/modelrepo/eval/model/list
    async def eval_model_list(self, req: ApiRequest) -> Response:
        models = []
        for version_id, backend in self._model_catalogue().items():
            models.append(
                {
                    "modelId": numeric_id(version_id),
                    "modelIdStr": version_id,
                    "modelName": backend or version_id,
                    "source": "evaldock",
                    "modelVersionList": [
                        {
                            "modelVersionId": numeric_id(version_id),
                            "modelVersionIdStr": version_id,
                            "version": "1",
                            "backend": backend or "judge default",
                        }
                    ],
                }
            )
        return ok(models)

    # POST /wenxinworkshop/modelrepo/eval/result/export
    async def eval_result_export(self, req: ApiRequest) -> Response:
        task = await self._task(req)
        if req.body.get("exportType", "local") != "local":
            raise param_invalid(
                "exportType", "storage (a private BOS bucket) is not available here; use local"
            )
        if task.state not in FINISHED:
            raise param_invalid(
                "evaluation", f"{task.id} has no results: its state is {task.state}"
            )
        fields = list(dict.fromkeys(req.body.get("exportContent") or EXPORT_FIELDS))
        result_ids = None
        if req.body.get("exportOpt") == "part":
            result_ids = req.body.get("resultIds")
            if not result_ids:
                raise param_invalid("resultIds", "is required when exportOpt is part")
        content = {"fields": fields, "resultIds": result_ids}
        export_id = await self.store.create_export(req.tenant, task.id, content)
        return ok({"exportID": numeric_id(export_id), "exportIDStr": export_id})

    # POST /wenxinworkshop/modelrepo/eval/result/export/info
    async def eval_export_info(self, req: ApiRequest) -> Response:
        export_id = _id_text(req.body["exportID"])
        export = await self.store.export(export_id, req.tenant)
        if export is None:
            raise param_invalid("exportID", f"{export_id} not found")
        state = EXPORT_STATUSES.word(export["job_status"])
        url = ""
        if state == "Done":
            url = self.signer.sign(
                req.url_for(f"/wenxinworkshop/evaldock/export/{export_id}/download"), export_id
            )
        return ok(
            {
                "exportIDStr": export_id,
                "state": state,
                "downloadUrl": url,
                "errMsg": export["job_error"] or "",
            }
        )

    # GET /wenxinworkshop/evaldock/export/{exportId}/download (signed URL, no bce signature)
    async def download_export(self, req: ApiRequest) -> Response:
        export_id = req.path["exportId"]
        path = export_path(self.settings.data_dir, export_id)
        if not path.is_file():
            raise self.errors.route_not_found("GET", f"export {export_id} (deleted)")
        return FileResponse(path, media_type="application/zip", filename=f"{export_id}.zip")

    # -- datasets (evaldock extension) ------------------------------------------------------
    # POST /wenxinworkshop/evaldock/dataset/create
    async def create_dataset(self, req: ApiRequest) -> Response:
        opts = self.options
        try:
            if req.body is not None:
                name = req.body.get("name") or ""
                rows = req.body["cases"]
                cases = await asyncio.to_thread(
                    ds.parse_cases, rows, opts.max_field_chars, opts.max_cases
                )
            else:
                name = req.query.get("name") or ""
                cases = await asyncio.to_thread(
                    ds.parse_jsonl, req.raw_body, opts.max_field_chars, opts.max_cases
                )
        except ds.DatasetInvalid as exc:
            raise param_invalid(exc.field, exc.why) from None
        if not name:
            raise param_invalid("name", "is required")
        async with self.db.transaction() as tx:
            view = await ds.insert_dataset(tx, req.tenant, name, cases)
        return ok(view)

    # POST /wenxinworkshop/evaldock/dataset/list
    async def list_datasets(self, req: ApiRequest) -> Response:
        rows = await self.store.datasets(req.tenant)
        return ok({"items": [ds.dataset_view(r) for r in rows]})
