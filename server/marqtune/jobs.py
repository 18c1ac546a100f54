"""Marqtune's task functions: the work of its two jobs, run in worker processes.

Plain functions of picklable inputs (paths, small dicts, the checked hyperparameters),
called as ``fn(ctx, *args)`` by :meth:`Job.run_task` under the ``[jobs]`` task limits;
their answers are small (a format and counts; GCL's metrics and a signature). The
backend (:mod:`.backend`) reads what they need from the store and commits what they
answer. Nothing here touches the database or imports the provider or the backend.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from evaldock.engines.ir_metrics import gcl
from evaldock.engines.protocols import Ranker

from ..compute import TaskContext
from ..datadir import private_dir
from . import datasets, ranking


def write_private(folder: Path, data: bytes) -> Path:
    """Write ``data`` to a new 0600 temporary file in ``folder`` (fsynced)."""
    private_dir(folder)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(name)


def parse_dataset(
    ctx: TaskContext,
    upload_path: str,
    parsed_path: str,
    schema: dict[str, Any],
    limits: dict[str, Any],
) -> tuple[str, dict[str, int]]:
    """(file format, stats) of an upload checked against its schema; an evaluation
    dataset's normal form is written to ``parsed_path`` (atomically: a crash leaves the
    old file or none). Raises :class:`datasets.DatasetInvalid` with what to fix."""
    file_format, parsed, stats = datasets.parse_file(
        Path(upload_path),
        datasets.Schema(**schema),
        datasets.Limits(**limits),
        ctx.check_cancelled,
    )
    if parsed is not None:
        target = Path(parsed_path)
        os.replace(write_private(target.parent, datasets.dump(parsed)), target)
    return file_format, stats


def evaluate(
    ctx: TaskContext,
    parsed_path: str,
    params: ranking.EvalParams,
    load_model: str,
    load_pretrained: str | None,
) -> tuple[dict[str, Any], str]:
    """GCL's ``output.json`` (unrounded) of the model on the parsed dataset, and the
    signature of what produced it. The ranker is this worker's: loaded by the first
    evaluation that needs the model and kept for the next one."""
    ctx.say("Loading the dataset")
    parsed = datasets.load(Path(parsed_path).read_bytes())
    ranker = ctx.engine("ranker", Ranker)
    with ranker.using(load_model, load_pretrained, say=ctx.say) as loaded:
        ctx.say(f"Ranker: {loaded.signature}")
        result = ranking.evaluate(parsed, params, loaded, ctx.say, ctx.check_cancelled)
        # What produced the numbers: the ranker and the metric computation.
        signature = gcl.signature(loaded.signature, sample=params.top_q, top_k=params.top_k)
    return result, str(signature)
