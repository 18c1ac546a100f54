"""``eval/detail``: a task as the console shows it, field by field against the SDK's own
mock server (bce-qianfan-sdk ``py/v0.4.12.3``, ``python/qianfan/tests/utils/
mock_server.py``), with evaldock's own fields kept beside them.

The console's fields: ``evaluationId``, ``name``, ``description``, ``state``,
``evalUnits`` (one per model version), ``datasetId``/``datasetName``,
``computeResourceConf`` and ``evalStandardConf`` with what the platform fills in
(``stopWordsPath``, the referee prompt's ``minScore``/``maxScore``, each dimension's
``minScore``/``maxScore``, the ``resultDataset*`` fields). evaldock's: ``id``/``evalId``/
``evalIdStr``, ``versionEvalInfo``, the times, ``progress``, ``failedCases``, ``errMsg``.

Left out on purpose: ``appAk``/``appSk`` (the platform echoes an app's secret key;
evaldock has none and would not echo one), ``apiName``/``apiUrl`` (the referee runs on
the judge engine, not a Qianfan app). The platform stores each task's per-case results
as a dataset of its own (``resultDataset*``); evaldock serves no dataset API of Baidu's,
so those read 0 / "" -- the results are in eval/result/list and the export.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..db import Row
from .modes import JudgeConfig, manual_scales
from .store import Task, string_id

# What the SDK sends (``Model.create_evaluation_task``: {"vmType": 1, "vmNumber": 8}) and
# the platform's other fields, as its mock server shows them.
COMPUTE_DEFAULTS: dict[str, Any] = {
    "vmType": 1,
    "vmNumber": 8,
    "computeResourceId": "",
    "cpu": 0,
    "memory": 0,
}
# The task's own result dataset, which evaldock does not make (module docstring).
RESULT_DATASET: dict[str, Any] = {
    "resultDatasetId": 0,
    "resultDatasetIdStr": "",
    "resultDatasetName": "",
    "resultDatasetProjectType": 0,
    "resultDatasetImportStatus": 0,
    "resultDatasetReleaseStatus": 0,
}
MODEL_SOURCE = "evaldock"  # as the report's modelVersionSource and model/list's source


def compute_conf(given: Any) -> dict[str, Any]:
    """The fields of eval/create's ``computeResourceConf`` kept for eval/detail (the
    spec bounds their types); anything else in it is not stored."""
    if not isinstance(given, Mapping):
        return {}
    return {k: given[k] for k in COMPUTE_DEFAULTS if k in given}


def standard_conf(
    conf: Mapping[str, Any],
    modes: list[str],
    referee: JudgeConfig | None,
    manual_max_score: int,
) -> dict[str, Any]:
    """``evalStandardConf`` as given at create, with the fields the platform fills."""
    shown: dict[str, Any] = {"stopWordsPath": "", **conf, **RESULT_DATASET}
    if referee is not None:
        prompt = conf.get("prompt") or {}
        shown["prompt"] = {
            "templateName": "",
            "templateContent": "",
            "metric": "",
            "steps": "",
            **prompt,
            "minScore": referee.min_score,
            "maxScore": referee.max_score,
        }
    dims = conf.get("evaluationDimension")
    if dims:
        shown["evaluationDimension"] = _dimensions(dims, modes, referee, manual_max_score, conf)
    return shown


def _dimensions(
    dims: list[Mapping[str, Any]],
    modes: list[str],
    referee: JudgeConfig | None,
    manual_max_score: int,
    conf: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Each dimension's scale: people's 0..top in manual mode, else the referee's."""
    scales = manual_scales(conf, manual_max_score) if "manual" in modes else {}
    shown = []
    for d in dims:
        name = str(d["dimension"])
        if name in scales:
            low, top = 0, scales[name]
        elif referee is not None:
            low, top = referee.min_score, referee.max_score
        else:  # rule mode alone scores no dimension; the manual scale is the nearest
            low, top = 0, d.get("maxScore", manual_max_score)
        shown.append(
            {**d, "description": d.get("description") or "", "minScore": low, "maxScore": top}
        )
    return shown


def generation(unit: Row) -> dict[str, str]:
    """evaldock's account of what generated a unit's answers: ``servedModel`` (the model
    the judge engine sent them to) and ``generationSignature`` (the engine's
    ``generation_signature``), both "" when the dataset gave every prediction; absent
    for a task created before they were recorded."""
    if unit["served_model"] is None:
        return {}
    return {
        "servedModel": unit["served_model"],
        "generationSignature": unit["generation_signature"] or "",
    }


def eval_units(
    task: Task, units: list[Row], failures: Mapping[int, tuple[int, str]]
) -> list[dict[str, Any]]:
    """One entry per model version; ``message`` says how many of its inferences failed."""
    entries = []
    for u in units:
        failed = failures.get(int(u["idx"]))
        message = ""
        if failed is not None:
            count, first = failed
            message = f"{count} of {task.case_count} cases failed inference; first: {first}"
        entries.append(
            {
                "modelVersionId": u["model_version_num"],
                "modelId": u["model_num"],
                "modelName": u["model_name"],
                "modelVersion": u["model_version"],
                "modelSource": MODEL_SOURCE,
                # The units of a task run as one job: each is in the task's state.
                "state": task.state,
                "modelVersionDesc": "",
                "message": message,
                "modelTags": None,
                # evaldock: the unit's ids in string form too.
                "modelIdStr": string_id(u["model_id"], "am-"),
                "modelVersionIdStr": string_id(u["model_version_id"], "amv-"),
                "evalUnitId": u["id"],
                **generation(u),
            }
        )
    return entries


def detail_view(
    task: Task,
    units: list[Row],
    failures: Mapping[int, tuple[int, str]],
    referee: JudgeConfig | None,
    manual_max_score: int,
) -> dict[str, Any]:
    return {
        # The console's fields.
        "evaluationId": task.num,
        "name": task.name,
        "description": task.description,
        "state": task.state,
        "evalUnits": eval_units(task, units, failures),
        "datasetId": task.dataset_id,
        "datasetName": task.dataset_name,
        "computeResourceConf": {**COMPUTE_DEFAULTS, **task.compute_conf},
        "evalStandardConf": standard_conf(
            task.standard_conf, task.modes, referee, manual_max_score
        ),
        # evaldock's.
        "id": task.num,
        "evalId": task.num,
        "evalIdStr": task.id,
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
