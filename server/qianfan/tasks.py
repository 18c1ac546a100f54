"""The jobs of the Qianfan surface: running an evaluation task and building an export.

A task runs in two steps, each resumable after a crash from what it stored:

1. inference: every (model version, case) without a result row gets one -- the
   dataset's ``prediction`` when it has one, else the model version's generation
   backend (``[qianfan.models]``; the judge engine's ``generate``). A failed call is
   recorded as that case's error; results commit every ``FLUSH_EVERY`` rows with the
   progress, so a crash costs at most that many calls.
2. rule metrics (``evalMode`` has ``rule``): engines/text_metrics over the successful
   cases of each unit on the runner's pool (``check_cancelled`` every ``CHECK_EVERY``
   cases), per-case values and each unit's means written in one transaction. Cases whose
   inference failed are left out; the task then reads ``PartlyDone``.
3. judge scores (``model``): see modes.py; cases without a judge score are scored.
4. manual (``manual``): the job waits (DoingWithManualBegin) until people finish.
"""

from __future__ import annotations

import asyncio
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaldock.engines.errors import EngineError
from evaldock.engines.text_metrics import CaseMetrics, TextMetrics, aggregate

from .. import jsonio
from ..db import Row
from ..jobs import BlockingContext, Job, JobFailed, in_batches
from .modes import JudgeConfig, run_judge
from .store import METRIC_COLUMNS

FLUSH_EVERY = 32  # results per commit during inference
CHECK_EVERY = 2000  # cases between cancellation checks while computing metrics
SIMILARITY_KEYS = ("f1Score", "rouge_1", "rouge_2", "rouge_l", "bleu4")


def selected_metrics(score_modes: list[str] | None) -> set[str]:
    """``scoreModes`` -> report keys computed: accuracy for "accuracy", the rest for
    "similarity"; both when the request names none."""
    modes = set(score_modes or ("similarity", "accuracy"))
    keys: set[str] = set()
    if "accuracy" in modes:
        keys.add("accuracy")
    if "similarity" in modes:
        keys.update(SIMILARITY_KEYS)
    return keys


async def run_task(
    job: Job,
    judge: Any,
    metrics_engine: Callable[[], TextMetrics],
    in_flight: int,
    judge_config: Callable[[dict[str, Any]], JudgeConfig],
) -> None:
    db = job.db
    task = await db.fetchone("SELECT * FROM qianfan_evals WHERE id = ?", (job.id,))
    if task is None:  # deleted meanwhile
        return
    units = await db.fetchall(
        "SELECT idx, backend FROM qianfan_units WHERE eval_id = ? ORDER BY idx", (job.id,)
    )
    cases = await db.fetchall(
        "SELECT idx, prompt, reference, prediction FROM qianfan_dataset_cases"
        " WHERE dataset_id = ? ORDER BY idx",
        (task["dataset_id"],),
    )
    if not cases:
        raise JobFailed(f"dataset {task['dataset_id']} no longer exists; register it again")
    done_rows = await db.fetchall(
        "SELECT unit_idx, case_idx FROM qianfan_results WHERE eval_id = ?", (job.id,)
    )
    done = {(r["unit_idx"], r["case_idx"]) for r in done_rows}
    pending = [(u, c) for u in units for c in cases if (u["idx"], c["idx"]) not in done]
    inference_total = len(units) * len(cases)
    modes = task["eval_mode"].split(",")
    conf = jsonio.decode(task["standard_conf"])
    # Judge mode doubles the work: one judge call per inferred case after inference.
    total = inference_total * (2 if "model" in modes else 1)
    await job.progress(len(done), total)
    await _infer(job, judge, pending, len(done), in_flight)

    failures = await db.fetchone(
        "SELECT COUNT(*) AS n, MIN(error) AS first FROM qianfan_results"
        " WHERE eval_id = ? AND error IS NOT NULL",
        (job.id,),
    )
    if failures is not None and failures["n"] == inference_total:
        raise JobFailed(
            f"inference failed for every case ({failures['first']}); map the model versions "
            "to a served model in [qianfan.models] or give the dataset a prediction field"
        )
    if "rule" in modes and await _rules_pending(job):
        await _rule_metrics(job, metrics_engine, selected_metrics(conf.get("scoreModes")))
    if "model" in modes:
        await run_judge(job, judge, judge_config(conf), in_flight, -1, total)
    if "manual" in modes and not task["manual_finished"]:
        # Resumed by the final manual call (or the last missing score); the handler then
        # runs again from the top, finds every step stored, and ends here.
        await job.wait("waiting for manual scores (POST .../evaldock/eval/manual/score)")


async def _infer(
    job: Job, judge: Any, pending: list[tuple[Row, Row]], done: int, in_flight: int
) -> None:
    gate = asyncio.Semaphore(in_flight)

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

    async def flush(rows: list[tuple[Any, ...]]) -> None:
        nonlocal done
        async with job.db.transaction() as tx:
            await tx.executemany(
                "INSERT OR REPLACE INTO qianfan_results (eval_id, unit_idx, case_idx, id,"
                " prediction, error) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            done += len(rows)
            await job.progress(done, conn=tx)

    await in_batches((one(u, c) for u, c in pending), flush, FLUSH_EVERY)


async def _rules_pending(job: Job) -> bool:
    """Whether a unit lacks its rule metrics (a resumed manual task has them all)."""
    row = await job.db.fetchone(
        "SELECT COUNT(*) AS n FROM qianfan_units WHERE eval_id = ? AND metrics IS NULL",
        (job.id,),
    )
    return bool(row and row["n"])


async def _rule_metrics(
    job: Job, metrics_engine: Callable[[], TextMetrics], keys: set[str]
) -> None:
    db = job.db
    rows = await db.fetchall(
        "SELECT r.unit_idx, r.case_idx, r.prediction, c.reference FROM qianfan_results r"
        " JOIN qianfan_evals e ON e.id = r.eval_id"
        " JOIN qianfan_dataset_cases c ON c.dataset_id = e.dataset_id AND c.idx = r.case_idx"
        " WHERE r.eval_id = ? AND r.error IS NULL ORDER BY r.unit_idx, r.case_idx",
        (job.id,),
    )
    pairs = [(r["prediction"], r["reference"]) for r in rows]

    def compute(ctx: BlockingContext) -> list[CaseMetrics]:
        engine = metrics_engine()
        out = []
        for i, (prediction, reference) in enumerate(pairs):
            if i % CHECK_EVERY == 0:
                ctx.check_cancelled()
            out.append(engine.per_case(prediction, reference))
        return out

    values = await job.run_blocking(compute)
    by_unit: dict[int, list[CaseMetrics]] = {}
    updates = []
    for row, metrics in zip(rows, values, strict=True):
        by_unit.setdefault(row["unit_idx"], []).append(metrics)
        as_dict = metrics.as_dict()
        updates.append(
            (
                *(as_dict[k] if k in keys else None for k in METRIC_COLUMNS),
                job.id,
                row["unit_idx"],
                row["case_idx"],
            )
        )
    units = await db.fetchall("SELECT idx FROM qianfan_units WHERE eval_id = ?", (job.id,))
    set_columns = ", ".join(f"{c} = ?" for c in METRIC_COLUMNS.values())
    async with db.transaction() as tx:
        await tx.executemany(
            f"UPDATE qianfan_results SET {set_columns}"
            " WHERE eval_id = ? AND unit_idx = ? AND case_idx = ?",
            updates,
        )
        for unit in units:
            means = aggregate(by_unit.get(unit["idx"], []))
            shown = {k: (v if k in keys else 0.0) for k, v in means.items()}
            await tx.execute(
                "UPDATE qianfan_units SET metrics = ? WHERE eval_id = ? AND idx = ?",
                (jsonio.encode(shown), job.id, unit["idx"]),
            )


# -- exports -----------------------------------------------------------------------------


def export_path(data_dir: Path, export_id: str) -> Path:
    return data_dir / "qianfan" / "exports" / f"{export_id}.zip"


def case_entry(row: Row, content: set[str]) -> dict[str, Any]:
    """One model version's object in a ``data.jsonl`` line (export and result/list)."""
    entry: dict[str, Any] = {
        "evalUnitId": row["unit_id"],
        "modelName": row["model_name"],
        "modelVersion": row["model_version"],
    }
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


async def run_export(job: Job, data_dir: Path) -> None:
    db = job.db
    export = await db.fetchone("SELECT * FROM qianfan_exports WHERE id = ?", (job.id,))
    if export is None:
        return
    spec = jsonio.decode(export["content"])
    content = set(spec["fields"])
    only = set(spec["resultIds"]) if spec.get("resultIds") is not None else None
    rows = await db.fetchall(
        "SELECT r.*, u.id AS unit_id, u.model_name, u.model_version, c.prompt, c.reference"
        " FROM qianfan_results r"
        " JOIN qianfan_units u ON u.eval_id = r.eval_id AND u.idx = r.unit_idx"
        " JOIN qianfan_evals e ON e.id = r.eval_id"
        " JOIN qianfan_dataset_cases c ON c.dataset_id = e.dataset_id AND c.idx = r.case_idx"
        " WHERE r.eval_id = ? ORDER BY r.case_idx, r.unit_idx",
        (export["eval_id"],),
    )
    target = export_path(data_dir, job.id)

    def build(ctx: BlockingContext) -> None:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = target.with_suffix(".partial")
        lines: dict[int, list[dict[str, Any]]] = {}
        for i, row in enumerate(rows):
            if i % CHECK_EVERY == 0:
                ctx.check_cancelled()
            if only is None or row["id"] in only:
                lines.setdefault(row["case_idx"], []).append(case_entry(row, content))
        with (
            zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf,
            zf.open("data.jsonl", "w") as fh,
        ):
            for case_idx in sorted(lines):
                fh.write(jsonio.encode(lines[case_idx]) + b"\n")
        os.chmod(partial, 0o600)
        os.replace(partial, target)

    await job.run_blocking(build)
    await job.progress(1, 1)
