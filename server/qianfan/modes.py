"""Judge-model (``evalMode`` ``model``) and manual (``manual``) evaluation modes.

Judge mode: every successfully inferred case is scored by the judge engine's ``score``
with the task's referee prompt (``templateContent`` with its ``{slots}``, ``metric``,
``steps``, ``maxScore``) and ``evaluationDimension``s on ``[qianfan] judge_min_score``
..``maxScore``; a case the judge cannot grade is stored as -1 (the report's invalid
bucket) with the judge's reason. Scores commit every ``FLUSH_EVERY`` cases with the
progress, so a crash re-asks at most that many.

Manual mode: after the automatic parts the task waits (``DoingWithManualBegin``); people
submit per (model version, case, dimension) an integer on the dimension's scale
(0..``[qianfan] manual_max_score``, 1 by default as the vendor's example report shows,
or the dimension's own ``maxScore``) or -1, plus a ``subjectiveImpression`` per model
version, through ``/wenxinworkshop/evaldock/eval/manual/score`` (or ``evaldock qianfan
score``). A final call, or the last missing score, resumes the task, which then ends.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evaldock.engines.text_metrics.stats import (
    JudgeStats,
    ManualStats,
    judge_stats,
    manual_stats,
)

from .. import jsonio
from ..db import Database, Row
from ..jobs import Job, in_batches
from .errors import param_invalid

FLUSH_EVERY = 32  # judged cases per commit
DEFAULT_DIMENSION = "满意度"  # satisfaction: the first dimension of the vendor's example


@dataclass(frozen=True)
class JudgeConfig:
    template: str | None
    metric: str
    steps: str
    min_score: int
    max_score: int
    dimensions: list[dict[str, str]]

    def variables(self, prompt: str, output: str, reference: str) -> dict[str, Any]:
        """The slots a Qianfan referee template may name (the console's own names and
        the engine's: ``{src}``/``{input}``, ``{prediction}``/``{output}``, ...)."""
        return {
            "input": prompt,
            "src": prompt,
            "prompt": prompt,
            "output": output,
            "prediction": output,
            "reference": reference,
            "tgt": reference,
            "metric": self.metric,
            "steps": self.steps,
            "max_score": self.max_score,
            "min_score": self.min_score,
        }

    @property
    def version(self) -> str:
        """A short hash of everything that shapes the referee's prompt (its version)."""
        text = jsonio.encode(
            [
                self.template,
                self.metric,
                self.steps,
                self.min_score,
                self.max_score,
                self.dimensions,
            ]
        )
        return hashlib.sha256(text).hexdigest()[:12]


def _dimensions(conf: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(d) for d in conf.get("evaluationDimension") or []]


def judge_config(
    conf: Mapping[str, Any], min_score: int, default_max: int, max_chars: int, max_template: int
) -> JudgeConfig:
    """The referee settings of ``evalStandardConf``, checked at create (not at run time:
    a too-long prompt failing only mid-run is the complaint in bce-qianfan-sdk #404)."""
    prompt = conf.get("prompt") or {}
    if not isinstance(prompt, Mapping):
        raise param_invalid("evalStandardConf.prompt", "must be an object")
    limits = {"metric": max_chars, "steps": max_chars, "templateContent": max_template}
    for key, limit in limits.items():
        value = prompt.get(key)
        if value is not None and not isinstance(value, str):
            raise param_invalid(f"evalStandardConf.prompt.{key}", "must be a string")
        if value is not None and len(value) > limit:
            raise param_invalid(
                f"evalStandardConf.prompt.{key}",
                f"is {len(value)} characters; the referee prompt allows at most {limit}",
            )
    raw_max = prompt.get("maxScore", default_max)
    try:
        max_score = int(raw_max)
    except (TypeError, ValueError):
        raise param_invalid("evalStandardConf.prompt.maxScore", "must be an integer") from None
    if not min_score <= max_score <= 100:
        raise param_invalid(
            "evalStandardConf.prompt.maxScore",
            f"{max_score} is outside {min_score}..100 (the scale starts at [qianfan] "
            "judge_min_score)",
        )
    dims = [
        {"dimension": str(d["dimension"]), "description": str(d.get("description") or "")}
        for d in _dimensions(conf)
    ]
    return JudgeConfig(
        template=prompt.get("templateContent") or None,
        metric=prompt.get("metric") or "",
        steps=prompt.get("steps") or "",
        min_score=min_score,
        max_score=max_score,
        dimensions=dims,
    )


def manual_scales(conf: Mapping[str, Any], default_top: int) -> dict[str, int]:
    """Each manual dimension -> the top of its 0..top scale (report order)."""
    dims = _dimensions(conf) or [{"dimension": DEFAULT_DIMENSION}]
    scales: dict[str, int] = {}
    for i, d in enumerate(dims):
        top = d.get("maxScore", default_top)
        if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 100:
            raise param_invalid(
                f"evalStandardConf.evaluationDimension[{i}].maxScore", "must be an integer 1..100"
            )
        name = str(d["dimension"])
        if name in scales:
            raise param_invalid(
                f"evalStandardConf.evaluationDimension[{i}].dimension", f"{name} is repeated"
            )
        scales[name] = top
    return scales


# -- judge job step ----------------------------------------------------------------------


async def run_judge(
    job: Job, judge: Any, config: JudgeConfig, in_flight: int, done: int, total: int
) -> None:
    """Score every inferred, not yet judged case (resumable: NULL judge_score)."""
    rows = await job.db.fetchall(
        "SELECT r.unit_idx, r.case_idx, r.prediction, c.prompt, c.reference"
        " FROM qianfan_results r JOIN qianfan_evals e ON e.id = r.eval_id"
        " JOIN qianfan_dataset_cases c ON c.dataset_id = e.dataset_id AND c.idx = r.case_idx"
        " WHERE r.eval_id = ? AND r.error IS NULL AND r.judge_score IS NULL"
        " ORDER BY r.unit_idx, r.case_idx",
        (job.id,),
    )
    done = total - len(rows) if done < 0 else done
    gate = asyncio.Semaphore(in_flight)

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

    async def flush(batch: list[tuple[Any, ...]]) -> None:
        nonlocal done
        async with job.db.transaction() as tx:
            await tx.executemany(
                "UPDATE qianfan_results SET judge_score = ?, judge_reason = ?,"
                " judge_dimensions = ? WHERE eval_id = ? AND unit_idx = ? AND case_idx = ?",
                batch,
            )
            done += len(batch)
            await job.progress(done, total, conn=tx)

    await in_batches((one(r) for r in rows), flush, FLUSH_EVERY)


# -- report statistics -------------------------------------------------------------------


async def unit_judge_stats(
    db: Database, eval_id: str, unit_idx: int, min_score: int, max_score: int
) -> JudgeStats:
    rows = await db.fetchall(
        "SELECT judge_score FROM qianfan_results WHERE eval_id = ? AND unit_idx = ?"
        " AND error IS NULL",
        (eval_id, unit_idx),
    )
    scores = [
        None if r["judge_score"] is None or r["judge_score"] < 0 else int(r["judge_score"])
        for r in rows
    ]
    return judge_stats(scores, min_score, max_score)


async def unit_manual_stats(
    db: Database, eval_id: str, unit_idx: int, scales: dict[str, int]
) -> tuple[ManualStats, str]:
    """Manual statistics over the unit's inferred cases (a case nobody scored counts in
    each dimension's "-1"), and its subjective impression ("" when none)."""
    cases = await db.fetchall(
        "SELECT case_idx FROM qianfan_results WHERE eval_id = ? AND unit_idx = ? AND error IS NULL",
        (eval_id, unit_idx),
    )
    scores = await db.fetchall(
        "SELECT case_idx, dimension, score FROM qianfan_manual_scores"
        " WHERE eval_id = ? AND unit_idx = ?",
        (eval_id, unit_idx),
    )
    by_case: dict[int, dict[str, int | None]] = {r["case_idx"]: {} for r in cases}
    for s in scores:
        if s["case_idx"] in by_case and s["dimension"] in scales:
            by_case[s["case_idx"]][s["dimension"]] = s["score"]
    stats = manual_stats(list(by_case.values()), scales)
    row = await db.fetchone(
        "SELECT text FROM qianfan_impressions WHERE eval_id = ? AND unit_idx = ?",
        (eval_id, unit_idx),
    )
    return stats, row["text"] if row else ""
