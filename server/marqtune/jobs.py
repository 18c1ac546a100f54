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
from typing import TYPE_CHECKING, Any

from ..compute import TaskContext
from ..datadir import private_dir
from . import datasets

if TYPE_CHECKING:
    from . import ranking

# The columnar form (pyarrow), the evaluation and the metrics are imported by the task
# that needs them: the API process imports this module too, and a worker's task limits
# count its imports (a parse under a 0.5 s CPU limit must not pay for the metrics).

# What versions before the columnar form stored (a JSON ParsedDataset).
LEGACY_PARSED = "parsed.json"


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
    dataset's rows are streamed into the columnar form (:mod:`.columnar`) in folder
    ``parsed_path`` (atomically: a crash leaves the old folder or none). Raises
    :class:`datasets.DatasetInvalid` with what to fix."""
    from .columnar import ColumnarSink

    checked = datasets.Schema(**schema)
    target = Path(parsed_path)
    private_dir(target.parent)
    if checked.dataset_type != "evaluation":
        return datasets.parse_into(
            Path(upload_path),
            checked,
            datasets.MemorySink(checked),
            datasets.Limits(**limits),
            ctx.check_cancelled,
        )
    sink = ColumnarSink(Path(tempfile.mkdtemp(dir=target.parent, prefix=".parsing-")), checked)
    try:
        file_format, stats = datasets.parse_into(
            Path(upload_path), checked, sink, datasets.Limits(**limits), ctx.check_cancelled
        )
    except BaseException:
        sink.abort()
        raise
    sink.commit(target)
    return file_format, stats


def columnar(parsed_path: str) -> Path:
    """The dataset's columnar folder; one parsed by an older version (``parsed.json``
    beside it) is converted first."""
    from .columnar import write_parsed

    folder = Path(parsed_path)
    legacy = folder.with_name(LEGACY_PARSED)
    if not folder.is_dir() and legacy.is_file():
        parsed = datasets.load(legacy.read_bytes())
        write_parsed(Path(tempfile.mkdtemp(dir=folder.parent, prefix=".parsing-")), folder, parsed)
    return folder


def evaluate(
    ctx: TaskContext,
    parsed_path: str,
    params: ranking.EvalParams,
    load_model: str,
    load_pretrained: str | None,
    work_dir: str,
    encode_chunk: int = 16_384,
) -> tuple[dict[str, Any], str]:
    """GCL's ``output.json`` (unrounded) of the model on the parsed dataset, and the
    signature of what produced it. The ranker is this worker's: loaded by the first
    evaluation that needs the model and kept for the next one. Work in progress lives in
    ``work_dir``: a restarted evaluation resumes from its last finished chunk."""
    from evaldock.engines.ir_metrics import gcl
    from evaldock.engines.protocols import Ranker

    from . import evaluation

    ctx.say("Loading the dataset")
    folder = columnar(parsed_path)
    ranker = ctx.engine("ranker", Ranker)
    with ranker.using(load_model, load_pretrained, say=ctx.say) as loaded:
        ctx.say(f"Ranker: {loaded.signature}")
        result = evaluation.evaluate(
            folder,
            Path(work_dir),
            params,
            loaded,
            loaded.signature,
            ctx.say,
            ctx.check_cancelled,
            encode_chunk=encode_chunk,
        )
        # What produced the numbers: the ranker and the metric computation.
        signature = gcl.signature(loaded.signature, sample=params.top_q, top_k=params.top_k)
    return result, str(signature)
