"""Qianfan's task functions: the work that grows with the input, run in worker processes
(server/compute) under the task limits, never in the API process.

- :func:`parse_dataset`: a dataset's JSON body or JSON Lines to its cases (the request
  lane: ``dataset/create`` waits for it; the CLI runs it inline);
- :func:`rule_metrics`: engines/text_metrics (jieba tokens, BLEU, ROUGE, F1, accuracy)
  over one chunk of one model version's inferred cases;
- :func:`build_export`: the export's zip of ``data.jsonl``, streamed to a file.

Plain functions of picklable inputs (paths, ids, small lists) with small answers; they
import neither the provider nor the backend. The two job tasks read the surface's rows
themselves from the database file (read-only: under WAL a reader sees the last commit
and holds up no writer), so prediction and reference texts never cross the pipe or sit
in the API process; the API process stays the one writer and commits what comes back.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import jsonio
from ..compute import TaskContext
from ..datadir import private_dir
from .datasets import Case, DatasetInvalid, decode_json, parse_cases, parse_jsonl
from .results import case_entry
from .store import SERVED_MODEL

if TYPE_CHECKING:
    from evaldock.engines.text_metrics import TextMetrics

# A reader waits this long for a writer's WAL checkpoint (milliseconds), as the core's
# readers do on their threads.
BUSY_TIMEOUT_MS = 5000


@contextlib.contextmanager
def _reading(db_path: str) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only=ON")
        yield conn
    finally:
        conn.close()


# -- datasets ------------------------------------------------------------------------------


def parse_dataset(
    ctx: TaskContext,
    source: bytes | str,
    media: Literal["json", "jsonl"],
    max_chars: int,
    max_cases: int,
) -> list[Case]:
    """The cases of a ``dataset/create`` body (bytes) or a JSON Lines file (its path, from
    the CLI): ``json`` is the ``{name, cases}`` document, ``jsonl`` one case per line.
    Raises :class:`DatasetInvalid` naming the field or line."""
    data = Path(source).read_bytes() if isinstance(source, str) else source
    if media == "jsonl":
        return parse_jsonl(data, max_chars, max_cases)
    body = decode_json(data, "body")
    rows = body.get("cases") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise DatasetInvalid("cases", "must be a list of case objects")
    return parse_cases(rows, max_chars, max_cases)


# -- rule metrics --------------------------------------------------------------------------

# The engine a worker keeps between tasks: loading jieba's dictionary costs ~0.5 s
# (from its cache; ~1.5 s to build it), once per worker instead of once per chunk.
_METRICS: dict[str, TextMetrics] = {}

_RULE_ROWS = (
    "SELECT r.case_idx, r.prediction, c.reference FROM qianfan_results r"
    " JOIN qianfan_evals e ON e.id = r.eval_id"
    " JOIN qianfan_dataset_cases c ON c.dataset_id = e.dataset_id AND c.idx = r.case_idx"
    " WHERE r.eval_id = ? AND r.unit_idx = ? AND r.error IS NULL AND r.case_idx > ?"
    " ORDER BY r.case_idx LIMIT ?"
)


def _text_metrics(jieba_dir: str) -> TextMetrics:
    engine = _METRICS.get(jieba_dir)
    if engine is None:
        from evaldock.engines.text_metrics import TextMetrics

        engine = _METRICS[jieba_dir] = TextMetrics(Path(jieba_dir))
    return engine


def rule_metrics(
    ctx: TaskContext,
    db_path: str,
    eval_id: str,
    unit_idx: int,
    after_case: int,
    limit: int,
    jieba_dir: str,
) -> list[tuple[Any, ...]]:
    """Rule metrics of up to ``limit`` successfully inferred cases of one unit, those
    after case ``after_case``, in case order: ``(case_idx, accuracy, f1Score, rouge_1,
    rouge_2, rouge_l, bleu4)`` each (:data:`METRIC_KEYS` order). Fewer than ``limit``
    rows: the unit's last chunk."""
    from evaldock.engines.text_metrics import METRIC_KEYS

    with _reading(db_path) as conn:
        rows = conn.execute(_RULE_ROWS, (eval_id, unit_idx, after_case, limit)).fetchall()
    engine = _text_metrics(jieba_dir)
    out: list[tuple[Any, ...]] = []
    for case_idx, prediction, reference in rows:
        metrics = engine.per_case(prediction, reference)
        out.append((case_idx, *(getattr(metrics, key) for key in METRIC_KEYS)))
    return out


# -- exports -------------------------------------------------------------------------------

_EXPORT_ROWS = (
    "SELECT r.*, u.id AS unit_id, u.model_name, u.model_version, c.prompt, c.reference,"
    + SERVED_MODEL
    + " FROM qianfan_results r"
    " JOIN qianfan_units u ON u.eval_id = r.eval_id AND u.idx = r.unit_idx"
    " JOIN qianfan_evals e ON e.id = r.eval_id"
    " JOIN qianfan_dataset_cases c ON c.dataset_id = e.dataset_id AND c.idx = r.case_idx"
    " WHERE r.eval_id = ? ORDER BY r.case_idx, r.unit_idx"
)


def build_export(
    ctx: TaskContext,
    db_path: str,
    eval_id: str,
    fields: list[str],
    result_ids: list[str] | None,
    target: str,
) -> int:
    """Write the task's results as ``data.jsonl`` (one line per case: an array of the
    model versions' entries, ``fields`` shown; only ``result_ids`` when given) in a zip
    at ``target`` (0600, in place only once complete). Answers the number of lines.

    Rows stream from the database in case order, so memory holds one case at a time."""
    content = set(fields)
    only = set(result_ids) if result_ids is not None else None
    path = Path(target)
    private_dir(path.parent)
    partial = path.with_suffix(".partial")
    lines = 0
    with (
        _reading(db_path) as conn,
        zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("data.jsonl", "w") as fh,
    ):
        case: int | None = None
        entries: list[dict[str, Any]] = []
        for row in conn.execute(_EXPORT_ROWS, (eval_id,)):
            if row["case_idx"] != case:
                if entries:
                    fh.write(jsonio.encode(entries) + b"\n")
                    lines += 1
                case, entries = row["case_idx"], []
            if only is None or row["id"] in only:
                entries.append(case_entry(row, content))
        if entries:
            fh.write(jsonio.encode(entries) + b"\n")
            lines += 1
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return lines
