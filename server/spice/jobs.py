"""The Spice surface's tasks: plain functions of picklable inputs, run in worker processes
under the task limits (:mod:`evaldock.server.compute`), never in the API process.

- :func:`read_cases`: a run's dataset (a file of the spicepod or ``[spice] dataset_dirs``,
  or the cases stored with a spec), checked, its ideals parsed, the built-in models'
  answers given;
- :func:`score_cases`: the built-in scorers over chunks of cases, the embedding scorers
  through the worker's embedder, and the texts ``eval.results`` stores;
- :func:`run_sql`: one ``POST /v1/sql`` query, in a worker of the request lane.

Why workers: a case of two 1,000,000-character texts scored by ``levenshtein`` held the
GIL of the API process for 27 s (every surface unanswered), and 24 runaway queries shared
its job threads. In a worker such a task costs its own core, and the pool stops it at its
limit. Lists that grow with the dataset cross the pipe only when small
(:data:`INLINE_BYTES`); else they are written to a file under ``<data>/spice/runs/`` and
the path goes on (:class:`Spilled`). The judge-scored scorers and served models stay in
the API process: they are HTTP calls.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar

from evaldock.engines.errors import EngineError
from evaldock.engines.protocols import Embedder
from evaldock.engines.scorers import Column, InvalidValue, Output, parse_cell, score_batch
from evaldock.engines.scorers.exact import PairTooLong
from evaldock.engines.scorers.model import embedding_scores_now
from evaldock.engines.scorers.values import to_json

from .. import jsonio
from ..compute import TaskContext
from ..datadir import private_dir
from . import sql
from .runs import builtin_answers, cell_text
from .spicepod import BUILTIN_MODELS, SpicepodError, check_rows, read_rows

T = TypeVar("T")

# A list up to this size (pickled) crosses the pipe as it is; a larger one goes to a file.
INLINE_BYTES = 1024 * 1024
# Spilled files hold chunks of up to this many items and (one huge item aside) bytes, so
# the API process reads back one bounded chunk at a time.
CHUNK_ITEMS = 1000
CHUNK_BYTES = 4 * 1024 * 1024
# Cases per chunk of built-in scoring, between progress reports: 5,000 cases x 5 scorers
# score in ~0.5 s.
SCORE_CHUNK = 5000

# One case: the input cell as the dataset holds it, the parsed ideal, and the built-in
# model's answer (None when a served model answers, in the API process).
Case: TypeAlias = tuple[Any, Output, Output | None]
# One case's texts as eval.results stores them: input, answer ("actual"), ideal ("expected").
Texts: TypeAlias = tuple[str, str, str]


class EvalFailed(Exception):
    """The run cannot go on for its input; the message is the run's ``error_message``."""


@dataclass(frozen=True)
class Spilled(Generic[T]):
    """A list a task hands on: ``items`` when small, else ``path``, a file of pickled
    chunks (written by this module, under the surface's 0700 data folder)."""

    count: int
    items: list[T] | None = None
    path: str | None = None

    def chunks(self) -> Iterator[list[T]]:
        """The items a bounded chunk at a time (inline ones in one chunk)."""
        if self.items is not None:
            yield self.items
            return
        assert self.path is not None
        with open(self.path, "rb") as fh:
            while True:
                try:
                    chunk: list[T] = pickle.load(fh)
                except EOFError:
                    return
                yield chunk

    def load(self) -> list[T]:
        return [item for chunk in self.chunks() for item in chunk]

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def spill(items: list[T], path: Path, inline_bytes: int = INLINE_BYTES) -> Spilled[T]:
    """``items`` inline when they pickle to at most ``inline_bytes``, else in ``path``."""
    blobs = (
        blob
        for start in range(0, len(items), CHUNK_ITEMS)
        for blob in _blobs(items, start, min(len(items), start + CHUNK_ITEMS))
    )
    pending: list[bytes] = []
    size = 0
    for blob in blobs:
        pending.append(blob)
        size += len(blob)
        if size > inline_bytes:
            break
    else:
        return Spilled(len(items), items=items)
    private_dir(path.parent)
    part = path.with_name(path.name + ".part")
    try:
        with part.open("wb") as fh:
            fh.writelines(pending)
            pending.clear()
            for blob in blobs:
                fh.write(blob)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return Spilled(len(items), path=str(path))


def _blobs(items: Sequence[Any], start: int, end: int) -> Iterator[bytes]:
    blob = pickle.dumps(list(items[start:end]), protocol=pickle.HIGHEST_PROTOCOL)
    if len(blob) > CHUNK_BYTES and end - start > 1:
        middle = (start + end) // 2
        yield from _blobs(items, start, middle)
        yield from _blobs(items, middle, end)
    else:
        yield blob


@dataclass(frozen=True)
class Scored:
    """What :func:`score_cases` answers: scores by scorer, the result texts per case, and
    the signatures of the engines the worker used (``{"embedder": ...}``)."""

    scores: dict[str, list[float]]
    texts: Spilled[Texts]
    engines: dict[str, str] = field(default_factory=dict)


# -- reading a dataset --------------------------------------------------------------------
def read_cases(
    ctx: TaskContext,
    source: dict[str, Any],
    db_path: str,
    dataset: str,
    model: str,
    max_cases: int,
    path: str,
) -> Spilled[Case]:
    """The run's cases: from ``source`` (``{"file": path}``, ``{"tenant": t}`` for the
    cases stored with a spec in the database at ``db_path``, or ``{"error": why}``), each
    ideal parsed as the runtime parses it, answered by ``model`` when it is built in.

    Raises :class:`EvalFailed` with the run's reason for a dataset or a replayed output
    the runtime would refuse."""
    try:
        rows = _rows(source, db_path, dataset, max_cases)
        ideals = [parse_cell(r["ideal"]) for r in rows]
    except (SpicepodError, InvalidValue) as exc:
        raise EvalFailed(f"dataset '{dataset}': {exc}") from None
    answers: list[Output | None] = [None] * len(rows)
    if model in BUILTIN_MODELS:
        try:
            answers = list(builtin_answers(model, rows, ideals[0] if ideals else ""))
        except InvalidValue as exc:
            raise EvalFailed(f"model '{model}': an output cell is not usable: {exc}") from None
    cases = [(r["input"], ideal, a) for r, ideal, a in zip(rows, ideals, answers, strict=True)]
    return spill(cases, Path(path))


def _rows(
    source: dict[str, Any], db_path: str, dataset: str, max_cases: int
) -> list[dict[str, Any]]:
    if "error" in source:
        raise SpicepodError(source["error"])
    if "file" in source:
        return read_rows(Path(source["file"]), max_cases)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT rows FROM spice_datasets WHERE tenant = ? AND name = ?",
            (source["tenant"], dataset),
        ).fetchone()
    finally:
        conn.close()
    if row is None or row[0] is None:
        raise SpicepodError("its uploaded cases are gone (the eval spec was replaced)")
    return check_rows(jsonio.decode(row[0]), dataset, max_cases)


# -- scoring ------------------------------------------------------------------------------
def score_cases(
    ctx: TaskContext,
    cases: Spilled[Case],
    outputs: list[Output] | None,
    builtin: list[str],
    embedding: list[str],
    texts_path: str,
) -> Scored:
    """Scores of the built-in scorers ``builtin`` (in chunks of :data:`SCORE_CHUNK`
    cases, reporting progress) and of the embedding scorers ``embedding`` (every one is
    the worker's embedder, so it is computed once), with the model's ``outputs`` (None:
    the built-in model's answers in the cases). Raises :class:`EvalFailed` naming the
    scorer that failed."""
    loaded = cases.load()
    out = Column.of(outputs if outputs is not None else [c[2] for c in loaded])
    ideal = Column.of([c[1] for c in loaded])
    total = len(loaded)
    scores: dict[str, list[float]] = {name: [] for name in builtin}
    for start in range(0, total if builtin else 0, SCORE_CHUNK):
        end = min(total, start + SCORE_CHUNK)
        out_part, ideal_part = Column.of(out.values[start:end]), Column.of(ideal.values[start:end])
        for name in builtin:
            try:
                scores[name] += score_batch(name, out_part, ideal_part)
            except PairTooLong as exc:
                case = f" on case {start + exc.row + 1}" if exc.row is not None else ""
                raise EvalFailed(f"scorer '{name}' failed{case}: {exc}") from None
            except (EngineError, LookupError, ValueError) as exc:
                raise EvalFailed(f"scorer '{name}' failed: {exc}") from None
        ctx.progress(end, total)
    engines: dict[str, str] = {}
    if embedding:
        embedder = ctx.engine("embedder", Embedder)
        try:
            values = embedding_scores_now(embedder, out, ideal)
        except (EngineError, LookupError, ValueError) as exc:
            raise EvalFailed(f"scorer '{embedding[0]}' failed: {exc}") from None
        scores.update((name, values) for name in embedding)
        engines["embedder"] = str(embedder.signature)
    texts = [
        (cell_text(c[0]), cell_text(to_json(o)), cell_text(to_json(i)))
        for c, o, i in zip(loaded, out.values, ideal.values, strict=True)
    ]
    return Scored(scores, spill(texts, Path(texts_path)), engines)


# -- SQL ------------------------------------------------------------------------------------
def run_sql(
    ctx: TaskContext,
    db_path: str,
    tenant: str,
    text: str,
    timeout: float,
    max_rows: int,
    max_bytes: int,
    memory_mb: int,
) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of one read-only query (:func:`sql.run_query`: its timer stops it
    at ``timeout``, its memory pool at half ``memory_mb``; the task's limits are the
    backstop)."""
    return sql.run_query(
        Path(db_path),
        tenant,
        text,
        timeout=timeout,
        max_rows=max_rows,
        max_bytes=max_bytes,
        memory_mb=memory_mb,
    )
