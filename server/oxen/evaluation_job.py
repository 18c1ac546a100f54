"""The evaluation job: read the pinned source file, fill ``target_column``, commit.

Steps, each resumable after a crash (the job is requeued and starts again from the
pinned source commit; the judge cache makes repeated generations free):

1. read the table's shape and render the prompt row by row, ``batch_size`` rows a step,
   on the runner's thread pool (``check_cancelled`` every step);
2. ``text``: one generation per row, ``[oxen] concurrency`` in flight; ``embeddings``:
   the embedder encodes ``embed_chunk_rows`` rows per call in the thread pool;
   progress is committed after every step;
3. the results column is stored as a parquet blob (``GET .../results``), then, unless the
   run is a sample or ``auto_commit`` is false, the file with the column added is written
   beside the blob store, stored as a blob (fsynced) and only then committed, so no
   branch ever names a blob that is not on disk. The commit names the head it was built
   from (``expected_parent``): a target branch that moved meanwhile gets the result on
   top, or, if the other commit changed the same file, the evaluation fails with
   ``conflict_target_branch`` set and the other commit stays.

A generation error on any row fails the evaluation with ``error_message`` naming the
first failing row; nothing is committed (a half-filled column is never written).
"""

from __future__ import annotations

import asyncio
import json
import os
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
from ..jobs import BlockingContext, Job, JobFailed
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
    await job.progress(0, total)

    if req.type == "embeddings":
        values = await _embed(provider, job, table, prompt, total)
    else:
        values, usage = await _generate(provider, job, req, table, prompt, total)
        await provider.records.update(job.id, prompt_tokens=usage[0], completion_tokens=usage[1])

    results = await job.run_blocking(
        lambda ctx: _store_results(provider, req.target_column, values)
    )
    await provider.records.update(job.id, results_blob=results)
    if req.is_sample or not req.auto_commit:
        await job.progress(total, total)
        return
    await _commit(provider, job, row, req, table, values, repo)


# -- text ------------------------------------------------------------------------------


async def _generate(
    provider: OxenProvider,
    job: Job,
    req: EvalRequest,
    table: tables.Table,
    prompt: Any,
    total: int,
) -> tuple[pa.Array, tuple[int, int]]:
    judge = provider.ctx.engine("judge")
    limit = asyncio.Semaphore(max(1, provider.options.concurrency))
    batches = _prompt_batches(table, prompt, req.batch_size, total)
    outputs: list[str] = []
    usage = [0, 0]

    async def one(index: int, text: str) -> str:
        async with limit:
            try:
                gen = await judge.generate([{"role": "user", "content": text}], model=req.model)
            except (EngineError, UnknownModel) as e:
                raise JobFailed(
                    f"row {index} (0-based) could not be generated with model {req.model}:"
                    f" {e}; nothing was committed, fix the cause and submit again"
                ) from None
        usage[0] += gen.prompt_tokens
        usage[1] += gen.completion_tokens
        return gen.text

    while True:
        batch = await job.run_blocking(lambda ctx: _next(batches, ctx))
        if batch is None:
            break
        start = len(outputs)
        tasks = [asyncio.ensure_future(one(start + i, t)) for i, t in enumerate(batch)]
        try:
            outputs.extend(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        await job.progress(len(outputs), total)
    return pa.array(outputs, type=pa.string()), (usage[0], usage[1])


def _prompt_batches(table: tables.Table, prompt: Any, size: int, total: int) -> Iterator[list[str]]:
    """Rendered prompts, ``size`` rows at a time, for the first ``total`` rows."""
    done = 0
    # A prompt without placeholders still needs the row count of each batch.
    columns = list(prompt.columns) or list(table.columns[:1])
    for batch in tables.iter_batches(table, columns, size):
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
) -> pa.Array:
    embedder = provider.ctx.engine("embedder")
    loop = asyncio.get_running_loop()
    options = provider.options

    def work(ctx: BlockingContext) -> pa.Array:
        # One preallocated float32 matrix filled in place (no list of parts, no concat):
        # rows x dim x 4 bytes is the only copy, and Arrow wraps it without copying.
        out: np.ndarray | None = None
        done = 0
        for texts in _prompt_batches(table, prompt, options.embed_chunk_rows, total):
            ctx.check_cancelled()
            vectors = np.asarray(
                embedder.encode(texts, batch_size=options.embed_batch_size), dtype=np.float32
            )
            if out is None:
                out = np.empty((total, vectors.shape[1]), dtype=np.float32)
            out[done : done + len(texts)] = vectors
            done += len(texts)
            asyncio.run_coroutine_threadsafe(job.progress(done, total), loop).result(60)
        dim = out.shape[1] if out is not None else int(embedder.dimension)
        flat = out[:done].reshape(-1) if out is not None else np.empty(0, np.float32)
        offsets = np.arange(0, done * dim + 1, dim, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32()))

    return await job.run_blocking(work)


# -- results and the commit ------------------------------------------------------------


def _store_results(provider: OxenProvider, column: str, values: pa.Array) -> str:
    """The results column alone, as a parquet blob (what GET .../results pages through)."""
    blobs = provider.store.blobs
    fd, name = tempfile.mkstemp(dir=blobs.tmp_dir, prefix="results-", suffix=".parquet")
    os.close(fd)
    tmp = Path(name)
    try:
        pq.write_table(pa.table({column: values}), tmp)
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
    values: pa.Array,
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
