"""Marqtune's two background jobs: validating an uploaded dataset, running an evaluation.

Both do their heavy work in :meth:`Job.run_blocking` (the runner's bounded pool), which
checks for cancellation between steps: deleting a dataset or stopping the server stops
its parse at the next check (every 1,000 rows, every MiB of archive).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaldock.engines.errors import EngineError
from evaldock.engines.ir_metrics import gcl

from ..jobs import BlockingContext, Job, JobCancelled, JobFailed
from . import datasets, pipeline
from .store import Logs

if TYPE_CHECKING:
    from .provider import MarqtuneProvider

log = logging.getLogger("evaldock.marqtune")


def schema_of(row: dict[str, Any]) -> datasets.Schema:
    return datasets.Schema(
        dataset_type=row["dataset_type"],
        columns=dict(row["data_schema"]),
        query_columns=list(row["query_columns"] or []),
        result_columns=list(row["result_columns"] or []),
        normalize_urls=bool(row["normalize_urls"]),
    )


def write_private(folder: Path, data: bytes) -> Path:
    """Write ``data`` to a new 0600 temporary file in ``folder`` (fsynced)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(name)


async def validate_dataset(provider: MarqtuneProvider, job: Job) -> None:
    store, logs = provider.store, provider.logs
    row = await store.dataset(job.id)
    if row is None or row["deleted_at"]:
        return
    await logs.add(job.id, "Validating the file against dataSchema")
    schema, limits = schema_of(row), provider.limits

    def work(ctx: BlockingContext) -> tuple[str, dict[str, int]]:
        file_format, parsed, stats = datasets.parse_file(
            store.upload_path(job.id), schema, limits, ctx.check_cancelled
        )
        if parsed is not None:
            target = store.parsed_path(job.id)
            os.replace(write_private(target.parent, datasets.dump(parsed)), target)
        return file_format, stats

    try:
        file_format, stats = await job.run_blocking(work)
    except datasets.DatasetInvalid as exc:
        await logs.add(job.id, f"Validation failed: {exc}")
        raise JobFailed(str(exc)) from None
    await store.dataset_validated(job.id, file_format, stats)
    if (await store.dataset(job.id) or {}).get("deleted_at"):
        store.remove_files(job.id)  # deleted meanwhile
        return
    counts = ", ".join(
        f"{stats[k]} {noun}"
        for k, noun in (
            ("rowCount", "rows"),
            ("queryCount", "queries"),
            ("documentCount", "documents"),
        )
        if k in stats
    )
    await logs.add(job.id, f"Read a {file_format} file: {counts}")
    await logs.add(job.id, "Dataset is ready")
    await job.progress(1, 1)


async def run_evaluation(provider: MarqtuneProvider, job: Job) -> None:
    store, logs = provider.store, provider.logs
    row = await store.evaluation(job.id)
    if row is None or row["deleted_at"]:
        return
    if job.attempts > 1:
        await logs.add(job.id, f"Restarting after an interruption (attempt {job.attempts})")
    await logs.add(job.id, "Evaluation started")
    await store.set_metrics(job.id, None, None)
    dataset = await store.dataset(row["dataset_id"])
    if dataset is None or dataset["deleted_at"]:
        raise await _fail(logs, job.id, f"Dataset {row['dataset_id']} was deleted")
    try:
        params = pipeline.check_hyperparameters(
            row["hyperparameters"],
            dataset["data_schema"],
            dataset["query_columns"] or [],
            dataset["result_columns"] or [],
        )
    except pipeline.HyperparameterInvalid as exc:
        raise await _fail(logs, job.id, str(exc)) from None
    parsed_path = store.parsed_path(dataset["id"])
    ranker = provider.ctx.engine("ranker")
    load = (row["load_model"], row["load_pretrained"])

    def work(ctx: BlockingContext) -> tuple[dict[str, Any], str]:
        ctx.say("Loading the dataset")
        parsed = datasets.load(parsed_path.read_bytes())
        with ranker.using(*load, say=ctx.say) as loaded:
            ctx.say(f"Ranker: {loaded.signature}")
            result = pipeline.evaluate(parsed, params, loaded, ctx.say, ctx.check_cancelled)
            # What produced the numbers: the ranker and the metric computation.
            signature = gcl.signature(loaded.signature, sample=params.top_q, top_k=params.top_k)
            return result, str(signature)

    async def say(message: str) -> None:
        await logs.add(job.id, message)

    try:
        result, signature = await job.run_blocking(work, on_say=say)
    except (EngineError, ValueError, OSError) as exc:
        raise await _fail(logs, job.id, str(exc) or type(exc).__name__) from None
    except (JobFailed, JobCancelled):
        raise
    except Exception as exc:  # a bug or a torch error: still say so in the job's log
        log.exception("evaluation %s failed", job.id)
        raise await _fail(logs, job.id, f"internal error: {type(exc).__name__}: {exc}") from None
    await store.set_metrics(job.id, result, signature)
    # The line users parse (GCL's `logging.info(output_results["summary"])`).
    await logs.add(job.id, gcl.summary_log_line(gcl.rounded(result)["summary"]))
    await logs.add(job.id, "Evaluation finished")
    await job.progress(1, 1)


async def _fail(logs: Logs, resource_id: str, reason: str) -> JobFailed:
    await logs.add(resource_id, f"Evaluation failed: {reason}")
    return JobFailed(reason)
