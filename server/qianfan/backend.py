"""Qianfan's backend: the rules and state of evaluation tasks, datasets, reports, exports
and manual scores, and the surface's two jobs (server/backend.py has the shape).

The provider parses a console call and renders the answer in Baidu's envelope; what it
decides lives here, its SQL in store.py, and the work that grows with the input in
jobs.py, run in worker processes. An eval task's job (:meth:`QianfanBackend.run_eval`)
runs in steps, each resumable after a crash from what it stored:

1. inference: every (model version, case) without a result row gets one -- the
   dataset's ``prediction`` when it has one, else the model version's generation
   backend (``[qianfan.models]``; the judge engine's ``generate``, HTTP, here in the API
   process). A failed call is recorded as that case's error; results commit every
   ``FLUSH_EVERY`` rows with the progress, so a crash costs at most that many calls.
2. rule metrics (``evalMode`` has ``rule``): :func:`jobs.rule_metrics` in a worker,
   ``RULE_CHUNK`` cases a task, each chunk's per-case values committed as it comes back
   and a model version's means once its last chunk is in (a version whose means are
   stored is not computed again). Cases whose inference failed are left out; the task
   then reads ``PartlyDone``. A task over its limits fails the job with the reason.
3. judge scores (``model``): every inferred case without a score is scored by the judge
   engine (HTTP), committed every ``FLUSH_EVERY`` cases with the progress.
4. manual (``manual``): the job waits (DoingWithManualBegin) until people finish.

An export's job (:meth:`QianfanBackend.run_export`) builds its zip in a worker
(:func:`jobs.build_export`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.judge.base import UnknownModel
from evaldock.engines.protocols import Judge
from evaldock.engines.signature import Signature
from evaldock.engines.text_metrics import CaseMetrics, aggregate
from evaldock.engines.text_metrics import signature as metrics_signature
from evaldock.engines.text_metrics.stats import JudgeStats, judge_stats, manual_stats

from .. import jsonio
from ..backend import Backend, TaskFailed
from ..db import Row
from ..jobs import Job, JobFailed, commit_in_batches
from . import datasets as ds
from . import jobs
from .detail import compute_conf, detail_view, generation
from .errors import evaluation_not_found, name_invalid, param_invalid
from .modes import JudgeConfig, judge_config, manual_scales, selected_metrics
from .results import EXPORT_FIELDS
from .settings import QianfanSettings
from .store import EXPORT_STATUSES, METRIC_COLUMNS, QianfanStore, Task, Unit, string_id
from .urls import UrlSigner

T = TypeVar("T")

FLUSH_EVERY = 32  # inferred or judged cases per commit
# Cases per rule-metrics task: ~0.3 s of jieba and metrics for short pairs (~0.3 ms
# each), a few seconds for 1,000-character ones; each chunk's values commit as they come.
RULE_CHUNK = 1000
MOCK_MODEL = "amv-evaldock-mock"
EVAL_MODES = ("rule", "model", "manual")
FINISHED = ("Done", "PartlyDone")
# A task waiting for manual scores already has its automatic parts' report and results.
REPORTABLE = (*FINISHED, "DoingWithManualBegin")
# The console's words for a stop refused because the task includes manual evaluation.
MANUAL_NOT_STOPPABLE = "当评估包含人工评估模式的时候，不允许停止"  # noqa: RUF001 - the docs' text


@dataclass(frozen=True)
class ExportState:
    state: str  # the console's word: Pending, Uploading, Done, Fail
    download_url: str  # signed, once Done
    error: str


def _id_text(value: Any) -> str:
    return str(value).strip()


def _kept(values: Sequence[float], keys: set[str]) -> list[float | None]:
    """A case's rule metrics (METRIC_COLUMNS order) with those ``scoreModes`` left out
    as None: stored as NULL, shown by neither result/list nor the export."""
    return [v if k in keys else None for k, v in zip(METRIC_COLUMNS, values, strict=True)]


class QianfanBackend(Backend[QianfanSettings]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = QianfanStore(self.db, self.runner)
        self.signer = UrlSigner(self.ctx.secret, self.options.url_expiry_seconds)
        self._metrics_signature = ""

    async def startup(self) -> None:
        # The core loaded the signing secret before this (server/backend.py: prepare).
        self.signer = UrlSigner(self.ctx.secret, self.options.url_expiry_seconds)

    async def reset(self, tenant: str | None) -> None:
        for export_id in await self.store.reset(tenant):
            self.export_path(export_id).unlink(missing_ok=True)

    @property
    def judge(self) -> Judge:
        return self.ctx.engine("judge", Judge)

    @property
    def metrics_signature(self) -> str:
        """The rule-metric convention (engines/text_metrics) a report carries."""
        if not self._metrics_signature:
            self._metrics_signature = metrics_signature()
        return self._metrics_signature

    def judge_config(self, conf: dict[str, Any]) -> JudgeConfig:
        o = self.options
        return judge_config(
            conf, o.judge_min_score, o.judge_max_score, o.max_prompt_chars, o.max_template_chars
        )

    def judge_signature(self, referee: JudgeConfig) -> str:
        """The judge engine's signature with the referee prompt's version, evaldock's
        version last (sacreBLEU-style). ``referee``, not ``prompt``: the judge's own
        signature may hold a ``prompt`` field (its built-in template's version)."""
        engine = Signature.parse(self.judge.signature)
        return engine.extended([("referee", referee.version)]).format()

    # -- evaluation tasks -------------------------------------------------------------------
    async def task(self, tenant: str, ref: int | str) -> Task:
        """A tenant's task by evalId or evalIdStr; the console's not-found otherwise."""
        task = await self.store.task(tenant, ref)
        if task is None:
            raise evaluation_not_found(ref)
        return task

    async def find_task(self, tenant: str, ref: int | str) -> Task | None:
        return await self.store.task(tenant, ref)

    async def units(self, eval_id: str) -> list[Row]:
        return await self.store.units(eval_id)

    def _model_of(self, model_id: str, version_id: str) -> tuple[str, str] | None:
        """(the model name that generates for this model version, where that came from):
        its ``[qianfan.models]`` entry by version id, then by model id ("" is the judge's
        own model), else ``[qianfan] default_model``; None when neither names one."""
        models = self.model_catalogue()
        for key in (version_id, model_id):
            if key in models:
                return models[key], f'[qianfan.models] "{key}"'
        if self.options.default_model:
            return self.options.default_model, "[qianfan] default_model"
        return None

    def model_catalogue(self) -> dict[str, str]:
        """Model version id -> its generation backend ("" is the judge's own model). Mock
        mode adds amv-evaldock-mock (the walk-through's id) for the mock judge's own model
        unless [qianfan.models] maps it; real mode has only what the settings map."""
        models = dict(self.options.models)
        if self.ctx.settings.mode == "mock":
            models.setdefault(MOCK_MODEL, "")
        return models

    def served_model(self, name: str) -> str:
        """The model the judge engine generates with for a ``[qianfan.models]`` name ("":
        the judge's own); "" when it serves none such."""
        try:
            return Signature.parse(self.judge.generation_signature(name or None)).get("model") or ""
        except (UnknownModel, EngineUnavailable):
            return ""

    def _unit(self, field: str, model_id: str, version_id: str, generated: bool) -> Unit:
        """The unit for one model version, refused (500001) when its answers must be
        generated and no setting names a model the judge engine serves for it."""
        chosen = self._model_of(model_id, version_id)
        backend = (chosen[0] or None) if chosen else None
        served = signature = ""
        if generated:
            if chosen is None:
                raise param_invalid(
                    field,
                    f"{version_id} is not mapped to a model; map it in [qianfan.models] "
                    f'"{version_id}" = "<model>" or set [qianfan] default_model = "<model>" '
                    "(a [judge.models] name or the judge's own model), or give every case "
                    "of the dataset a prediction",
                )
            try:
                signature = self.judge.generation_signature(backend)
            except UnknownModel as exc:
                raise param_invalid(
                    field,
                    f"{version_id} maps to {backend!r} ({chosen[1]}), which the judge engine "
                    f"does not serve (known: {', '.join(exc.known) or 'none'}); map it in "
                    f'[judge.models] "{backend}" = "<served model>"',
                ) from None
            except EngineUnavailable as exc:
                raise param_invalid(
                    field, f"{version_id} cannot be generated for: {exc.message}; {exc.hint}"
                ) from None
            served = Signature.parse(signature).get("model") or ""
        return Unit(
            model_id=model_id,
            model_version_id=version_id,
            model_name=backend or string_id(model_id, "am-"),
            model_version=string_id(version_id, "amv-"),
            backend=backend,
            served_model=served,
            generation_signature=signature,
        )

    async def create_task(self, tenant: str, body: dict[str, Any]) -> tuple[int, str]:
        """A task from a v1 eval/create body (v2's CreateEvalTask is translated to it),
        checked whole before anything is stored; it starts at once."""
        bad_name = name_invalid(str(body["name"]), "name")
        if bad_name is not None:
            raise bad_name
        conf: dict[str, Any] = dict(body["evalStandardConf"])
        modes = [m.strip() for m in str(conf.get("evalMode", "")).split(",") if m.strip()]
        for mode in modes:
            if mode not in EVAL_MODES:
                raise param_invalid(
                    "evalStandardConf.evalMode", f"{mode} is not one of rule, model, manual"
                )
        if not modes:
            raise param_invalid("evalStandardConf.evalMode", "must name rule, model or manual")
        judge_signature = ""
        if "model" in modes:
            judge_signature = self.judge_signature(self.judge_config(conf))
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
        # A dataset giving every prediction runs no model: any model version id will do.
        generated = not dataset["with_predictions"]
        units = [
            self._unit(
                f"versionEvalInfo[{i}].modelVersionId",
                _id_text(info["modelId"]),
                _id_text(info["modelVersionId"]),
                generated,
            )
            for i, info in enumerate(body["versionEvalInfo"])
        ]
        conf["evalMode"] = ",".join(modes)
        return await self.store.create_task(
            tenant,
            name=body["name"],
            description=body.get("description") or "",
            dataset=dataset,
            eval_mode=conf["evalMode"],
            standard_conf=conf,
            units=units,
            metrics_signature=self.metrics_signature,
            judge_signature=judge_signature,
            compute_conf=compute_conf(body.get("computeResourceConf")),
        )

    async def detail(self, task: Task) -> dict[str, Any]:
        """eval/detail (detail.py has the fields)."""
        referee = self.judge_config(task.standard_conf) if "model" in task.modes else None
        return detail_view(
            task,
            await self.store.units(task.id),
            await self.store.unit_failures(task.id),
            referee,
            self.options.manual_max_score,
        )

    async def report(self, task: Task) -> list[dict[str, Any]]:
        """The report's entries, one per model version (rule means, judge and manual
        statistics), once the task has them."""
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
            rules = jsonio.decode(u["metrics"]) if u["metrics"] else {}
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
                effect.update(await self._judge_stats(task.id, u["idx"], referee))
            if scales is not None:
                by_case, impression = await self.store.manual_scores(task.id, u["idx"], scales)
                effect.update(manual_stats(by_case, scales))
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
                    # One job runs the whole task (the console numbers its jobs apart).
                    "evaluationJobId": task.num,
                    "projectId": "",
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
                    # evaldock: what generated the unit's answers ("" for both when the
                    # dataset gave every prediction; absent for tasks from before).
                    **generation(u),
                }
            )
        return entries

    async def _judge_stats(self, eval_id: str, unit_idx: int, referee: JudgeConfig) -> JudgeStats:
        scores = await self.store.judge_scores(eval_id, unit_idx)
        return judge_stats(scores, referee.min_score, referee.max_score)

    async def cancel(self, task: Task) -> str:
        """Stop a running task; answers "" when it stops, else why not (the stop
        answer's ``errorMessage``: ``result: false``, as the console documents it).

        A task with manual mode is not stopped (console docs, eval/cancel: only purely
        automatic tasks can be stopped; :data:`MANUAL_NOT_STOPPABLE`)."""
        if task.state not in ("Pending", "Doing", "DoingWithManualBegin"):
            raise param_invalid(
                "evaluation", f"{task.id} is {task.state}; only a running task can be stopped"
            )
        if "manual" in task.modes:
            return (
                f"{MANUAL_NOT_STOPPABLE}: {task.id} has evalMode {task.eval_mode}; only "
                "purely automatic tasks can be stopped. Finish its manual scoring "
                "(POST .../evaldock/eval/manual/score with finish: true) or delete it "
                "(eval/delete)"
            )
        await self.store.request_stop(task.id)
        await self.runner.cancel(task.id)
        return ""

    async def delete_refs(self, tenant: str, refs: Sequence[int | str]) -> None:
        """eval/delete: every reference must name a task of the tenant's."""
        found = []
        for i, ref in enumerate(refs):
            task = await self.store.task(tenant, ref)
            if task is None:
                raise param_invalid(f"evalIds[{i}]", f"evaluation {ref} not found")
            found.append(task.id)
        await self.delete(found)

    async def delete(self, eval_ids: list[str]) -> None:
        """Delete tasks, their exports' jobs and files."""
        for export_id in await self.store.delete_tasks(list(dict.fromkeys(eval_ids))):
            self.export_path(export_id).unlink(missing_ok=True)

    async def result_page(
        self, task: Task, filters: dict[str, Any], page_no: int, page_size: int
    ) -> tuple[list[Row], int]:
        return await self.store.result_page(task.id, filters, page_no, page_size)

    async def tasks_page(
        self, tenant: str, max_keys: int, marker: str, reverse: bool, key: str
    ) -> tuple[list[Task], bool]:
        """v2 marker paging: up to ``max_keys`` tasks after the ``marker`` task (before it,
        reversed), and whether more follow."""
        after = None
        if marker:
            start = await self.store.task(tenant, marker)
            if start is None:
                raise param_invalid("marker", f"{marker} is not a task id")
            after = start.num
        tasks = await self.store.tasks_after(tenant, after, max_keys + 1, reverse, key)
        return tasks[:max_keys], len(tasks) > max_keys

    # -- manual scores ----------------------------------------------------------------------
    async def save_manual_scores(
        self,
        task: Task,
        scores: list[dict[str, Any]],
        impressions: list[dict[str, Any]],
        finish: bool,
    ) -> tuple[int, int, bool]:
        """Check and store people's scores and impressions; (scores held, scores needed,
        finished). A final call, or the last missing score, resumes the waiting task."""
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

        checked = []
        for i, item in enumerate(scores):
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
            checked.append((unit, case, dim, score))
        texts = [
            (unit_of(item, f"subjectiveImpressions[{i}]"), item["subjectiveImpression"])
            for i, item in enumerate(impressions)
        ]
        needed = len(inferred) * len(scales)
        held, finished = await self.store.save_manual(task.id, checked, texts, finish, needed)
        if finished:
            await self.runner.resume(task.id)
        return held, needed, finished

    # -- datasets ---------------------------------------------------------------------------
    async def register_dataset(
        self,
        tenant: str | None,
        name: str,
        source: bytes | str,
        media: Literal["json", "jsonl"],
        dataset_id: str = "",
    ) -> dict[str, Any]:
        """Parse a dataset (a request body's bytes, or a JSON Lines file's path from the
        CLI) in a worker of the request lane, then store it. Raises
        :class:`datasets.DatasetInvalid` naming the field or line, or the limit the parse
        went over."""
        ds.check_name(name)
        if dataset_id:
            ds.check_name(dataset_id, "id")
        o = self.options
        try:
            cases = await self.ctx.task(
                jobs.parse_dataset, source, media, o.max_field_chars, o.max_cases
            )
        except TaskFailed as exc:
            raise ds.DatasetInvalid("dataset", f"could not be read: {exc.message}") from None
        async with self.db.transaction() as tx:
            return await ds.insert_dataset(tx, tenant, name, cases, dataset_id)

    async def datasets(self, tenant: str | None) -> list[Row]:
        """The tenant's datasets and the shared ones (every dataset for None: the CLI)."""
        return await self.store.datasets(tenant)

    # -- exports ----------------------------------------------------------------------------
    def export_path(self, export_id: str) -> Path:
        return self.ctx.data_dir / "exports" / f"{export_id}.zip"

    async def create_export(
        self,
        tenant: str,
        task: Task,
        export_type: str,
        fields: Sequence[str] | None,
        result_ids: list[str] | None,
        *,
        part: bool = False,
    ) -> str:
        """Queue an export of the task's results: all of them, or (``part``) those of
        ``result_ids``."""
        if export_type != "local":
            raise param_invalid(
                "exportType", "storage (a private BOS bucket) is not available here; use local"
            )
        if task.state not in REPORTABLE:
            raise param_invalid(
                "evaluation", f"{task.id} has no results: its state is {task.state}"
            )
        if part and not result_ids:
            raise param_invalid("resultIds", "is required when exportOpt is part")
        content = {
            "fields": list(dict.fromkeys(fields or EXPORT_FIELDS)),
            "resultIds": result_ids if part else None,
        }
        return await self.store.create_export(tenant, task.id, content)

    async def export_state(self, tenant: str, export_id: str, url: str) -> ExportState:
        """The export's state and, once Done, ``url`` signed for a download without
        credentials."""
        export = await self.store.export(export_id, tenant)
        if export is None:
            raise param_invalid("exportID", f"{export_id} not found")
        state = EXPORT_STATUSES.word(export["job_status"])
        signed = self.signer.sign_export(url, export_id) if state == "Done" else ""
        return ExportState(state, signed, export["job_error"] or "")

    def export_file(self, export_id: str) -> Path | None:
        path = self.export_path(export_id)
        return path if path.is_file() else None

    # -- jobs -------------------------------------------------------------------------------
    async def run_eval(self, job: Job) -> None:
        """An eval task's job (the module docstring has the steps)."""
        task = await self.store.eval_row(job.id)
        if task is None:  # deleted meanwhile
            return
        units = await self.store.units(job.id)
        cases = await self.store.dataset_cases(task["dataset_id"])
        if not cases:
            raise JobFailed(f"dataset {task['dataset_id']} no longer exists; register it again")
        done = await self.store.inferred_keys(job.id)
        pending = [(u, c) for u in units for c in cases if (u["idx"], c["idx"]) not in done]
        inference_total = len(units) * len(cases)
        modes = task["eval_mode"].split(",")
        conf = jsonio.decode(task["standard_conf"])
        # Judge mode doubles the work: one judge call per inferred case after inference.
        total = inference_total * (2 if "model" in modes else 1)
        await job.progress(len(done), total)
        await self._infer(job, pending, len(done))

        failed, first = await self.store.inference_failures(job.id)
        if failed == inference_total:
            raise JobFailed(
                f"inference failed for every case ({first}); map the model versions "
                "to a served model in [qianfan.models] or give the dataset a prediction field"
            )
        if "rule" in modes:
            await self._rule_metrics(job, selected_metrics(conf.get("scoreModes")))
        if "model" in modes:
            await self._judge(job, self.judge_config(conf), total)
        if "manual" in modes and not task["manual_finished"]:
            # Resumed by the final manual call (or the last missing score); the handler then
            # runs again from the top, finds every step stored, and ends here.
            await job.wait("waiting for manual scores (POST .../evaldock/eval/manual/score)")

    async def _infer(self, job: Job, pending: list[tuple[Row, Row]], done: int) -> None:
        judge = self.judge
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(unit: Row, case: Row) -> tuple[Any, ...]:
            key = (job.id, unit["idx"], case["idx"], f"{job.id}-{unit['idx']}-{case['idx']}")
            if case["prediction"] is not None:
                return (*key, case["prediction"], None)
            async with gate:
                try:
                    out = await judge.generate(
                        [{"role": "user", "content": case["prompt"]}], model=unit["backend"]
                    )
                except (EngineError, LookupError) as exc:
                    return (*key, None, str(exc) or type(exc).__name__)
            return (*key, out.text, None)

        calls = (one(u, c) for u, c in pending)
        await commit_in_batches(job, calls, self.store.save_inferences, done=done)

    async def _rule_metrics(self, job: Job, keys: set[str]) -> None:
        db_path = str(self.db.path)
        jieba_dir = str(self.ctx.settings.data_dir / "jieba")
        for unit in await self.store.units_without_metrics(job.id):
            per_case: list[CaseMetrics] = []
            after = -1
            while True:
                chunk = await job.run_task(
                    jobs.rule_metrics,
                    db_path,
                    job.id,
                    unit,
                    after,
                    RULE_CHUNK,
                    jieba_dir,
                    progress=False,
                )
                if chunk:
                    shown = [(case_idx, *_kept(values, keys)) for case_idx, *values in chunk]
                    await self.store.save_case_metrics(job.id, unit, shown)
                    per_case.extend(CaseMetrics(*values) for _, *values in chunk)
                    after = int(chunk[-1][0])
                if len(chunk) < RULE_CHUNK:
                    break
            means = aggregate(per_case)
            await self.store.save_unit_metrics(
                job.id, unit, {k: (v if k in keys else 0.0) for k, v in means.items()}
            )

    async def _judge(self, job: Job, config: JudgeConfig, total: int) -> None:
        """Score every inferred, not yet judged case (resumable: NULL judge_score)."""
        judge = self.judge
        rows = await self.store.unjudged(job.id)
        if not rows:
            # Resumed after manual scoring: every case is judged already (was left at 4/8).
            await job.progress(total, total)
            return
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(row: Row) -> tuple[Any, ...]:
            async with gate:
                score = await judge.score(
                    variables=config.variables(row["prompt"], row["prediction"], row["reference"]),
                    max_score=config.max_score,
                    min_score=config.min_score,
                    prompt_template=config.template,
                    dimensions=config.dimensions or None,
                )
            value = score.bucket
            if value != -1 and not config.min_score <= value <= config.max_score:
                value = -1  # off the scale: the invalid bucket, as the console counts it
            per = jsonio.encode(score.per_dimension) if score.per_dimension else None
            return (value, score.explanation, per, job.id, row["unit_idx"], row["case_idx"])

        calls = (one(r) for r in rows)
        await commit_in_batches(
            job, calls, self.store.save_judgements, done=total - len(rows), total=total
        )

    async def run_export(self, job: Job) -> None:
        """An export's job: the zip built in a worker from the committed results."""
        export = await self.store.export(job.id, None)
        if export is None:
            return
        spec = jsonio.decode(export["content"])
        target = self.export_path(job.id)
        try:
            await job.run_task(
                jobs.build_export,
                str(self.db.path),
                export["eval_id"],
                list(spec["fields"]),
                spec.get("resultIds"),
                str(target),
                progress=False,
            )
        except BaseException:
            # A task killed mid-write (a limit, a cancel) leaves its partial file.
            target.with_suffix(".partial").unlink(missing_ok=True)
            raise
        await job.progress(1, 1)
