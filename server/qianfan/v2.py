"""The v2 evaluation API (``POST /v2/eval?Action=...``) over the v1 tasks.

Baidu publishes no v2 response shapes the SDK parses (``Eval.V2`` returns the body as
is), so these are evaldock's, documented in openapi/qianfan.yaml: success
``{requestId, log_id, result}``; a business error is the v1 one (HTTP 200, ``error_code``
500001), which the SDK raises as ``APIError``. A v2 ``taskId`` is the v1 ``evalIdStr``.
"""

from __future__ import annotations

from typing import Any

from .errors import name_invalid, param_invalid
from .store import Task

ACTIONS = (
    "CreateEvalTask",
    "DescribeEvalTasks",
    "DescribeEvalTask",
    "DescribeEvalTaskReport",
    "DeleteEvalTask",
)
# The body field each action needs (the spec's oneOf tells the bodies apart by it).
REQUIRED = {
    "CreateEvalTask": "taskName",
    "DescribeEvalTasks": "evalType",
    "DescribeEvalTask": "taskId",
    "DescribeEvalTaskReport": "taskId",
    "DeleteEvalTask": "taskId",
}
DEFAULT_MAX_KEYS = 10


def check_body(action: str, body: dict[str, Any]) -> None:
    field = REQUIRED[action]
    if field not in body:
        raise param_invalid(field, f"is required by Action={action}")


def v1_create_body(body: dict[str, Any]) -> dict[str, Any]:
    """CreateEvalTask -> the v1 eval/create body: ``evalObjectConfig.evalModelConfig``
    names the dataset (``versionId``, its version id; ``datasetId`` also read) and the
    models (``evalModelConfigList[].modelId``, with ``modelVersionId`` when given);
    ``evalConfig`` carries ``evalMode`` and each mode's settings, flat or in
    ``ruleEvalConfig`` / ``autoModelEvalConfig`` / ``manualEvalConfig``."""
    bad_name = name_invalid(str(body["taskName"]), "taskName")
    if bad_name is not None:
        raise bad_name
    objects = body.get("evalObjectConfig") or {}
    model_conf = objects.get("evalModelConfig") or {}
    dataset = model_conf.get("datasetId", model_conf.get("versionId"))
    if dataset is None:
        raise param_invalid("evalObjectConfig.evalModelConfig.versionId", "is required")
    models = model_conf.get("evalModelConfigList") or []
    if not models:
        raise param_invalid("evalObjectConfig.evalModelConfig.evalModelConfigList", "is empty")
    config = body.get("evalConfig") or {}
    rule = config.get("ruleEvalConfig") or {}
    auto = config.get("autoModelEvalConfig") or {}
    manual = config.get("manualEvalConfig") or {}
    conf: dict[str, Any] = {"evalMode": config.get("evalMode", "")}
    score_modes = config.get("scoreModes", rule.get("scoreModes"))
    if score_modes is not None:
        conf["scoreModes"] = score_modes
    prompt = config.get("prompt", auto.get("prompt"))
    if prompt is not None:
        conf["prompt"] = prompt
    dims = config.get(
        "evaluationDimension",
        manual.get("evaluationDimension", auto.get("evaluationDimension")),
    )
    if dims is not None:
        conf["evaluationDimension"] = dims
    if auto.get("apiName"):
        conf["judgeApiName"] = auto["apiName"]  # recorded; the judge engine serves scoring
    return {
        "name": body["taskName"],
        "description": body.get("description") or "",
        "datasetId": dataset,
        "versionEvalInfo": [
            {"modelId": m["modelId"], "modelVersionId": m.get("modelVersionId", m["modelId"])}
            for m in models
        ],
        "evalStandardConf": conf,
    }


def task_view(task: Task, units: list[Any]) -> dict[str, Any]:
    """One task as DescribeEvalTask(s) answer it."""
    conf = task.standard_conf
    return {
        "taskId": task.id,
        "evalId": task.num,
        "taskName": task.name,
        "description": task.description,
        "evalObjectType": "model",
        "evalMode": task.eval_mode,
        "runStatus": task.state,
        "evalObjectConfig": {
            "evalModelConfig": {
                "versionId": task.dataset_id,
                "datasetName": task.dataset_name,
                "evalModelConfigList": [
                    {
                        "modelId": u["model_id"],
                        "modelVersionId": u["model_version_id"],
                        "evalUnitId": u["id"],
                    }
                    for u in units
                ],
            }
        },
        "evalConfig": conf,
        "progress": {"processed": task.processed, "total": task.total},
        "createTime": task.created_at,
        "startTime": task.started_at or "",
        "finishTime": task.finished_at or "",
        "errMsg": task.job_error or "",
    }
