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
from . import v2
from .auth import BceAuthenticator, key_pairs
from .errors import QianfanErrors, evaluation_not_found, log_id, param_invalid
from .modes import JudgeConfig, judge_config, manual_scales, unit_judge_stats, unit_manual_stats
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
EXPORT_FIELDS = ("prompt", "prediction", "completion", "metrics")
FINISHED = ("Done", "PartlyDone")
# A task waiting for manual scores already has its automatic parts' report and results.
REPORTABLE = (*FINISHED, "DoingWithManualBegin")


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
    # Judge mode: the referee scale runs judge_min_score..prompt.maxScore (default below).
    judge_min_score: int = 1
    judge_max_score: int = 5
    # Characters of the referee prompt's metric and steps, each: the platform refuses
    # longer ones (200, bce-qianfan-sdk #404); evaldock refuses them at eval/create.
    max_prompt_chars: int = 200
    # Characters of the referee prompt's templateContent.
    max_template_chars: int = 4000
    # Manual mode: the top of a dimension's 0..top scale unless the dimension sets
    # maxScore (1, as the vendor's example report shows 0/1 scores).
    manual_max_score: int = 1


def ok(result: Any) -> Response:
    return JSONResponse({"log_id": log_id(), "result": result})


def ok_v2(result: Any) -> Response:
    request_id = log_id()
    return JSONResponse({"requestId": request_id, "log_id": request_id, "result": result})


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

    async def authorize(self, operation: Operation, request: Request) -> str | None:
        if operation.operation_id != "download_export":
            return None
        export_id = str(request.path_params.get("exportId", ""))
        q = request.query_params
        if not self.signer.valid(export_id, q.get("expires"), q.get("signature")):
            raise self.errors.forbidden(
                "the download URL's signature is invalid or expired; ask eval/result/export/"
                "info for a fresh downloadUrl"
            )
        return None

    # -- jobs -------------------------------------------------------------------------------
    def metrics_engine(self) -> TextMetrics:
        if self._metrics is None:
            self._metrics = TextMetrics(self.settings.data_dir / "jieba")
        return self._metrics

    async def run_eval(self, job: Job) -> None:
        await run_task(
            job,
            self.ctx.engine("judge"),
            self.metrics_engine,
            self.options.concurrency,
            self.judge_config,
        )

    def judge_config(self, conf: dict[str, Any]) -> JudgeConfig:
        o = self.options
        return judge_config(
            conf, o.judge_min_score, o.judge_max_score, o.max_prompt_chars, o.max_template_chars
        )

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
        num, eval_id = await self._create(req.tenant, req.body)
        return ok({"evalId": num, "evalIdStr": eval_id})

    async def _create(self, tenant: str, body: dict[str, Any]) -> tuple[int, str]:
        """A task from a v1 eval/create body (v2's CreateEvalTask is translated to it)."""
        conf: dict[str, Any] = dict(body["evalStandardConf"])
        modes = [m.strip() for m in str(conf.get("evalMode", "")).split(",") if m.strip()]
        for mode in modes:
            if mode not in EVAL_MODES:
                raise param_invalid(
                    "evalStandardConf.evalMode", f"{mode} is not one of rule, model, manual"
                )
        if not modes:
            raise param_invalid("evalStandardConf.evalMode", "must name rule, model or manual")
        judge = self.ctx.engine("judge")
        judge_signature = ""
        if "model" in modes:
            referee = self.judge_config(conf)
            judge_signature = f"{judge.signature}|prompt:{referee.version}"
        if "manual" in modes:
            manual_scales(conf, self.options.manual_max_score)
        if body.get("id") is not None:
            raise param_invalid(
                "id", f"{body['id']} is not a pending evaluation (tasks start at creation)"
            )
        dataset_id = _id_text(body["datasetId"])
        dataset = await self.store.dataset(dataset_id, tenant)
        if dataset is None:
            raise param_invalid(
                "datasetId",
                f"{dataset_id} not found; register it with `evaldock qianfan add-dataset` or "
                "POST /wenxinworkshop/evaldock/dataset/create",
            )
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
        return await self.store.create_task(
            tenant,
            name=body["name"],
            description=body.get("description") or "",
            dataset=dataset,
            eval_mode=conf["evalMode"],
            standard_conf=conf,
            units=units,
            metrics_signature=self.metrics_engine().signature,
            judge_signature=judge_signature,
        )

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
        return ok(await self._report(await self._task(req)))

    async def _report(self, task: Task) -> list[dict[str, Any]]:
        if task.state not in REPORTABLE:
            raise param_invalid("evaluation", f"{task.id} has no report: its state is {task.state}")
        modes = task.modes
        referee = self.judge_config(task.standard_conf) if "model" in modes else None
        scales = (
            manual_scales(task.standard_conf, self.options.manual_max_score)
            if "manual" in modes
            else None
        )
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
            if referee is not None:
                effect.update(
                    await unit_judge_stats(
                        self.db, task.id, u["idx"], referee.min_score, referee.max_score
                    )
                )
            if scales is not None:
                manual, impression = await unit_manual_stats(self.db, task.id, u["idx"], scales)
                effect.update(manual)
                effect["subjectiveImpression"] = impression
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
                    "judgeSignature": task.judge_signature,
                }
            )
        return entries

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
        await self._delete(found)
        return ok(True)

    async def _delete(self, found: list[str]) -> None:
        unique = list(dict.fromkeys(found))
        exports = await self.store._export_ids(unique)
        await self.store.delete_tasks(unique)
        for export_id in exports:
            export_path(self.settings.data_dir, export_id).unlink(missing_ok=True)

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
        if task.state not in REPORTABLE:
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
            url = self.signer.sign_export(
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

    # -- manual scores (evaldock extension) -------------------------------------------------
    # POST /wenxinworkshop/evaldock/eval/manual/score
    async def submit_manual_scores(self, req: ApiRequest) -> Response:
        task = await self._task(req)
        if "manual" not in task.modes:
            raise param_invalid(
                "evaluation", f"{task.id} has no manual mode (evalMode {task.eval_mode})"
            )
        if task.state != "DoingWithManualBegin":
            raise param_invalid(
                "evaluation",
                f"{task.id} is {task.state}; manual scores are taken in DoingWithManualBegin",
            )
        scales = manual_scales(task.standard_conf, self.options.manual_max_score)
        units = await self.store.units(task.id)
        inferred = await self.store.inferred_cases(task.id)

        def unit_of(item: dict[str, Any], field: str) -> int:
            ref = item.get("evalUnitId", item.get("modelVersionId"))
            if ref is None:
                if len(units) == 1:
                    return int(units[0]["idx"])
                raise param_invalid(
                    f"{field}.evalUnitId",
                    f"is required: the task evaluates {len(units)} model versions",
                )
            for u in units:
                names = {u["id"], u["model_version_id"], string_id(u["model_version_id"], "amv-")}
                if str(ref) in names or ref == u["model_version_num"]:
                    return int(u["idx"])
            raise param_invalid(f"{field}.evalUnitId", f"{ref} is not a model version of {task.id}")

        scores = []
        for i, item in enumerate(req.body.get("scores") or []):
            field = f"scores[{i}]"
            unit = unit_of(item, field)
            case, dim, score = item["caseIndex"], item["dimension"], item["score"]
            if (unit, case) not in inferred:
                raise param_invalid(
                    f"{field}.caseIndex", f"{case} has no inferred result for that model version"
                )
            if dim not in scales:
                raise param_invalid(
                    f"{field}.dimension", f"{dim} is not one of the task's {list(scales)}"
                )
            if score != -1 and not 0 <= score <= scales[dim]:
                raise param_invalid(
                    f"{field}.score",
                    f"{score} is outside 0..{scales[dim]} for {dim} (or -1: not scored)",
                )
            scores.append((unit, case, dim, score))
        impressions = [
            (unit_of(item, f"subjectiveImpressions[{i}]"), item["subjectiveImpression"])
            for i, item in enumerate(req.body.get("subjectiveImpressions") or [])
        ]
        needed = len(inferred) * len(scales)
        held, finished = await self.store.save_manual(
            task.id, scores, impressions, bool(req.body.get("finish")), needed
        )
        if finished:
            await self.runner.resume(task.id)
        return ok({"evalIdStr": task.id, "scored": held, "needed": needed, "finished": finished})

    # -- v2 ---------------------------------------------------------------------------------
    # POST /v2/eval?Action=...
    async def eval_v2(self, req: ApiRequest) -> Response:
        action = str(req.query.get("Action", ""))
        body: dict[str, Any] = req.body if isinstance(req.body, dict) else {}
        v2.check_body(action, body)
        if action == "CreateEvalTask":
            num, eval_id = await self._create(req.tenant, v2.v1_create_body(body))
            return ok_v2({"taskId": eval_id, "evalId": num})
        if action == "DescribeEvalTasks":
            return ok_v2(await self._v2_list(req.tenant, body))
        task = await self.store.task(req.tenant, body["taskId"])
        if task is None:
            raise param_invalid("taskId", f"{body['taskId']} not found")
        if action == "DescribeEvalTask":
            return ok_v2(v2.task_view(task, await self.store.units(task.id)))
        if action == "DescribeEvalTaskReport":
            return ok_v2({"taskId": task.id, "reportList": await self._report(task)})
        await self._delete([task.id])  # DeleteEvalTask
        return ok_v2(True)

    async def _v2_list(self, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
        max_keys = int(body.get("maxKeys") or v2.DEFAULT_MAX_KEYS)
        marker = str(body.get("marker") or "")
        after = None
        if marker:
            start = await self.store.task(tenant, marker)
            if start is None:
                raise param_invalid("marker", f"{marker} is not a task id")
            after = start.num
        reverse = bool(body.get("pageReverse"))
        tasks = await self.store.tasks_after(
            tenant, after, max_keys + 1, reverse, str(body.get("keyFilter") or "")
        )
        page, truncated = tasks[:max_keys], len(tasks) > max_keys
        views = [v2.task_view(t, await self.store.units(t.id)) for t in page]
        return {
            "taskList": views,
            "pageInfo": {
                "marker": marker,
                "maxKeys": max_keys,
                "isTruncated": truncated,
                "nextMarker": page[-1].id if truncated else "",
            },
        }
