"""Oxen's task functions: everything that grows with a file, run in worker processes.

Each is a module-level ``fn(ctx, *args)`` of paths, ids and small values, run by the
worker pool under the task limits (``[jobs] task_wall_seconds``, ``task_cpu_seconds``,
``task_memory_mb``): a parquet bomb or a pathological CSV costs a worker, which is killed
and replaced, never the API process. Answers are small (a table's shape, one page of
rows, a blob's key); anything bigger is written to a file and its path returned.

- requests (the request lane, ``BackendContext.task``): :func:`table_info`,
  :func:`page_rows`, :func:`results_csv`, :func:`store_upload`, :func:`store_texts`
  (blobs are classified where they are written), :func:`collect_blobs`,
  :func:`remove_folders`, :func:`tree_nodes`, :func:`tree_hash`, :func:`versions_tar`,
  :func:`blob_range` (a folder download: Oxen's Merkle tree transport);
- an evaluation's steps (the job lane, ``Job.run_task``): :func:`render_prompts` and
  :func:`read_prompts` / :func:`write_text_part` around the judge's generations (which
  stay in the API process: they are HTTP calls), :func:`embed_rows` (the embedder lives
  here, never in the API process; :func:`embedder_identity` names it for a request),
  :func:`write_results` and :func:`write_back`.

Parts on disk are the resume points exactly as before the split: each step's results are
one Arrow IPC part under ``<data>/oxen/work/<evaluation id>/`` written whole (temporary
name, then rename), so a SIGKILLed server or worker restarts from the last whole part.
This module imports neither the provider nor the backend.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import gzip
import math
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from evaldock.engines.protocols import Embedder

from ..compute import TaskContext
from . import merkle, tables
from .blobs import Blob, BlobStore
from .filetypes import FileType
from .merkle import TreeFile
from .prompts import Prompt, compile_prompt
from .uploads import Upload, parse_upload

# Beside the results parts: a text evaluation's rendered prompts, one part per step
# (batch_size rows), read back one step at a time.
PROMPTS_FOLDER = "prompts"


def column_type(kind: str) -> pa.DataType:
    """The Arrow type of an evaluation's results column (``text`` or ``embeddings``)."""
    return tables.EMBEDDING_TYPE if kind == "embeddings" else pa.string()


# -- a table's shape and pages of its rows (requests) ----------------------------------


@dataclass(frozen=True)
class TableInfo:
    """What a request needs of a table: its columns, row count and column types."""

    columns: tuple[str, ...]
    num_rows: int
    dtypes: tuple[str, ...]  # Arrow's name of each column's type (data_frames' schema)


def _info(table: tables.Table) -> TableInfo:
    return TableInfo(table.columns, table.num_rows, tuple(str(f.type) for f in table.schema))


@contextlib.contextmanager
def _named(path: str, label: str) -> Iterator[None]:
    """A table error as a plain :class:`~.tables.TableError` that names ``label`` (the
    repository's path), never the blob file the reader opened (a content hash). Plain,
    so it crosses back to the API process whatever its class holds (a refusal carries
    the bound's own exception, whose constructor does not take a message)."""
    try:
        yield
    except tables.TableError as e:
        blob, text = Path(path).name, str(e)
        text = text.replace(blob, label) if blob in text else f"{label}: {text}"
        raise tables.TableError(text) from None


def table_info(ctx: TaskContext, path: str, fmt: str, label: str) -> TableInfo:
    """Columns and row count of a data file (one streaming pass for text formats)."""
    with _named(path, label):
        return _info(tables.read_table(Path(path), fmt))


class PageTooLarge(tables.TableError):
    """One page of rows is larger than ``[oxen] max_page_mb``: a page crosses to the API
    process and is rendered there, so its size is bounded like any other answer."""

    def __init__(self, megabytes: float, limit: int, size: int) -> None:
        super().__init__(
            f"this page of {size} rows is over {limit} MB ({megabytes:.0f} MB or more); ask"
            f" for a smaller page_size, or raise [oxen] max_page_mb"
        )


@dataclass(frozen=True)
class RowsPage:
    info: TableInfo
    rows: list[dict[str, Any]]


def page_rows(
    ctx: TaskContext, path: str, fmt: str, label: str, page: int, size: int, max_mb: int
) -> RowsPage:
    """Page ``page`` (1-based) of ``size`` rows, as JSON-ready dicts; refused once its
    values pass ``max_mb`` (counted as they are made)."""
    with _named(path, label):
        return _page_rows(path, fmt, page, size, max_mb)


def _page_rows(path: str, fmt: str, page: int, size: int, max_mb: int) -> RowsPage:
    table = tables.read_table(Path(path), fmt)
    info = _info(table)
    skip = (page - 1) * size
    if skip >= table.num_rows:
        return RowsPage(info, [])
    budget = _Budget(max_mb, size)
    # Batches of page size: the wanted page is one whole batch, earlier ones are skipped.
    for i, batch in enumerate(tables.iter_batches(table, list(table.columns), size)):
        if i == page - 1:
            n = len(next(iter(batch.values()))) if batch else 0
            rows = [{c: budget.safe(batch[c][r]) for c in table.columns} for r in range(n)]
            return RowsPage(info, rows)
    return RowsPage(info, [])


class _Budget:
    """JSON-safe values, with a running estimate of their encoded size."""

    def __init__(self, max_mb: int, size: int) -> None:
        self.left = max_mb * 1024 * 1024
        self.max_mb = max_mb
        self.size = size

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            used = self.max_mb + (-self.left) / (1024 * 1024)
            raise PageTooLarge(used, self.max_mb, self.size)

    def safe(self, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            self.spend(5)
            return value
        if isinstance(value, str):
            self.spend(len(value) + 2)
            return value
        if isinstance(value, int):
            self.spend(20)
            return value
        if isinstance(value, float):
            self.spend(24)
            return value if math.isfinite(value) else None
        if isinstance(value, bytes):
            self.spend(len(value) * 4 // 3 + 4)
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, (list, tuple)):
            self.spend(2)
            return [self.safe(v) for v in value]
        if isinstance(value, Mapping):
            self.spend(2)
            return {str(k): self.safe(v) for k, v in value.items()}
        text = str(value)
        self.spend(len(text) + 2)
        return text


def results_csv(ctx: TaskContext, path: str, folder: str) -> str:
    """An evaluation's results parquet as CSV (``row`` first), written to a new file in
    ``folder``: the response streams it from disk (500,000 embeddings are ~1.7 GB of CSV)."""
    with _named(path, "the results"):
        table = tables.read_table(Path(path), "parquet")
    fd, name = tempfile.mkstemp(dir=folder, prefix="results-", suffix=".csv")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            w = csv.writer(out, lineterminator="\n")
            w.writerow(["row", *table.columns])
            row = 0
            for batch in tables.iter_batches(table, list(table.columns)):
                n = len(next(iter(batch.values()))) if batch else 0
                for r in range(n):
                    w.writerow([row, *(tables.cell_text(batch[c][r]) for c in table.columns)])
                    row += 1
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return name


def zip_files(ctx: TaskContext, files: list[tuple[str, str, int]], folder: str) -> str:
    """``files`` (name in the archive, blob file, size) deflated into a new zip in
    ``folder``, one 1 MiB chunk at a time (``RemoteRepo.download_zip``); the response
    streams it from disk and removes it. Entries are 0644, as oxen-server writes them."""
    fd, name = tempfile.mkstemp(dir=folder, prefix="export-", suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for arcname, blob, size in files:
                info = zipfile.ZipInfo(arcname)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o100644 << 16
                info.file_size = size  # picks ZIP64 up front for a file over 2 GiB
                with open(blob, "rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return name


# -- Merkle tree transport (requests: RemoteRepo.download of a folder) -----------------


def tree_nodes(
    ctx: TaskContext,
    folders: list[tuple[str, list[TreeFile], dict[str, int], int]],
    folder: str,
) -> tuple[str, int]:
    """Each (folder name, its files, commit rank, depth) built into Oxen's tree nodes
    (:mod:`.merkle`) down to depth folder levels (-1 = all), written as one tar.gz in
    ``folder`` (a node two folders share goes once); returns its path and how many
    nodes it holds."""
    fd, name = tempfile.mkstemp(dir=folder, prefix="tree-", suffix=".tar.gz")
    try:
        built: list[tuple[int, merkle.Node]] = []
        for folder_name, files, rank, depth in folders:
            _, nodes = merkle.TreeBuilder(files, rank).build(folder_name)
            built += [(0, n) for n in merkle.iter_nodes(nodes, depth)]
        with os.fdopen(fd, "wb") as out:
            count = merkle.write_tar_gz(merkle.iter_nodes(built, -1), out)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return name, count


def tree_hash(ctx: TaskContext, files: list[TreeFile], name: str) -> str:
    """The hash of the folder node ``name`` holding ``files`` (unpadded hex)."""
    return format(merkle.folder_hash(files, name), "x")


class HashListInvalid(ValueError):
    """A ``QUERY .../versions`` body that is not a gzipped list of hashes (Oxen's 400)."""


def read_hashes(ctx: TaskContext, body: str, limit: int) -> list[str]:
    """The content hashes of a gzipped ``QUERY .../versions`` body, one a line (at most
    ``limit``: each is at most 32 hex digits, so decompression stops at 33 bytes each)."""
    cap = limit * 33 + 1
    try:
        with gzip.open(body, "rb") as f:
            text = f.read(cap + 1)
    except (OSError, EOFError) as e:
        raise HashListInvalid(f"the body is not gzip ({e}); send the hashes gzipped") from None
    if len(text) > cap:
        raise HashListInvalid(f"more than {limit} hashes; ask for fewer files at a time")
    hashes = text.decode("ascii", "replace").split()
    bad = next((h for h in hashes if not _is_hash(h)), None)
    if bad is not None:
        raise HashListInvalid(f"{bad[:40]!r} is not a content hash (1 to 32 hex digits)")
    return hashes


def _is_hash(value: str) -> bool:
    return 0 < len(value) <= 32 and all(c in "0123456789abcdef" for c in value)


def versions_tar(ctx: TaskContext, files: list[tuple[str, str]], folder: str) -> str:
    """``files`` ((content hash, blob file)) as one tar.gz in their order, each entry named
    by its hash (the client unpacks the n-th entry to the n-th path it asked for)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix="versions-", suffix=".tar.gz")
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar,
        ):
            for content_hash, blob in files:
                info = tar.gettarinfo(blob, arcname=content_hash)
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                with open(blob, "rb") as src:
                    tar.addfile(info, src)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return name


def blob_range(ctx: TaskContext, blob: str, start: int, size: int, folder: str) -> str:
    """Bytes ``[start, start + size)`` of a blob copied to a new file in ``folder`` (the
    client's ``GET .../chunk`` for files over its 10 MiB stream segment)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix="chunk-")
    try:
        with open(blob, "rb") as src, os.fdopen(fd, "wb") as dst:
            src.seek(start)
            left = size
            while left > 0 and (data := src.read(min(left, 1 << 20))):
                dst.write(data)
                left -= len(data)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return name


# -- blobs (requests) ------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A file stored as a blob, with the type Oxen shows for it (classified from its
    first 4 KiB where it was written, so the commit reads nothing again)."""

    blob: Blob
    type: FileType


@dataclass(frozen=True)
class StoredUpload:
    upload: Upload
    types: dict[str, FileType]  # by file name (the last of two parts with one name wins)


def store_upload(ctx: TaskContext, data_dir: str, body: str, content_type: str) -> StoredUpload:
    """Parse an upload's multipart body (streamed to ``body`` by the pipeline) and store
    each file part as a blob, hashed as it is read (~1 GB/s; memory: one 1 MiB chunk)."""
    blobs = BlobStore(Path(data_dir))
    upload = parse_upload(Path(body), content_type, blobs)
    types: dict[str, FileType] = {}
    for name, blob in upload.files:
        types.update(blobs.classify({name: blob.key}))
    return StoredUpload(upload, types)


def store_texts(ctx: TaskContext, data_dir: str, files: list[tuple[str, str]]) -> list[Stored]:
    """Store each (path, text) as a blob (UTF-8): a new repository's ``files[]``."""
    blobs = BlobStore(Path(data_dir))
    out = []
    for path, text in files:
        blob = blobs.put_bytes(text.encode("utf-8"))
        out.append(Stored(blob, blobs.classify({path: blob.key})[path]))
    return out


def collect_blobs(ctx: TaskContext, data_dir: str, referenced: list[str], min_age_s: float) -> int:
    """Remove the blobs no commit refers to (one stat per blob on disk)."""
    return BlobStore(Path(data_dir)).collect(set(referenced), min_age_s)


def remove_folders(ctx: TaskContext, folders: list[str]) -> None:
    """Remove evaluations' work folders (one file per step, thousands for a large run)."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


# -- an evaluation's steps (jobs) ------------------------------------------------------


@dataclass(frozen=True)
class PromptSource:
    """What an evaluation step reads: the pinned file, its format, the prompt, and how
    many rows (``sample``: the first rows only; None: all)."""

    path: str
    format: str
    label: str  # the path in the repository, for errors
    prompt: str
    sample: int | None = None

    def named(self) -> contextlib.AbstractContextManager[None]:
        return _named(self.path, self.label)

    def open(self) -> tuple[tables.Table, Prompt, int]:
        table = tables.read_table(Path(self.path), self.format)
        total = table.num_rows if self.sample is None else min(table.num_rows, self.sample)
        return table, compile_prompt(self.prompt, table.columns), total


def _prompt_batches(
    table: tables.Table, prompt: Prompt, size: int, total: int, start: int = 0
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


@dataclass(frozen=True)
class Prompts:
    """Where a text evaluation stands: rows already generated (whole parts on disk), the
    rows it will have, the token counts of the rows done, and the rendered prompts of
    the rows left, one part file per step."""

    done: int
    total: int
    prompt_tokens: int
    completion_tokens: int
    parts: list[str]


def render_prompts(ctx: TaskContext, source: PromptSource, work: str, batch_size: int) -> Prompts:
    """Resume from the results parts in ``work``, then render the prompts of the rows
    left into ``work/prompts/`` in parts of ``batch_size`` rows (one per step)."""
    with source.named():
        return _render_prompts(source, work, batch_size)


def _render_prompts(source: PromptSource, work: str, batch_size: int) -> Prompts:
    table, prompt, total = source.open()
    results = tables.ColumnWriter(Path(work), pa.string())
    # Rows done before a restart are kept (each part is whole), with their token counts.
    done, metas = results.resume()
    folder = Path(work) / PROMPTS_FOLDER
    shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt's, from an older start
    writer = tables.ColumnWriter(folder, pa.string())
    rendered = done
    for batch in _prompt_batches(table, prompt, batch_size, total, start=done):
        writer.write(rendered, pa.array(batch, type=pa.string()))
        rendered += len(batch)
    return Prompts(
        done,
        total,
        sum(int(m.get(b"prompt_tokens", b"0")) for m in metas),
        sum(int(m.get(b"completion_tokens", b"0")) for m in metas),
        [str(p) for p in writer.column(rendered - done).parts],
    )


def read_prompts(ctx: TaskContext, part: str) -> list[str]:
    """One step's rendered prompts."""
    out: list[str] = []
    for array in tables.ColumnFile([Path(part)], pa.string(), 0).arrays():
        out.extend(array.to_pylist())
    return out


def write_text_part(
    ctx: TaskContext, work: str, start: int, texts: list[str], meta: dict[str, str]
) -> None:
    """One step's generations as a whole part (with the step's token counts)."""
    tables.ColumnWriter(Path(work), pa.string()).write(start, pa.array(texts, pa.string()), meta)


def embed_rows(
    ctx: TaskContext, source: PromptSource, work: str, chunk_rows: int, batch_size: int
) -> int:
    """Embed the rows not yet in ``work``'s parts, ``chunk_rows`` per step (one
    ``encode`` call of ``batch_size`` texts per forward pass, then one part and the
    progress); the rows done in all."""
    embedder = ctx.engine("embedder", Embedder)
    with source.named():
        return _embed_rows(ctx, embedder, source, work, chunk_rows, batch_size)


def _embed_rows(
    ctx: TaskContext,
    embedder: Embedder,
    source: PromptSource,
    work: str,
    chunk_rows: int,
    batch_size: int,
) -> int:
    table, prompt, total = source.open()
    # One part file per step: memory holds one step's texts and vectors (4,096 x 384
    # float32 = 6 MB) and the previous step's while it is written, whatever the row count.
    writer = tables.ColumnWriter(Path(work), tables.EMBEDDING_TYPE)
    done, _ = writer.resume()
    ctx.progress(done, total)
    # The part write and the progress message of one step run beside the next step's
    # encode (the model releases the GIL), so the model never waits on the disk or the
    # API process: ~1-2 s of 50,000 rows' writes off the critical path.
    with ThreadPoolExecutor(1, thread_name_prefix="oxen-parts") as io:
        pending: Future[None] | None = None
        for texts in _prompt_batches(table, prompt, chunk_rows, total, done):
            vectors = np.asarray(embedder.encode(texts, batch_size=batch_size), dtype=np.float32)
            if pending is not None:
                pending.result()  # one step in flight at most: memory stays flat
            pending = io.submit(_store_step, ctx, writer, done, vectors, total)
            done += len(texts)
        if pending is not None:
            pending.result()
    return done


def _store_step(
    ctx: TaskContext, writer: tables.ColumnWriter, start: int, vectors: np.ndarray, total: int
) -> None:
    """One step's part (whole, then renamed), then its progress: a resume never counts a
    row whose vector is not on disk."""
    writer.write(start, _embedding_array(vectors))
    ctx.progress(start + len(vectors), total)


def embedder_identity(ctx: TaskContext) -> tuple[str, str]:
    """(model, signature) of the embedder this worker builds from the settings: what an
    embeddings evaluation records as ``model_ran``. Building one loads no model."""
    embedder = ctx.engine("embedder", Embedder)
    return embedder.model, embedder.signature


def _embedding_array(vectors: np.ndarray) -> pa.Array:
    """``list<float32>`` over the matrix's own buffer (no copy)."""
    rows, dim = vectors.shape
    offsets = np.arange(0, rows * dim + 1, dim, dtype=np.int32)
    flat = np.ascontiguousarray(vectors).reshape(-1)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32()))


def _results(work: str, kind: str, rows: int) -> tables.ColumnFile:
    return tables.ColumnWriter(Path(work), column_type(kind)).column(rows)


def write_results(
    ctx: TaskContext, data_dir: str, work: str, kind: str, column: str, rows: int
) -> str:
    """The results column alone, as a parquet blob (what GET .../results pages through),
    written part by part; its blob key."""
    values = _results(work, kind, rows)
    blobs = BlobStore(Path(data_dir))
    fd, name = tempfile.mkstemp(dir=blobs.tmp_dir, prefix="results-", suffix=".parquet")
    os.close(fd)
    tmp = Path(name)
    schema = pa.schema([pa.field(column, values.type)])
    try:
        # Dictionary encoding never pays on float vectors (every value differs): without
        # it 50,000 x 384 floats write in ~0.7 s instead of ~1.1 s and read back 2x faster.
        dictionary = kind != "embeddings"
        with pq.ParquetWriter(tmp, schema, use_dictionary=dictionary) as writer:
            for part in values.arrays():
                writer.write_batch(pa.record_batch([part], schema=schema))
            if not values.parts:
                writer.write_table(schema.empty_table())
        return blobs.put_file(tmp).key
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class WriteBack:
    """The file the results column is added to and where the result goes.

    ``base``: the target path's file at the head the commit builds on (or the source
    when the target branch has no such file yet); the labels name both in errors."""

    data_dir: str
    base: str
    base_format: str
    base_label: str  # "<path> at <commit>"
    target_path: str
    target_label: str  # "<path> on <branch>"
    column: str
    overwrite: bool
    work: str
    kind: str
    rows: int


def write_back(ctx: TaskContext, step: WriteBack) -> Stored:
    """The base file with the results column added, written by streaming the base's
    batches beside the parts (8,192 rows a batch) and stored as a blob (fsynced)."""
    fmt = tables.table_format(step.target_path)
    try:
        with _named(step.base, step.target_path):
            base = tables.read_table(Path(step.base), step.base_format)
    except tables.TableError as e:
        raise tables.TableError(f"{step.base_label}: {e}") from None
    values = _results(step.work, step.kind, step.rows)
    blobs = BlobStore(Path(step.data_dir))
    fd, name = tempfile.mkstemp(dir=blobs.tmp_dir, prefix="eval-", suffix="." + fmt)
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            with _named(step.base, step.target_path):
                filled = tables.add_column(base, step.column, values, overwrite=step.overwrite)
                tables.write_table(filled, tmp, fmt)
        except tables.TableError as e:
            raise tables.TableError(f"{step.target_label}: {e}") from None
        blob = blobs.put_file(tmp)
        return Stored(blob, blobs.classify({step.target_path: blob.key})[step.target_path])
    finally:
        tmp.unlink(missing_ok=True)
