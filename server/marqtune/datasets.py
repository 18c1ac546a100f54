"""Dataset files: checked against their ``dataSchema`` and parsed into one normal form.

Pure functions (no database, no server); every failure is a :class:`DatasetInvalid`
whose message names the row, column or file to fix. Two evaluation forms (see the spec's
description for the user-facing version):

- CSV: one row per (query, document) judgement. Without a ``doc_id`` column a document
  is identified by its result-column values (:func:`derived_doc_id`).
- tar: ``queries.csv`` (query columns, the ``doc_id`` column, score columns) and
  ``documents.jsonl`` (the ``doc_id`` column and result columns, one object a line).

Every check is linear in the file and the file is streamed, never read whole: a worker
thread reads the upload from disk (:func:`parse_file`), a tar archive member by member,
calling ``check_cancelled`` every :data:`CHECK_EVERY` rows so a deleted dataset's thread
stops. :class:`Limits` bounds what one upload may cost: the header's width (a 9.9 MB
header of 1,000,000 columns took hours under the old quadratic duplicate check) and what
an archive may decompress to (a 1 MB tar.gz expanded to 1.15 GiB in memory). CSV is
read through :class:`evaldock.server.tabular.CsvScanner`: a quote that never closes is
an error naming the line it opened on (the csv module alone takes the rest of the file as
one last cell, and a row of the right width passed), and a cell is bounded by
:data:`~evaldock.server.tabular.CELL_LIMIT` (16 MiB), the same bound as every surface's.
A ``documents.jsonl`` line nested too deep for Python's JSON reader is named, too.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import math
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast
from urllib.parse import quote

import msgspec

from ..tabular import CELL_LIMIT, JSON_ERRORS, CsvScanner, TabularInvalid, json_reason

TEXT, IMAGE, SCORE, DOC_ID = "text", "image_pointer", "score", "doc_id"
FIELD_TYPES = (TEXT, IMAGE)
QUERIES_FILE, DOCUMENTS_FILE = "queries.csv", "documents.jsonl"
# Kept in URLs by normalisation: reserved characters and existing escapes.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


# Rows (or megabytes read) between two check_cancelled() calls.
CHECK_EVERY = 1_000
_CHECK_BYTES = 1 << 20
# Archives that decompress to less than this skip the ratio check: a tar's 512-byte
# headers and 10 KiB zero padding alone compress about 70x.
RATIO_FLOOR = 1 << 20
# Names listed in an error message at most (a header may have max_columns of them).
_LISTED = 50
# The csv module's own cell limit (a process-wide setting, 128 KiB by default): one past
# the scanner's CELL_LIMIT, so the scanner refuses first, naming the line and the bound.
_CSV_FIELD_LIMIT = CELL_LIMIT + 1


class DatasetInvalid(ValueError):
    """The file does not fit the dataset's schema; the message says what to fix."""


@dataclass(frozen=True)
class Limits:
    """What one upload may cost; the defaults are the ``[marqtune]`` settings' defaults.

    ``max_columns`` bounds a CSV header (``queries.csv`` included); a tar archive may
    decompress to at most ``max_decompressed_bytes`` and to at most
    ``max_compression_ratio`` times its compressed size (above :data:`RATIO_FLOOR`).
    """

    max_columns: int = 1_000
    max_decompressed_bytes: int = 2 * 1024**3
    max_compression_ratio: float = 100.0


def _never_cancelled() -> None:
    return None


class ParsedDataset(msgspec.Struct):
    """An evaluation dataset in normal form (stored as JSON beside the upload).

    Judgement row ``i`` is ``queries[i]`` (query-column values) judged against document
    ``doc_ids[i]`` with ``scores[column][i]``; the corpus is ``documents`` (ids) with
    ``fields`` (result-column values), which may hold documents no query row names.
    """

    format: str
    query_columns: list[str]
    result_columns: list[str]
    kinds: dict[str, str]  # field column -> "text" | "image" (the ranker's kinds)
    queries: list[dict[str, str]]
    doc_ids: list[str]
    scores: dict[str, list[float]]
    documents: list[str]
    fields: list[dict[str, str]]

    def stats(self) -> dict[str, int]:
        distinct = {tuple(q[c] for c in self.query_columns) for q in self.queries}
        return {
            "rowCount": len(self.doc_ids),
            "queryCount": len(distinct),
            "documentCount": len(self.documents),
        }


class Sink(Protocol):
    """Where a parse puts the rows it accepts, in file order: judgement rows and documents.

    :class:`MemorySink` builds a :class:`ParsedDataset` (tests, small files);
    :class:`evaldock.server.marqtune.columnar.ColumnarSink` writes Arrow files in batches,
    so a million-row upload never sits in memory.
    """

    def judgement(self, query: dict[str, str], doc_id: str, scores: list[float]) -> None: ...

    def document(self, doc_id: str, fields: dict[str, str]) -> None: ...


class MemorySink:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.queries: list[dict[str, str]] = []
        self.doc_ids: list[str] = []
        self.scores: dict[str, list[float]] = {c: [] for c in schema.score_columns}
        self.documents: list[str] = []
        self.fields: list[dict[str, str]] = []

    def judgement(self, query: dict[str, str], doc_id: str, scores: list[float]) -> None:
        self.queries.append(query)
        self.doc_ids.append(doc_id)
        for values, v in zip(self.scores.values(), scores, strict=True):
            values.append(v)

    def document(self, doc_id: str, fields: dict[str, str]) -> None:
        self.documents.append(doc_id)
        self.fields.append(fields)

    def parsed(self, file_format: str) -> ParsedDataset:
        return ParsedDataset(
            format=file_format,
            query_columns=list(self.schema.query_columns),
            result_columns=list(self.schema.result_columns),
            kinds=self.schema.kinds,
            queries=self.queries,
            doc_ids=self.doc_ids,
            scores=self.scores,
            documents=self.documents,
            fields=self.fields,
        )


class _Stats:
    """What ``stats()`` reports, counted while the rows stream by."""

    def __init__(self, query_columns: Sequence[str]) -> None:
        self.query_columns = list(query_columns)
        self.rows = 0
        self.distinct: set[tuple[str, ...]] = set()
        self.documents = 0

    def judgement(self, query: Mapping[str, str]) -> None:
        self.rows += 1
        self.distinct.add(tuple(query[c] for c in self.query_columns))

    def as_dict(self) -> dict[str, int]:
        return {
            "rowCount": self.rows,
            "queryCount": len(self.distinct),
            "documentCount": self.documents,
        }


@dataclass(frozen=True)
class Schema:
    dataset_type: str
    columns: dict[str, str]
    query_columns: list[str]
    result_columns: list[str]
    normalize_urls: bool = True

    @property
    def doc_id_column(self) -> str | None:
        found = [c for c, t in self.columns.items() if t == DOC_ID]
        return found[0] if found else None

    @property
    def score_columns(self) -> list[str]:
        return [c for c, t in self.columns.items() if t == SCORE]

    @property
    def kinds(self) -> dict[str, str]:
        return {
            c: "image" if t == IMAGE else "text"
            for c, t in self.columns.items()
            if t in FIELD_TYPES
        }


def check_schema(schema: Schema) -> None:
    """What ``POST /datasets`` rejects with a 400 (raises DatasetInvalid with the message)."""
    doc_ids = [c for c, t in schema.columns.items() if t == DOC_ID]
    if len(doc_ids) > 1:
        raise DatasetInvalid(
            f"dataSchema may have one doc_id column, not {len(doc_ids)}: " + ", ".join(doc_ids)
        )
    if schema.dataset_type != "evaluation":
        return
    if not schema.query_columns or not schema.result_columns:
        raise DatasetInvalid("queryColumns and resultColumns are required for evaluation datasets")
    for name, columns in (
        ("queryColumns", schema.query_columns),
        ("resultColumns", schema.result_columns),
    ):
        unknown = [c for c in columns if c not in schema.columns]
        if unknown:
            raise DatasetInvalid(
                f"{name} names columns missing from dataSchema: {', '.join(unknown)}"
            )
        wrong = [c for c in columns if schema.columns[c] not in FIELD_TYPES]
        if wrong:
            raise DatasetInvalid(
                f"{name} must be text or image_pointer columns; "
                + ", ".join(f"{c} is {schema.columns[c]}" for c in wrong)
            )
    both = sorted(set(schema.query_columns) & set(schema.result_columns))
    if both:
        raise DatasetInvalid(f"columns cannot be both query and result columns: {', '.join(both)}")


def derived_doc_id(values: Sequence[str]) -> str:
    """A document's id when the schema has no doc_id column: its result values, hashed.

    Prefixed so it never equals a query id (GCL drops a retrieved document whose id equals
    the query's).
    """
    digest = hashlib.sha256(json.dumps(list(values), ensure_ascii=False).encode()).hexdigest()
    return "doc-" + digest[:16]


def normalise_url(value: str) -> str:
    value = value.strip()
    if value.lower().startswith(("http://", "https://")):
        return quote(value, safe=_URL_SAFE)
    return value


def parse_file(
    path: Path,
    schema: Schema,
    limits: Limits = Limits(),
    check_cancelled: Callable[[], None] = _never_cancelled,
) -> tuple[str, ParsedDataset | None, dict[str, int]]:
    """(file format, parsed evaluation dataset or None for training, stats) of an upload.

    Runs in a worker thread: reads ``path`` in a stream, calls ``check_cancelled`` (which
    raises to stop) every :data:`CHECK_EVERY` rows and every megabyte of archive.
    """
    sink = MemorySink(schema)
    file_format, stats = parse_into(path, schema, sink, limits, check_cancelled)
    return _answer(file_format, stats, sink, schema)


def parse_into(
    path: Path,
    schema: Schema,
    sink: Sink,
    limits: Limits = Limits(),
    check_cancelled: Callable[[], None] = _never_cancelled,
) -> tuple[str, dict[str, int]]:
    """:func:`parse_file` handing the accepted rows to ``sink`` as they are read (an
    evaluation dataset's; a training dataset's rows are only checked): (format, stats)."""
    with path.open("rb") as fh:
        return _parse(fh, path.stat().st_size, schema, limits, check_cancelled, sink)


def _answer(
    file_format: str, stats: dict[str, int], sink: MemorySink, schema: Schema
) -> tuple[str, ParsedDataset | None, dict[str, int]]:
    if schema.dataset_type != "evaluation":
        return file_format, None, stats
    return file_format, sink.parsed(file_format), stats


def parse(
    data: bytes, schema: Schema, limits: Limits = Limits()
) -> tuple[str, ParsedDataset | None, dict[str, int]]:
    """:func:`parse_file` for an upload already in memory (tests, small files)."""
    sink = MemorySink(schema)
    file_format, stats = _parse(io.BytesIO(data), len(data), schema, limits, _never_cancelled, sink)
    return _answer(file_format, stats, sink, schema)


def _parse(
    fh: IO[bytes],
    size: int,
    schema: Schema,
    limits: Limits,
    check_cancelled: Callable[[], None],
    sink: Sink,
) -> tuple[str, dict[str, int]]:
    check_cancelled()
    if _is_blank(fh, size):
        raise DatasetInvalid("The uploaded file is empty")
    if _is_tar(fh, size, limits):
        if schema.dataset_type != "evaluation":
            raise DatasetInvalid(
                "Training datasets must be a CSV file; the upload is a tar archive"
            )
        fh.seek(0)
        return "tar", _parse_tar(fh, size, schema, limits, check_cancelled, sink)
    fh.seek(0)
    rows = _read_csv(fh, "The file", list(schema.columns), limits, check_cancelled)
    if schema.dataset_type != "evaluation":
        score_columns = schema.score_columns
        count = 0
        for line, row in rows:
            _scores(row, score_columns, line, "The file")
            count += 1
        return "csv", {"rowCount": count}
    return "csv", _parse_csv_rows(rows, schema, sink)


def _is_blank(fh: IO[bytes], size: int) -> bool:
    """Empty or only whitespace (looked at only when small: a big file is not blank)."""
    if size > 1 << 16:
        return False
    fh.seek(0)
    return not fh.read().strip()


def _decompressed(fh: IO[bytes]) -> IO[bytes]:
    """``fh`` decompressed by its magic number (gzip, bzip2, xz: what ``r:*`` opened)."""
    fh.seek(0)
    magic = fh.read(6)
    fh.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=fh, mode="rb"))
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(fh, mode="rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(fh, mode="rb")
    return fh


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)


def _is_tar(fh: IO[bytes], size: int, limits: Limits) -> bool:
    """Whether the (decompressed) file starts with a tar header; reads one block."""
    stream = _Capped(_decompressed(fh), size, limits, _never_cancelled)
    try:
        with tarfile.open(fileobj=stream, mode="r|"):  # type: ignore[call-overload]
            return True
    except DatasetInvalid:
        raise
    except _ARCHIVE_ERRORS:
        return False


class _Capped:
    """A decompressed archive stream that stops at the configured size and ratio."""

    def __init__(
        self,
        inner: IO[bytes],
        compressed_size: int,
        limits: Limits,
        check_cancelled: Callable[[], None],
    ) -> None:
        self.inner = inner
        self.compressed_size = compressed_size
        self.limits = limits
        self.check_cancelled = check_cancelled
        self.total = 0
        self.unchecked = 0
        self.by_ratio = max(limits.max_compression_ratio * compressed_size, RATIO_FLOOR)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 16  # tarfile reads in blocks; never whole
        data = self.inner.read(size)
        self.total += len(data)
        self.unchecked += len(data)
        if self.total > self.limits.max_decompressed_bytes:
            raise DatasetInvalid(
                f"The tar archive decompresses to more than "
                f"{self.limits.max_decompressed_bytes} bytes, the limit set by "
                "[marqtune] max_decompressed_bytes; upload a smaller archive or raise the setting"
            )
        if self.total > self.by_ratio:
            raise DatasetInvalid(
                f"The tar archive expands more than {self.limits.max_compression_ratio:g} times "
                f"its compressed size ({self.compressed_size} bytes), the limit set by "
                "[marqtune] max_compression_ratio; upload it less compressed or raise the setting"
            )
        if self.unchecked >= _CHECK_BYTES:
            self.unchecked = 0
            self.check_cancelled()
        return data


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... ({len(names) - _LISTED} more)" if len(names) > _LISTED else "")


class _Forward(io.RawIOBase):
    """A read-only, unseekable view (TextIOWrapper asks a stream-mode tar member whether
    it can seek, which it cannot answer)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _text(handle: IO[bytes], newline: str | None = "") -> io.TextIOWrapper:
    reader = io.BufferedReader(_Forward(handle), buffer_size=1 << 16)
    return io.TextIOWrapper(reader, encoding="utf-8-sig", newline=newline)


def _read_csv(
    handle: IO[bytes],
    where: str,
    required: Sequence[str],
    limits: Limits,
    check_cancelled: Callable[[], None],
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) of every non-blank row; the header is checked before the first."""
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(CsvScanner(",").lines(_text(handle)))

    def not_utf8() -> DatasetInvalid:
        return DatasetInvalid(
            f"{where} is not UTF-8 text (near line {reader.line_num + 1}); save it as UTF-8 CSV"
        )

    try:
        header = next(reader)
    except StopIteration:
        raise DatasetInvalid(f"{where} is empty") from None
    except UnicodeDecodeError:
        raise not_utf8() from None
    except csv.Error as exc:
        raise DatasetInvalid(f"{where} is not valid CSV: {exc}") from None
    except TabularInvalid as exc:
        raise DatasetInvalid(f"{where} is not valid CSV: {exc}") from None
    if len(header) > limits.max_columns:
        raise DatasetInvalid(
            f"{where} has {len(header)} columns in its header; at most {limits.max_columns} "
            "are read, the limit set by [marqtune] max_columns (raise it to allow more)"
        )
    header = [h.strip() for h in header]
    dupes = sorted(h for h, n in Counter(header).items() if n > 1)
    if dupes:
        raise DatasetInvalid(f"{where} repeats header columns: {_listing(dupes)}")
    present = set(header)
    missing = [c for c in required if c not in present]
    if missing:
        raise DatasetInvalid(
            f"{where} lacks columns named in dataSchema: {_listing(missing)} "
            f"(its header has: {_listing(header)})"
        )
    return _csv_rows(reader, header, where, check_cancelled, not_utf8)


def _csv_rows(
    reader: Any,
    header: list[str],
    where: str,
    check_cancelled: Callable[[], None],
    not_utf8: Callable[[], DatasetInvalid],
) -> Iterator[tuple[int, dict[str, str]]]:
    width = len(header)
    count = 0
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank lines, as pandas skips them
            line = reader.line_num
            if len(values) != width:
                raise DatasetInvalid(
                    f"{where} line {line} has {len(values)} fields; the header has {width}"
                )
            count += 1
            if count % CHECK_EVERY == 0:
                check_cancelled()
            yield line, dict(zip(header, values, strict=True))
    except UnicodeDecodeError:
        raise not_utf8() from None
    except csv.Error as exc:
        raise DatasetInvalid(
            f"{where} is not valid CSV near line {reader.line_num}: {exc}"
        ) from None
    except TabularInvalid as exc:
        raise DatasetInvalid(f"{where} is not valid CSV: {exc}") from None
    if not count:
        raise DatasetInvalid(f"{where} has a header but no rows")


def _scores(row: Mapping[str, str], columns: Sequence[str], line: int, where: str) -> list[float]:
    out = []
    for c in columns:
        raw = (row.get(c) or "").strip()
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            shown = f"'{raw}'" if raw else "empty"
            raise DatasetInvalid(
                f"{where} line {line}: score column '{c}' is {shown}; it must be a number"
            )
        out.append(value)
    return out


def _field_values(row: Mapping[str, Any], columns: Sequence[str], schema: Schema) -> dict[str, str]:
    out = {}
    for c in columns:
        value = row.get(c)
        text = "" if value is None else (value if isinstance(value, str) else str(value))
        if schema.columns[c] == IMAGE:
            text = normalise_url(text) if schema.normalize_urls else text.strip()
        out[c] = text
    return out


def _parse_csv_rows(
    rows: Iterable[tuple[int, dict[str, str]]], schema: Schema, sink: Sink
) -> dict[str, int]:
    doc_col = schema.doc_id_column
    score_columns = schema.score_columns
    seen: set[str] = set()  # document ids: the only per-row state kept (~80 B a row)
    stats = _Stats(schema.query_columns)
    for line, row in rows:
        query = _field_values(row, schema.query_columns, schema)
        if not any(query.values()):
            raise DatasetInvalid(
                f"The file line {line} has no value in any query column "
                f"({', '.join(schema.query_columns)})"
            )
        doc = _field_values(row, schema.result_columns, schema)
        if not any(doc.values()):
            raise DatasetInvalid(
                f"The file line {line} has no value in any result column "
                f"({', '.join(schema.result_columns)})"
            )
        if doc_col:
            doc_id = row[doc_col].strip()
            if not doc_id:
                raise DatasetInvalid(f"The file line {line}: doc_id column '{doc_col}' is empty")
        else:
            doc_id = derived_doc_id([doc[c] for c in schema.result_columns])
        row_scores = _scores(row, score_columns, line, "The file")
        if doc_id not in seen:  # a repeated doc_id keeps its first row's values
            seen.add(doc_id)
            sink.document(doc_id, doc)
        sink.judgement(query, doc_id, row_scores)
        stats.judgement(query)
    stats.documents = len(seen)
    return stats.as_dict()


@dataclass
class _Pending:
    """Judgement rows whose doc_id is checked once documents.jsonl has been read (when
    queries.csv comes first in the archive): line numbers and ids only."""

    lines: list[int]
    doc_ids: list[str]


def _parse_tar(
    fh: IO[bytes],
    size: int,
    schema: Schema,
    limits: Limits,
    check_cancelled: Callable[[], None],
    sink: Sink,
) -> dict[str, int]:
    doc_col = schema.doc_id_column
    if doc_col is None:
        raise DatasetInvalid(
            "A tar dataset links queries.csv rows to documents.jsonl through a doc_id column; "
            "add one column of type doc_id to dataSchema"
        )
    docs: set[str] | None = None
    judged: _Pending | None = None
    stats = _Stats(schema.query_columns)
    found: list[str] = []
    stream = _Capped(_decompressed(fh), size, limits, check_cancelled)
    try:
        # Stream mode: members in archive order, each read once, none kept but ours.
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isfile() or name.rpartition("/")[2].startswith("._"):
                    continue  # directories and macOS resource forks
                found.append(name)
                if name not in (QUERIES_FILE, DOCUMENTS_FILE):
                    continue
                if member.issparse():
                    raise DatasetInvalid(
                        f"{name} is a sparse file in the tar archive; add it plainly"
                    )
                if name in found[:-1]:
                    raise DatasetInvalid(f"The tar archive holds {name} twice; keep one")
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                if name == DOCUMENTS_FILE:
                    docs = _read_documents(handle, schema, doc_col, check_cancelled, sink)
                else:
                    judged = _read_judgements(
                        handle, schema, doc_col, limits, check_cancelled, sink, docs, stats
                    )
    except DatasetInvalid:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise DatasetInvalid(f"The tar archive is damaged: {exc}") from None
    if docs is None or judged is None:
        missing = [QUERIES_FILE] * (judged is None) + [DOCUMENTS_FILE] * (docs is None)
        raise DatasetInvalid(
            f"The tar archive must hold {QUERIES_FILE} and {DOCUMENTS_FILE} at its top level; "
            f"missing {', '.join(missing)} (found: {_listing(sorted(found)) or 'nothing'})"
        )
    for line, doc_id in zip(judged.lines, judged.doc_ids, strict=True):
        _check_linked(line, doc_id, docs)
    stats.documents = len(docs)
    return stats.as_dict()


def _check_linked(line: int, doc_id: str, docs: set[str]) -> None:
    if doc_id not in docs:
        raise DatasetInvalid(
            f"{QUERIES_FILE} line {line}: doc_id '{doc_id}' is not in {DOCUMENTS_FILE}"
        )


def _read_documents(
    handle: IO[bytes],
    schema: Schema,
    doc_col: str,
    check_cancelled: Callable[[], None],
    sink: Sink,
) -> set[str]:
    docs: set[str] = set()
    absent = set(schema.result_columns)  # result columns no document has yet
    number = 0
    try:
        for number, raw in enumerate(_text(handle, None), start=1):
            if number % CHECK_EVERY == 0:
                check_cancelled()
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except JSON_ERRORS as exc:
                raise DatasetInvalid(
                    f"{DOCUMENTS_FILE} line {number} is not JSON: {json_reason(exc)}"
                ) from None
            if not isinstance(obj, dict):
                raise DatasetInvalid(f"{DOCUMENTS_FILE} line {number} is not a JSON object")
            raw_id = obj.get(doc_col)
            if raw_id is None or not str(raw_id).strip():
                raise DatasetInvalid(f"{DOCUMENTS_FILE} line {number} has no '{doc_col}' (doc_id)")
            doc_id = str(raw_id).strip()
            if doc_id in docs:
                raise DatasetInvalid(f"{DOCUMENTS_FILE} line {number} repeats doc_id '{doc_id}'")
            if absent:
                absent.difference_update([c for c in absent if obj.get(c) is not None])
            docs.add(doc_id)
            sink.document(doc_id, _field_values(obj, schema.result_columns, schema))
    except UnicodeDecodeError:
        raise DatasetInvalid(
            f"{DOCUMENTS_FILE} is not UTF-8 text (near line {number + 1}); save it as UTF-8"
        ) from None
    if not docs:
        raise DatasetInvalid(f"{DOCUMENTS_FILE} has no documents")
    if absent:
        missing = [c for c in schema.result_columns if c in absent]
        raise DatasetInvalid(
            f"No document in {DOCUMENTS_FILE} has the result columns {', '.join(missing)}"
        )
    return docs


def _read_judgements(
    handle: IO[bytes],
    schema: Schema,
    doc_col: str,
    limits: Limits,
    check_cancelled: Callable[[], None],
    sink: Sink,
    docs: set[str] | None,
    stats: _Stats,
) -> _Pending:
    """Hand the rows to ``sink``; their doc_ids are checked now when the documents came
    first, else returned to check once they are read."""
    score_columns = schema.score_columns
    required = [*schema.query_columns, doc_col, *score_columns]
    out = _Pending(lines=[], doc_ids=[])
    for line, row in _read_csv(handle, QUERIES_FILE, required, limits, check_cancelled):
        query = _field_values(row, schema.query_columns, schema)
        if not any(query.values()):
            raise DatasetInvalid(f"{QUERIES_FILE} line {line} has no value in any query column")
        row_scores = _scores(row, score_columns, line, QUERIES_FILE)
        doc_id = row[doc_col].strip()
        if docs is None:
            out.lines.append(line)
            out.doc_ids.append(doc_id)
        else:
            _check_linked(line, doc_id, docs)
        sink.judgement(query, doc_id, row_scores)
        stats.judgement(query)
    return out


def iter_columns(parsed: ParsedDataset, columns: Sequence[str]) -> Iterator[list[str]]:
    """Per query column, its value on every judgement row."""
    for c in columns:
        yield [q.get(c, "") for q in parsed.queries]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ParsedDataset)


def dump(parsed: ParsedDataset) -> bytes:
    return _encoder.encode(parsed)


def load(data: bytes) -> ParsedDataset:
    return _decoder.decode(data)
