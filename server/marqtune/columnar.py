"""A parsed evaluation dataset on disk: two Arrow IPC files, written and read in batches.

``judgements.arrow`` holds one row per (query, document) judgement: the query columns
(``q:<name>``), ``doc_id`` and the score columns (``s:<name>``, float64);
``documents.arrow`` one row per document: ``doc_id`` and the result columns
(``f:<name>``). The prefixes keep a user's column named ``doc_id`` apart. The schema's
metadata carries the column lists and kinds.

Why Arrow IPC (not JSON, not parquet): the dataset is parsed once, in a stream, and read
back by every evaluation; an IPC file's record batches are read one at a time by index
with no decoding step (parquet would decompress and decode each page, JSON held the whole
dataset as Python objects: ~15 KB a row at 100,000 rows), and single columns read without
the others. Files are read through ``pa.OSFile``, not ``pa.memory_map``: mapped pages would
stay resident and count in the worker's RSS, a read batch is freed with its last user.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from ..datadir import private_dir
from .datasets import ParsedDataset, Schema

JUDGEMENTS, DOCUMENTS = "judgements.arrow", "documents.arrow"
# Rows per record batch: 8,192 rows of short strings are ~1 MB of Arrow buffers, and the
# Python dicts of one batch (what the ranker's embed_fields takes) ~10 MB.
BATCH_ROWS = 8_192


def _q(c: str) -> str:
    return "q:" + c


def _s(c: str) -> str:
    return "s:" + c


def _f(c: str) -> str:
    return "f:" + c


class ColumnarSink:
    """A :class:`~evaldock.server.marqtune.datasets.Sink` writing ``folder`` (a temporary
    folder: :meth:`commit` renames it into place, so a crash leaves the old one or none)."""

    def __init__(self, folder: Path, schema: Schema) -> None:
        self.folder = folder
        self.schema = schema
        meta = {
            b"evaldock": json.dumps(
                {
                    "query_columns": schema.query_columns,
                    "result_columns": schema.result_columns,
                    "score_columns": schema.score_columns,
                    "kinds": schema.kinds,
                }
            ).encode()
        }
        self.j_schema = pa.schema(
            [pa.field(_q(c), pa.string()) for c in schema.query_columns]
            + [pa.field("doc_id", pa.string())]
            + [pa.field(_s(c), pa.float64()) for c in schema.score_columns],
            metadata=meta,
        )
        self.d_schema = pa.schema(
            [pa.field("doc_id", pa.string())]
            + [pa.field(_f(c), pa.string()) for c in schema.result_columns],
            metadata=meta,
        )
        private_dir(folder)
        self._j_file = pa.OSFile(str(folder / JUDGEMENTS), "wb")
        self._d_file = pa.OSFile(str(folder / DOCUMENTS), "wb")
        self._j = ipc.new_file(self._j_file, self.j_schema)
        self._d = ipc.new_file(self._d_file, self.d_schema)
        self._j_rows: dict[str, list[Any]] = {f.name: [] for f in self.j_schema}
        self._d_rows: dict[str, list[Any]] = {f.name: [] for f in self.d_schema}

    def judgement(self, query: dict[str, str], doc_id: str, scores: list[float]) -> None:
        rows = self._j_rows
        for c in self.schema.query_columns:
            rows[_q(c)].append(query[c])
        rows["doc_id"].append(doc_id)
        for c, v in zip(self.schema.score_columns, scores, strict=True):
            rows[_s(c)].append(v)
        if len(rows["doc_id"]) >= BATCH_ROWS:
            self._flush(self._j, self.j_schema, rows)

    def document(self, doc_id: str, fields: dict[str, str]) -> None:
        rows = self._d_rows
        rows["doc_id"].append(doc_id)
        for c in self.schema.result_columns:
            rows[_f(c)].append(fields[c])
        if len(rows["doc_id"]) >= BATCH_ROWS:
            self._flush(self._d, self.d_schema, rows)

    @staticmethod
    def _flush(writer: Any, schema: pa.Schema, rows: dict[str, list[Any]]) -> None:
        if rows["doc_id"]:
            arrays = [
                _floats(values) if schema.field(name).type == pa.float64() else _strings(values)
                for name, values in rows.items()
            ]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            for values in rows.values():
                values.clear()

    def commit(self, target: Path) -> None:
        """Finish both files (fsynced) and rename the folder to ``target``."""
        self._flush(self._j, self.j_schema, self._j_rows)
        self._flush(self._d, self.d_schema, self._d_rows)
        for writer, fh in ((self._j, self._j_file), (self._d, self._d_file)):
            writer.close()
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        old = target.with_name(target.name + ".old")
        if target.exists():
            os.replace(target, old)
        os.replace(self.folder, target)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        for writer, fh in ((self._j, self._j_file), (self._d, self._d_file)):
            with contextlib.suppress(OSError, pa.ArrowException):
                writer.close()
            fh.close()
        shutil.rmtree(self.folder, ignore_errors=True)


# Arrays are built from their buffers: pa.array() on Python lists imports pandas (0.3 s of
# CPU, 60 MB) in a process where it is installed, which a worker's task limits count.
def _strings(values: list[str]) -> pa.Array:
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)  # a batch is far below 2 GiB
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.StringArray.from_buffers(
        len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))
    )


def _floats(values: list[float]) -> pa.Array:
    data = np.asarray(values, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(data)])


def _indices(rows: Sequence[int] | np.ndarray) -> pa.Array:
    data = np.asarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def _own(column: pa.Array) -> pa.Array:
    """``column`` in buffers of its own. A column read from an IPC file is a slice of its
    record batch's one body buffer, so keeping it keeps every column of the batch: the
    document ids of 10,000,000 rows held the titles and image paths too (1.5 GB, not the
    ids' ~340 MB)."""
    return pa.concat_arrays([column])


def take(column: pa.ChunkedArray, rows: Sequence[int] | np.ndarray) -> list[Any]:
    """The values of ``column`` at ``rows``, as Python objects."""
    return column.take(_indices(rows)).to_pylist()


def write_parsed(folder: Path, target: Path, parsed: ParsedDataset) -> None:
    """An in-memory :class:`ParsedDataset` (a dataset parsed by an older version, stored as
    JSON) written in the columnar form."""
    scores = list(parsed.scores)
    schema = Schema(
        "evaluation",
        {
            **{
                c: "image_pointer" if parsed.kinds.get(c) == "image" else "text"
                for c in [*parsed.query_columns, *parsed.result_columns]
            },
            **{c: "score" for c in scores},
        },
        parsed.query_columns,
        parsed.result_columns,
    )
    sink = ColumnarSink(folder, schema)
    for doc_id, fields in zip(parsed.documents, parsed.fields, strict=True):
        sink.document(doc_id, fields)
    for i, (query, doc_id) in enumerate(zip(parsed.queries, parsed.doc_ids, strict=True)):
        sink.judgement(query, doc_id, [parsed.scores[c][i] for c in scores])
    sink.commit(target)


class ColumnarDataset:
    """Reads a folder written by :class:`ColumnarSink`, a batch or a column at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with self._open(JUDGEMENTS) as reader:
            meta = json.loads(reader.schema.metadata[b"evaldock"])
            self.n_rows = sum(
                reader.get_batch(i).num_rows for i in range(reader.num_record_batches)
            )
        self.query_columns: list[str] = meta["query_columns"]
        self.result_columns: list[str] = meta["result_columns"]
        self.score_columns: list[str] = meta["score_columns"]
        self.kinds: dict[str, str] = meta["kinds"]
        with self._open(DOCUMENTS) as reader:
            self.doc_batches = reader.num_record_batches
            self.n_docs = sum(reader.get_batch(i).num_rows for i in range(self.doc_batches))

    def _open(self, name: str) -> Any:
        return ipc.open_file(pa.OSFile(str(self.folder / name), "rb"))

    def judgement_column(self, name: str) -> pa.ChunkedArray:
        """One column of every judgement row (``q:``/``s:`` names or ``doc_id``)."""
        with self._open(JUDGEMENTS) as reader:
            return pa.chunked_array(
                [_own(reader.get_batch(i).column(name)) for i in range(reader.num_record_batches)],
                type=reader.schema.field(name).type,
            )

    def judgement_batches(self, names: Sequence[str]) -> Iterator[list[pa.Array]]:
        """Columns ``names`` of the judgement rows, one record batch at a time (only one
        batch's buffers in memory)."""
        with self._open(JUDGEMENTS) as reader:
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                yield [batch.column(n) for n in names]

    def judgement_take(self, name: str, rows: np.ndarray) -> list[Any]:
        """The values of judgement column ``name`` at ``rows`` (few), as Python objects,
        read a batch at a time: a column of ten million rows is never whole in memory."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        out: list[Any] = [None] * len(rows)
        offset = 0
        for (column,) in self.judgement_batches([name]):
            end = offset + len(column)
            lo, hi = np.searchsorted(wanted, [offset, end])
            if hi > lo:
                values = column.take(_indices(wanted[lo:hi] - offset)).to_pylist()
                for at, value in zip(order[lo:hi], values, strict=True):
                    out[at] = value
            offset = end
        return out

    def query_values(self, column: str) -> list[str]:
        return self.judgement_column(_q(column)).to_pylist()

    def scores(self, column: str) -> list[float]:
        return self.judgement_column(_s(column)).to_pylist()

    def query_rows(self, rows: Sequence[int]) -> list[dict[str, str]]:
        """The query-column values of judgement ``rows`` (few: the sampled queries)."""
        out: list[dict[str, str]] = []
        at = np.asarray(rows, dtype=np.int64)
        taken = {c: self.judgement_take(_q(c), at) for c in self.query_columns}
        for i in range(len(rows)):
            out.append({c: taken[c][i] for c in self.query_columns})
        return out

    def doc_ids(self) -> pa.ChunkedArray:
        """Every document's id, in corpus order (Arrow strings: ~30 B a document)."""
        with self._open(DOCUMENTS) as reader:
            return pa.chunked_array(
                [
                    _own(reader.get_batch(i).column("doc_id"))
                    for i in range(reader.num_record_batches)
                ],
                type=pa.string(),
            )

    def documents_from(self, start: int = 0) -> Iterator[list[dict[str, str]]]:
        """The result-column values of documents ``start ..`` (in corpus order), a batch
        at a time."""
        with self._open(DOCUMENTS) as reader:
            offset = 0
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                skip = max(0, start - offset)
                offset += batch.num_rows
                if skip >= batch.num_rows:
                    continue
                batch = batch.slice(skip)
                columns = [batch.column(_f(c)).to_pylist() for c in self.result_columns]
                yield [
                    dict(zip(self.result_columns, values, strict=True))
                    for values in zip(*columns, strict=True)
                ]
