"""One model version's result for one case, as the vendor shows it: an item of
``eval/result/list`` and an object in a line of the export's ``data.jsonl``."""

from __future__ import annotations

from typing import Any

from .. import jsonio
from ..db import Row
from .store import METRIC_COLUMNS

# What an export holds by default (and all a result/list item shows).
EXPORT_FIELDS = ("prompt", "prediction", "completion", "metrics")


def case_entry(row: Row, content: set[str]) -> dict[str, Any]:
    """One model version's object in a ``data.jsonl`` line (export and result/list)."""
    entry: dict[str, Any] = {
        "evalUnitId": row["unit_id"],
        "modelName": row["model_name"],
        "modelVersion": row["model_version"],
    }
    if row["served_model"] is not None:
        # evaldock: the served model that generated this prediction ("" when the dataset
        # gave it); absent for a task from before served models were recorded.
        entry["servedModel"] = row["served_model"]
    if "prompt" in content:
        entry["prompt"] = row["prompt"]
    if "completion" in content:
        entry["completion"] = row["reference"]
        entry["reference"] = row["reference"]
    if "prediction" in content:
        entry["prediction"] = row["prediction"]
    if row["error"] is not None:
        entry["error"] = row["error"]
    if "metrics" in content:
        metrics = {k: row[c] for k, c in METRIC_COLUMNS.items() if row[c] is not None}
        evaluation: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in metrics.items()]
        if row["judge_score"] is not None:
            score = int(row["judge_score"])
            metrics["judgeScore"] = score
            entry["judgeScore"] = score
            entry["judge_reason"] = row["judge_reason"] or ""
            if row["judge_dimensions"]:
                entry["judgeDimensions"] = jsonio.decode(row["judge_dimensions"])
            # The SDK's EvaluationManager looks for a "judge_reason" item in this list.
            evaluation += [
                {"name": "judge_score", "value": score},
                {"name": "judge_reason", "value": row["judge_reason"] or ""},
            ]
        entry["metrics"] = metrics
        # The SDK's EvaluationManager reads this list (name/value pairs).
        entry["evaluation"] = evaluation
    return entry
