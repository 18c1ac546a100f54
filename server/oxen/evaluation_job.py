"""The evaluation job: read the pinned source file, fill ``target_column``, commit.

Steps, column-wise and in bounded memory (one step's rows, whatever the row count):

1. the source is read in record batches of ``batch_size`` rows (text) or
   ``embed_chunk_rows`` rows (embeddings) and the prompt rendered per batch, on the
   runner's thread pool;
2. ``text``: one generation per row, ``[oxen] concurrency`` in flight; ``embeddings``:
   one ``encode`` call per batch (``embed_batch_size`` texts per forward pass) in the
   thread pool, progress recorded with ``ctx.progress`` (which also checks for a cancel);
3. each step's results are written as one Arrow IPC part file under
   ``<data>/oxen/work/<evaluation id>/part-<first row>.arrow`` (temporary name, then
   rename: a part on disk is whole), with the step's token counts in its metadata;
4. the results column alone is streamed part by part into a parquet blob
   (``GET .../results``); then, unless the run is a sample or ``auto_commit`` is false,
   the file with the column added is written by streaming the source's batches beside
   the parts (8,192 rows a batch), stored as a blob (fsynced) and only then committed,
   so no branch ever names a blob that is not on disk. The commit names the head it was
   built from (``expected_parent``): a target branch that moved meanwhile gets the
   result on top, or, if the other commit changed the same file, the evaluation fails
   with ``conflict_target_branch`` set and the other commit stays.

Restart: a job found running after a crash is requeued; it keeps the whole parts on disk
(rows 0..n-1, token counts included) and goes on from row n, so at most one step
(``batch_size`` rows) is generated twice. The parts are removed when the evaluation
ends; a cancelled or interrupted run's parts are swept at the next start-up or reset.

A generation error on any row fails the evaluation with ``error_message`` naming the
first failing row; nothing is committed (a half-filled column is never written).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from evaldock.engines.errors import EngineError
from evaldock.engines.judge.base import UnknownModel

from ..db import utcnow
from ..jobs import BlockingContext, Job, JobCancelled, JobFailed
from . import tables
from .errors import CommitConflict, OxenStoreError
from .evaluations import EvalRequest
from .prompts import compile_prompt

if TYPE_CHECKING:
    from .provider import OxenProvider


async def run_evaluation(provider: OxenProvider, job: Job) -> None:
    row = await provider.records.get(job.id)
    if row is None:
        raise JobFailed("the evaluation's record is gone (deleted while queued)")
    if row["closing_commit"]:
        return  # committed before a crash cut the job off: nothing left to do
    req = EvalRequest.from_json(row["request"])
    store = provider.store
    repo = await store.repo_by_id(row["repo_id"])
    if repo is None:
        raise JobFailed("the repository was deleted while the evaluation was queued")
    entry = await store.file_blob(repo, row["source_commit"], row["source_path"])
    assert entry.blob_key is not None
    blob_path = store.blobs.path(entry.blob_key)
    fmt = tables.table_format(row["source_path"])
    try:
        table = await job.run_blocking(lambda ctx: tables.read_table(blob_path, fmt))
    except tables.TableError as e:
        raise JobFailed(str(e)) from None
    prompt = compile_prompt(req.prompt, table.columns)
    total = min(table.num_rows, req.sample_count) if req.is_sample else table.num_rows
    work = work_dir(provider, job.id)
    try:
        if req.type == "embeddings":
            values = await _embed(provider, job, table, prompt, total, work)
        else:
            values, usage = await _generate(provider, job, req, table, prompt, total, work)
            await provider.records.update(
                job.id, prompt_tokens=usage[0], completion_tokens=usage[1]
            )
        results = await job.run_blocking(
            lambda ctx: _store_results(provider, req.target_column, values)
        )
        await provider.records.update(job.id, results_blob=results)
        if req.is_sample or not req.auto_commit:
            await job.progress(total, total)
        else:
            await _commit(provider, job, row, req, table, values, repo)
    except (JobCancelled, asyncio.CancelledError):
        # A cancel or a shutdown: the parts stay for a requeued run (the start-up sweep
        # removes them once the job is over).
        raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)


def work_dir(provider: OxenProvider, job_id: str) -> Path:
    """Where an evaluation's results column is written in parts (one per step)."""
    return provider.settings.data_dir / "oxen" / "work" / job_id


# -- text ------------------------------------------------------------------------------


async def _generate(
    provider: OxenProvider,
    job: Job,
    req: EvalRequest,
    table: tables.Table,
    prompt: Any,
    total: int,
    work: Path,
) -> tuple[tables.ColumnFile, tuple[int, int]]:
    judge = provider.ctx.engine("judge")
    limit = asyncio.Semaphore(max(1, provider.options.concurrency))
    writer = tables.ColumnWriter(work, pa.string())
    # Rows done before a restart are kept (each part is whole), with their token counts.
    done, metas = await job.run_blocking(lambda ctx: writer.resume())
    usage = [
        sum(int(m.get(b"prompt_tokens", b"0")) for m in metas),
        sum(int(m.get(b"completion_tokens", b"0")) for m in metas),
    ]
    await job.progress(done, total)
    batches = _prompt_batches(table, prompt, req.batch_size, total, start=done)

    async def one(index: int, text: str) -> Any:
        async with limit:
            try:
                return await judge.generate([{"role": "user", "content": text}], model=req.model)
            except (EngineError, UnknownModel) as e:
                raise JobFailed(
                    f"row {index} (0-based) could not be generated with model {req.model}:"
                    f" {e}; nothing was committed, fix the cause and submit again"
                ) from None

    while True:
        batch = await job.run_blocking(lambda ctx: _next(batches, ctx))
        if batch is None:
            break
        tasks = [asyncio.ensure_future(one(done + i, t)) for i, t in enumerate(batch)]
        try:
            gens = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        step = (sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens))
        usage[0] += step[0]
        usage[1] += step[1]
        texts = pa.array([g.text for g in gens], type=pa.string())
        meta = {"prompt_tokens": str(step[0]), "completion_tokens": str(step[1])}
        await job.run_blocking(functools.partial(_write_part, writer, done, texts, meta))
        done += len(batch)
        await job.progress(done, total)
    return writer.column(done), (usage[0], usage[1])


def _write_part(
    writer: tables.ColumnWriter,
    start: int,
    values: pa.Array,
    meta: dict[str, str],
    ctx: BlockingContext,
) -> None:
    writer.write(start, values, meta)


def _prompt_batches(
    table: tables.Table, prompt: Any, size: int, total: int, start: int = 0
) -> Iterator[list[str]]:
    """Rendered prompts, ``size`` rows at a time, for rows ``start`` to ``total``
    (rows before ``start`` are read but not rendered)."""
    done = 0
    # A prompt without placeholders still needs the row count of each batch.
    columns = list(prompt.columns) or list(table.columns[:1])
    for batch in tables.iter_batches(table, columns, size):
        n = len(next(iter(batch.values()))) if batch else 0
        if done + n <= start:
            done += n
            continue
        if done < start:
            batch = {c: v[start - done :] for c, v in batch.items()}
            done = start
        rendered = prompt.render_batch(batch)[: total - done]
        done += len(rendered)
        if rendered:
            yield rendered
        if done >= total:
            return


def _next(batches: Iterator[list[str]], ctx: BlockingContext) -> list[str] | None:
    ctx.check_cancelled()
    return next(batches, None)


# -- embeddings ------------------------------------------------------------------------


async def _embed(
    provider: OxenProvider,
    job: Job,
    table: tables.Table,
    prompt: Any,
    total: int,
    work: Path,
) -> tables.ColumnFile:
    embedder = provider.ctx.engine("embedder")
    options = provider.options

    def run(ctx: BlockingContext) -> tables.ColumnFile:
        # One part file per step: memory holds one step's texts and vectors (4,096 x 384
        # float32 = 6 MB), whatever the row count.
        writer = tables.ColumnWriter(work, tables.EMBEDDING_TYPE)
        done, _ = writer.resume()
        ctx.progress(done, total)
        for texts in _prompt_batches(table, prompt, options.embed_chunk_rows, total, done):
            vectors = np.asarray(
                embedder.encode(texts, batch_size=options.embed_batch_size), dtype=np.float32
            )
            writer.write(done, _embedding_array(vectors))
            done += len(texts)
            ctx.progress(done, total)  # also checks for a cancel
        return writer.column(done)

    return await job.run_blocking(run)


def _embedding_array(vectors: np.ndarray) -> pa.Array:
    """``list<float32>`` over the matrix's own buffer (no copy)."""
    rows, dim = vectors.shape
    offsets = np.arange(0, rows * dim + 1, dim, dtype=np.int32)
    flat = np.ascontiguousarray(vectors).reshape(-1)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32()))


# -- results and the commit ------------------------------------------------------------


def _store_results(provider: OxenProvider, column: str, values: tables.ColumnFile) -> str:
    """The results column alone, as a parquet blob (what GET .../results pages through),
    written part by part."""
    blobs = provider.store.blobs
    fd, name = tempfile.mkstemp(dir=blobs.tmp_dir, prefix="results-", suffix=".parquet")
    os.close(fd)
    tmp = Path(name)
    schema = pa.schema([pa.field(column, values.type)])
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in values.arrays():
                writer.write_batch(pa.record_batch([part], schema=schema))
            if not values.parts:
                writer.write_table(schema.empty_table())
        return blobs.put_file(tmp).key
    finally:
        tmp.unlink(missing_ok=True)


async def _target_table(
    provider: OxenProvider, job: Job, repo: Any, base: str, path: str, source: tables.Table
) -> tables.Table:
    """The table the column is added to: the target path as it is at ``base`` (so a
    second evaluation into the same branch keeps the first one's column), else the
    source."""
    store = provider.store
    try:
        entry = await store.file_blob(repo, base, path)
    except OxenStoreError:
        return source  # not on the target branch yet: the source with the column
    assert entry.blob_key is not None
    blob_path = store.blobs.path(entry.blob_key)
    if blob_path == source.path:
        return source
    try:
        return await job.run_blocking(
            lambda ctx: tables.read_table(blob_path, tables.table_format(path))
        )
    except tables.TableError as e:
        raise JobFailed(f"{path} at {base}: {e}") from None


async def _commit(
    provider: OxenProvider,
    job: Job,
    row: dict[str, Any],
    req: EvalRequest,
    table: tables.Table,
    values: tables.ColumnFile,
    repo: Any,
) -> None:
    store = provider.store
    source_branch = row["source_version"]
    branch = req.target_branch or source_branch
    target_path = req.target_path or row["source_path"]
    # The head this result is built on: the source commit when writing back to the
    # source branch; else the target branch's head now (created from the source).
    if branch == source_branch:
        base = row["source_commit"]
    else:
        created, _ = await store.create_branch(
            repo, branch, commit_id=row["source_commit"], exist_ok=True
        )
        base = created.commit_id
    base_table = await _target_table(provider, job, repo, base, target_path, table)
    try:
        filled = tables.add_column(base_table, req.target_column, values, overwrite=req.overwrite)
    except tables.TableError as e:
        raise JobFailed(f"{target_path} on {branch}: {e}") from None
    fmt = tables.table_format(target_path)

    def write(ctx: BlockingContext) -> Any:
        fd, name = tempfile.mkstemp(dir=store.blobs.tmp_dir, prefix="eval-", suffix="." + fmt)
        os.close(fd)
        tmp = Path(name)
        try:
            tables.write_table(filled, tmp, fmt)
            ctx.check_cancelled()
            return store.blobs.put_file(tmp)
        finally:
            tmp.unlink(missing_ok=True)

    blob = await job.run_blocking(write)
    await provider.records.update(job.id, commit_started_at=utcnow())
    try:
        commit = await store.commit_files(
            repo,
            branch,
            {target_path: blob},
            provider.options.commit_author,
            provider.options.commit_email,
            req.commit_message,
            expected_parent=base,
        )
    except CommitConflict as e:
        await provider.records.update(job.id, conflict_target_branch=branch)
        raise JobFailed(str(e)) from None
    except OxenStoreError as e:
        raise JobFailed(str(e)) from None
    async with provider.db.transaction() as tx:
        await provider.records.update(job.id, tx, closing_commit=json.dumps(commit.to_json()))
        await job.progress(len(values), len(values), conn=tx)
