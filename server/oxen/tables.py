"""Column-wise tabular I/O for prompt-over-rows evaluations: read a data file, add a column.

Formats (by extension, as Oxen decides ``tabular``): CSV, TSV, parquet, JSON Lines
(``.jsonl``/``.ndjson``). The promise for a write-back in the file's own format:

- **CSV/TSV**: every cell is read as a string, exactly as written (no type inference, no
  trimming, empty stays ``""``). Adding a column appends one cell to each *original
  record's bytes*, so the untouched columns are byte-identical: same quoting, same line
  endings, same BOM. Overwriting an existing column re-serialises every record with
  minimal quoting (the cell values are still exact).
- **parquet**: Arrow types and schema metadata are kept; the file is rewritten batch by
  batch with the new column attached.
- **JSON Lines**: each original object is kept as written and the new key is spliced in
  before its closing ``}`` (compact ``"k":v`` or spaced ``"k": v``, following the line).
  Overwriting a key re-dumps that object (same keys and order, same JSON values).

Embeddings are ``list<float32>`` in parquet and JSON arrays in JSON Lines; in CSV/TSV they
are one cell holding a JSON array string.

Bounds (:mod:`evaldock.server.tabular`, shared with the other surfaces), checked by
:func:`read_table` before any row is served: a CSV is scanned once for its quoting (an
unterminated quote is :class:`TableRefused` naming the line it opened on; a cell over 16
MiB or a record over 64 MiB likewise) and read with an Arrow block as large as its largest
record (a 3.7 MB quoted cell reads back exactly); a parquet file's footer is checked for
what its row groups and column chunks decode to and how far they expand; a JSON Lines
line nested too deep for Python's reader is named, not a RecursionError.

Memory: reading the column names and row count streams the file. :func:`iter_batches`
yields ``batch_size`` rows at a time. Writes stream the source in batches (parquet: 8k-row
record batches; CSV/TSV/JSONL: line by line). An added column is either an Arrow array in
memory (small columns, tests) or a :class:`ColumnFile`: Arrow IPC part files written by
:class:`ColumnWriter` one step at a time and read back one part at a time, so a write
holds one source batch plus one part (an evaluation's 500,000 x 384 float32 embeddings
are 768 MB on disk and ~6 MB in memory per 4,096-row part). The exception is a format
change from JSON Lines, which holds the whole source (pyarrow's JSON reader).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ..datadir import private_dir
from ..names import name_problem
from ..tabular import JSON_ERRORS, CsvScanner, TabularInvalid, check_parquet, json_reason

FORMATS = ("csv", "tsv", "parquet", "jsonl")
_EXTENSIONS = {
    "csv": "csv",
    "tsv": "tsv",
    "parquet": "parquet",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
}
DEFAULT_BATCH = 10_000
# Arrow's reader block: 1 MiB blocks keep ~1 MiB of text plus its parsed form per step.
# A file with a longer record is read with blocks as long as that record (Arrow cannot
# parse a record that spans more than two blocks).
_CSV_BLOCK = 1 << 20
# Rows per record batch (and parquet row group) of a write-back: 8,192 rows of 384-float
# embeddings are 12.5 MB a batch; 64k rows were 100 MB plus the encoder's copy of it.
_PARQUET_WRITE_BATCH = 8_192
EMBEDDING_TYPE = pa.list_(pa.float32())


class TableError(ValueError):
    """Base of this module's errors; the message names the file, line or column to fix."""


class NotATable(TableError):
    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(
            f"{Path(path).name} is not a table: {reason}; upload a CSV, TSV, parquet or JSON"
            " Lines (.jsonl) file with a header row / one object per line"
        )
        self.reason = reason


class TableRefused(TableError):
    """A table whose content passes a bound of :mod:`evaldock.server.tabular` (an
    unterminated quote, a cell, record or parquet chunk too large, JSON nested too deep);
    ``cause`` is the tabular error, whose message names the line or column and the bound."""

    def __init__(self, path: Path | str, cause: TabularInvalid) -> None:
        # The caller names the file: ``path`` is often a blob, named by its hash.
        super().__init__(str(cause))
        self.path = Path(path)
        self.cause = cause


class ColumnExists(TableError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"column {name!r} already exists; pick another target column or allow overwriting"
        )
        self.name = name


class ColumnNotFound(TableError):
    def __init__(self, name: str, columns: Sequence[str]) -> None:
        super().__init__(f"no column {name!r}; the columns are {', '.join(map(repr, columns))}")
        self.name = name


class ColumnLengthMismatch(TableError):
    def __init__(self, name: str, got: int, rows: int) -> None:
        super().__init__(f"column {name!r} has {got} values but the table has {rows} rows")


class ColumnFile:
    """A column on disk: Arrow IPC stream files ``part-<first row>.arrow`` in one folder,
    each holding one record batch of one column, read back one part at a time."""

    def __init__(self, parts: Sequence[Path], type: pa.DataType, length: int) -> None:
        self.parts = list(parts)
        self.type = type
        self.length = length

    def __len__(self) -> int:
        return self.length

    def arrays(self) -> Iterator[pa.Array]:
        for part in self.parts:
            # OSFile, not a memory map: a mapped part would stay in the process's RSS.
            with pa.OSFile(str(part), "rb") as f:
                for rb in pa.ipc.open_stream(f):
                    yield rb.column(0)


class ColumnWriter:
    """Writes a column in parts (one file per step) into ``folder``; a part is written
    to a temporary name and renamed, so after a crash every ``part-*.arrow`` is whole and
    :meth:`resume` knows how many rows are done."""

    def __init__(self, folder: Path, type: pa.DataType) -> None:
        self.folder = folder
        self.type = type
        private_dir(folder)

    def resume(self) -> tuple[int, list[dict[bytes, bytes]]]:
        """Rows already written (parts contiguous from row 0) and each part's metadata;
        a part that does not read back, and every part after a gap, is removed."""
        done = 0
        metas: list[dict[bytes, bytes]] = []
        for part in self._parts():
            start = int(part.stem.split("-", 1)[1])
            try:
                if start != done:
                    raise ValueError("gap")
                with pa.OSFile(str(part), "rb") as f:
                    reader = pa.ipc.open_stream(f)
                    rows = sum(rb.num_rows for rb in reader)
                    metas.append(dict(reader.schema.metadata or {}))
            except (ValueError, OSError, pa.ArrowException):
                part.unlink(missing_ok=True)
                continue
            done += rows
        return done, metas

    def write(self, start: int, values: pa.Array, meta: dict[str, str] | None = None) -> None:
        schema = pa.schema([pa.field("v", self.type)], metadata=meta)
        final = self.folder / f"part-{start:012d}.arrow"
        tmp = final.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_stream(f, schema) as w:
            w.write_batch(pa.record_batch([values.cast(self.type)], schema=schema))
        tmp.replace(final)

    def column(self, length: int) -> ColumnFile:
        return ColumnFile(self._parts(), self.type, length)

    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.arrow"))


class _Cursor:
    """Sequential reads of ``n`` values at a time from an array or a :class:`ColumnFile`."""

    def __init__(self, column: pa.Array | ColumnFile) -> None:
        self.type = column.type
        self._it: Iterator[pa.Array] = (
            column.arrays() if isinstance(column, ColumnFile) else iter([column])
        )
        self._head: pa.Array | None = None
        self._pos = 0

    def take(self, n: int) -> pa.Array:
        parts: list[pa.Array] = []
        while n > 0:
            if self._head is None or self._pos >= len(self._head):
                self._head, self._pos = next(self._it, None), 0
                if self._head is None:
                    break
                continue
            piece = self._head.slice(self._pos, n)
            parts.append(piece)
            self._pos += len(piece)
            n -= len(piece)
        if len(parts) == 1:
            return parts[0]
        return pa.concat_arrays(parts) if parts else pa.array([], type=self.type)


@dataclass(frozen=True)
class Table:
    """A data file plus the columns added to it (the file itself is never modified).

    ``columns`` are the source's columns in order; ``added`` maps a new or overwritten
    column name to its values, in the order they were added.
    """

    path: Path
    format: str
    columns: tuple[str, ...]
    num_rows: int
    schema: pa.Schema  # the source's Arrow schema (all strings for CSV/TSV)
    added: tuple[tuple[str, pa.Array | ColumnFile], ...] = ()
    # CSV/TSV only: "\t" or ","
    delimiter: str = ","
    # CSV/TSV only: Arrow's read block, at least the file's longest record
    csv_block: int = _CSV_BLOCK

    def column_names(self) -> list[str]:
        return column_names(self)


def table_format(path: Path | str) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    fmt = _EXTENSIONS.get(ext)
    if fmt is None:
        raise NotATable(path, f"the extension {('.' + ext) if ext else '(none)'} is not tabular")
    return fmt


# -- reading ---------------------------------------------------------------------------


def read_table(path: Path, format: str | None = None) -> Table:
    """Open a data file: its columns and row count (one streaming pass for text formats)."""
    fmt = format or table_format(path)
    try:
        if fmt == "parquet":
            meta = pq.ParquetFile(path)
            schema = meta.schema_arrow
            _check_names(path, schema.names)
            check_parquet(meta.metadata)  # before any page is decoded
            return Table(path, fmt, tuple(schema.names), meta.metadata.num_rows, schema)
        if fmt in ("csv", "tsv"):
            delim = "\t" if fmt == "tsv" else ","
            names, block = _csv_scan(path, delim)
            schema = pa.schema([(n, pa.string()) for n in names])
            batches = _csv_reader(path, delim, names, names[:1], block)
            rows = sum(b.num_rows for b in batches)
            return Table(path, fmt, tuple(names), rows, schema, delimiter=delim, csv_block=block)
        if fmt == "jsonl":
            keys: dict[str, None] = {}
            rows = 0
            for obj in _jsonl_objects(path):
                keys.update(dict.fromkeys(obj))
                rows += 1
            _check_names(path, list(keys))
            schema = pa.schema([(k, pa.null()) for k in keys])
            return Table(path, fmt, tuple(keys), rows, schema)
    except TabularInvalid as e:
        raise TableRefused(path, e) from None
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:
        raise NotATable(path, str(e).splitlines()[0]) from None
    raise NotATable(path, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def column_names(table: Table) -> list[str]:
    names = list(table.columns)
    names += [n for n, _ in table.added if n not in table.columns]
    return names


def iter_batches(
    table: Table, columns: Sequence[str], batch_size: int = DEFAULT_BATCH
) -> Iterator[dict[str, list[Any]]]:
    """Yield ``{column: values}`` for ``batch_size`` rows at a time, in row order.

    Only the named columns are decoded, and only one batch of Python values exists at a
    time. Added columns are served from memory.
    """
    names = column_names(table)
    for c in columns:
        if c not in names:
            raise ColumnNotFound(c, names)
    added = {n: _Cursor(a) for n, a in table.added if n in columns}
    source_cols = [c for c in columns if c not in added]
    offset = 0
    for batch in _source_batches(table, source_cols, batch_size):
        n = len(next(iter(batch.values()))) if batch else min(batch_size, table.num_rows - offset)
        out = {c: batch[c] for c in source_cols}
        for c, cursor in added.items():
            out[c] = cursor.take(n).to_pylist()
        offset += n
        yield {c: out[c] for c in columns}


def iter_column(table: Table, name: str, batch_size: int = DEFAULT_BATCH) -> Iterator[list[Any]]:
    for batch in iter_batches(table, [name], batch_size):
        yield batch[name]


def _source_batches(
    table: Table, columns: Sequence[str], batch_size: int
) -> Iterator[dict[str, list[Any]]]:
    if not columns:
        # Only added columns asked for: count rows without reading the file.
        yield from ({} for _ in range(0, table.num_rows, batch_size))
        return
    try:
        if table.format == "parquet":
            pf = pq.ParquetFile(table.path)
            for rb in pf.iter_batches(batch_size=batch_size, columns=list(columns)):
                yield {c: rb.column(c).to_pylist() for c in columns}
        elif table.format in ("csv", "tsv"):
            buffered = _Rebatcher(batch_size)
            names = list(table.columns)
            for rb in _csv_reader(table.path, table.delimiter, names, columns, table.csv_block):
                yield from buffered.feed(rb)
            yield from buffered.flush()
        else:
            yield from _jsonl_batches(table.path, columns, batch_size)
    except pa.ArrowInvalid as e:
        # read_table read the whole file once; this is a file changed since, or a value
        # Arrow cannot convert: the caller's data, not a server fault.
        raise NotATable(table.path, str(e).splitlines()[0]) from None


def _jsonl_batches(
    path: Path, columns: Sequence[str], batch_size: int
) -> Iterator[dict[str, list[Any]]]:
    chunk: dict[str, list[Any]] = {c: [] for c in columns}
    count = 0
    for obj in _jsonl_objects(path):
        for c in columns:
            chunk[c].append(obj.get(c))
        count += 1
        if count == batch_size:
            yield chunk
            chunk, count = {c: [] for c in columns}, 0
    if count:
        yield chunk


class _Rebatcher:
    """Arrow's CSV reader cuts batches by bytes; callers ask for rows."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pending: list[pa.RecordBatch] = []
        self.rows = 0

    def feed(self, rb: pa.RecordBatch) -> Iterator[dict[str, list[Any]]]:
        self.pending.append(rb)
        self.rows += rb.num_rows
        while self.rows >= self.size:
            t = pa.Table.from_batches(self.pending)
            head, rest = t.slice(0, self.size), t.slice(self.size)
            self.pending, self.rows = rest.to_batches(), rest.num_rows
            yield head.to_pydict()

    def flush(self) -> Iterator[dict[str, list[Any]]]:
        if self.rows:
            yield pa.Table.from_batches(self.pending).to_pydict()
        self.pending, self.rows = [], 0


def _csv_scan(path: Path, delim: str) -> tuple[list[str], int]:
    """The header's column names and the Arrow block size to read the file with, from one
    linear pass that checks the quoting and the cell and record bounds (raises a
    :class:`~evaldock.server.tabular.TabularInvalid` for the first thing out of bounds).

    The pass runs at ~140 MB/s (Arrow's own count at ~800 MB/s on 2 cores), so its
    answer is kept per file version: every page of a data_frames walk reads the table
    again. Blobs never change; any other file is told apart by its size, mtime, inode and
    a checksum of its first and last 64 KiB.
    """
    st = path.stat()
    with path.open("rb") as f:
        head = f.read(1 << 16)
        f.seek(max(st.st_size - (1 << 16), 0))
        check = zlib.crc32(f.read(1 << 16), zlib.crc32(head))
    key = (str(path), delim, st.st_size, st.st_mtime_ns, st.st_ino, check)
    names, block = _csv_scan_cached(*key)
    return list(names), block


@functools.lru_cache(maxsize=64)
def _csv_scan_cached(
    path_text: str, delim: str, size: int, mtime_ns: int, inode: int, check: int
) -> tuple[tuple[str, ...], int]:
    path = Path(path_text)
    scanner = CsvScanner(delim.encode())
    with path.open("rb") as f:
        first = scanner.scan(f)
    if first is None:
        raise NotATable(path, "the file is empty (a header row is needed)")
    text = first.decode("utf-8-sig")
    names = next(csv.reader(io.StringIO(text), delimiter=delim), [])
    if not names or names == [""]:
        raise NotATable(path, "the header row is empty")
    _check_names(path, names)
    return tuple(names), max(_CSV_BLOCK, scanner.largest_record + 1)


def _check_names(path: Path, names: Sequence[str]) -> None:
    """Column names are unique and pass the house rule for user-chosen names
    (:func:`~evaldock.server.names.name_problem`): no control character (a header
    ``"a\\nb"`` forges a line in a CSV export or a log), no bidi override, no U+FFFD.
    ``/`` stays allowed (``km/h`` is a column, not a path), so each ``/``-part is checked."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise NotATable(path, f"the column name {n!r} appears twice")
        seen.add(n)
        problem = column_name_problem(n)
        if problem is not None:
            raise NotATable(path, problem)


def column_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a column (a sentence with its fix), or None."""
    return name_problem(name, "column name", path="/" in name) if name else None


def _csv_reader(
    path: Path, delim: str, names: Sequence[str], include: Sequence[str], block: int
) -> Iterator[pa.RecordBatch]:
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=block),
        parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True),
        # Every column a string, never null: a cell reads back exactly as written.
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            include_columns=list(include),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    yield from reader


def _jsonl_objects(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except JSON_ERRORS as e:
                raise NotATable(path, f"line {lineno} is not JSON ({json_reason(e)})") from None
            if not isinstance(obj, dict):
                raise NotATable(path, f"line {lineno} is not a JSON object")
            yield obj


# -- adding a column -------------------------------------------------------------------


def add_column(
    table: Table,
    name: str,
    values: Sequence[Any] | pa.Array | pa.ChunkedArray | ColumnFile,
    overwrite: bool = False,
    type: pa.DataType | None = None,
) -> Table:
    """Return ``table`` with column ``name`` set to ``values`` (one per row, in row order).

    ``type``: the Arrow type; by default strings stay strings, lists of numbers become
    embeddings (``list<float32>``), and anything else is inferred by Arrow.
    An existing column raises :class:`ColumnExists` unless ``overwrite``.
    """
    if not name:
        raise TableError("a column needs a non-empty name")
    if name in column_names(table) and not overwrite:
        raise ColumnExists(name)
    array = values if isinstance(values, ColumnFile) else _to_array(values, type)
    if len(array) != table.num_rows:
        raise ColumnLengthMismatch(name, len(array), table.num_rows)
    added = (*((n, a) for n, a in table.added if n != name), (name, array))
    return replace(table, added=added)


def _to_array(
    values: Sequence[Any] | pa.Array | pa.ChunkedArray, type: pa.DataType | None
) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(type) if type is not None else values
    if type is None and _looks_like_embeddings(values):
        type = EMBEDDING_TYPE
    return pa.array(values, type=type)


def _looks_like_embeddings(values: Sequence[Any]) -> bool:
    for v in values:
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            return True
        return isinstance(v, (list, tuple)) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
        )
    return False


# -- writing ---------------------------------------------------------------------------


def write_table(table: Table, path: Path, format: str | None = None) -> None:
    """Write the table (source plus added columns) to ``path`` in ``format``.

    ``format`` defaults to what ``path``'s extension says, else the source's format.
    ``path`` must not be the source file (write beside it, then rename).
    """
    fmt = format or _EXTENSIONS.get(path.suffix.lower().lstrip("."), table.format)
    if fmt not in FORMATS:
        raise TableError(f"cannot write format {fmt!r}; use one of {', '.join(FORMATS)}")
    if path.resolve() == table.path.resolve():
        raise TableError("write to a new file, then move it over the source")
    overwritten = {n for n, _ in table.added if n in table.columns}
    if fmt == table.format and fmt in ("csv", "tsv") and not overwritten:
        _splice_csv(table, path)
    elif fmt == table.format == "jsonl":
        _splice_jsonl(table, path)
    elif fmt == "parquet":
        _write_parquet(table, path)
    elif fmt in ("csv", "tsv"):
        _write_csv(table, path, "\t" if fmt == "tsv" else ",")
    else:
        _write_jsonl(table, path)


def _splice_csv(table: Table, path: Path) -> None:
    delim = table.delimiter.encode()
    names = [n for n, _ in table.added]
    values = [_iter_values(a) for _, a in table.added]
    with table.path.open("rb") as src, path.open("wb") as out:
        # Records as read_table scanned them (bounds checked there): one linear pass.
        records = CsvScanner(delim).records(src)
        header = next(records)
        out.write(_append_cells(header, delim, [_csv_cell(n, table.delimiter) for n in names]))
        row = 0
        for rec in records:
            if not rec.strip(b"\r\n"):
                out.write(rec)  # a blank line: Arrow skipped it, so it has no row
                continue
            cells = [_csv_cell(_cell_text(next(v, None)), table.delimiter) for v in values]
            out.write(_append_cells(rec, delim, cells))
            row += 1
    if row != table.num_rows:
        path.unlink(missing_ok=True)
        raise NotATable(
            table.path, f"found {row} records but Arrow parsed {table.num_rows}; check quoting"
        )


def _append_cells(record: bytes, delim: bytes, cells: Sequence[str]) -> bytes:
    body = record.rstrip(b"\r\n")
    ending = record[len(body) :]
    return body + b"".join(delim + c.encode() for c in cells) + ending


def _csv_cell(text: str, delim: str) -> str:
    if any(ch in text for ch in (delim, '"', "\n", "\r")):
        return '"' + text.replace('"', '""') + '"'
    return text


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return _json(value)
    return str(value)


def cell_text(value: Any) -> str:
    """A value as one CSV cell (embeddings and other lists as JSON arrays)."""
    return _cell_text(value)


def _json(value: Any, spaced: bool = False) -> str:
    """JSON for a new cell or key; float32 embeddings print their shortest form (0.1, not
    0.10000000149011612), so a CSV cell is ~9 characters a component, not ~19."""
    if isinstance(value, list) and value and all(isinstance(x, float) for x in value):
        sep = ", " if spaced else ","
        return "[" + sep.join(_float32_text(x) for x in value) + "]"
    seps = (", ", ": ") if spaced else (",", ":")
    return json.dumps(value, ensure_ascii=False, separators=seps)


def _float32_text(x: float) -> str:
    if x != x or x in (float("inf"), float("-inf")):
        return "null"  # JSON has no NaN/Infinity
    return np.format_float_positional(np.float32(x), unique=True, trim="0")


def _splice_jsonl(table: Table, path: Path) -> None:
    columns = [(n, _iter_values(a)) for n, a in table.added]
    with table.path.open("rb") as src, path.open("wb") as out:
        for line in src:
            if not line.strip():
                out.write(line)
                continue
            body = line.rstrip()
            ending = line[len(body) :]
            spaced = b'": ' in body
            values = {n: next(it, None) for n, it in columns}
            obj = json.loads(body)
            if any(n in obj for n in values):
                obj.update(values)
                seps = (", ", ": ") if spaced else (",", ":")
                text = json.dumps(obj, ensure_ascii=False, separators=seps)
                out.write(text.encode() + ending)
            else:
                extra = (", " if spaced else ",").join(
                    f"{json.dumps(n, ensure_ascii=False)}:{' ' if spaced else ''}{_json(v, spaced)}"
                    for n, v in values.items()
                )
                inner = body[body.index(b"{") + 1 : -1]
                joiner = b"" if not inner.strip() else (b", " if spaced else b",")
                out.write(body[:-1].rstrip() + joiner + extra.encode() + b"}" + ending)


def _iter_values(array: pa.Array | ColumnFile, chunk: int = DEFAULT_BATCH) -> Iterator[Any]:
    # Python values a chunk at a time: per-scalar access is ~20x slower than to_pylist.
    cursor = _Cursor(array)
    for _ in range(0, len(array), chunk):
        yield from cursor.take(chunk).to_pylist()


def _record_batches(table: Table) -> Iterator[pa.RecordBatch]:
    """The source as Arrow batches with the added columns attached (overwrites in place)."""
    if table.format == "parquet":
        source: Iterable[pa.RecordBatch] = pq.ParquetFile(table.path).iter_batches(
            batch_size=_PARQUET_WRITE_BATCH
        )
    elif table.format in ("csv", "tsv"):
        names = list(table.columns)
        source = _csv_reader(table.path, table.delimiter, names, names, table.csv_block)
    else:
        # pyarrow's JSON reader needs the whole file (noted in the module docstring).
        source = pajson.read_json(table.path).to_batches(max_chunksize=_PARQUET_WRITE_BATCH)
    added = {name: _Cursor(a) for name, a in table.added}
    for rb in source:
        n = rb.num_rows
        cols = []
        names = []
        for name in rb.schema.names:
            cols.append(added[name].take(n) if name in added else rb.column(name))
            names.append(name)
        for name, cursor in added.items():
            if name not in rb.schema.names:
                cols.append(cursor.take(n))
                names.append(name)
        yield pa.RecordBatch.from_arrays(cols, names=names)


def _write_parquet(table: Table, path: Path) -> None:
    writer: pq.ParquetWriter | None = None
    try:
        for rb in _record_batches(table):
            if writer is None:
                schema = rb.schema
                if table.format == "parquet" and table.schema.metadata:
                    schema = schema.with_metadata(table.schema.metadata)
                writer = pq.ParquetWriter(path, schema)
            writer.write_batch(rb)
        if writer is None:  # no rows: still write the schema
            fields = list(table.schema) + [pa.field(n, a.type) for n, a in table.added]
            pq.write_table(pa.schema(fields).empty_table(), path)
    finally:
        if writer is not None:
            writer.close()


def _write_csv(table: Table, path: Path, delim: str) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        w = csv.writer(out, delimiter=delim, lineterminator="\n")
        w.writerow(column_names(table))
        for rb in _record_batches(table):
            cols = [rb.column(i).to_pylist() for i in range(rb.num_columns)]
            for r in range(rb.num_rows):
                w.writerow([_cell_text(c[r]) for c in cols])


def _write_jsonl(table: Table, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        for rb in _record_batches(table):
            for obj in rb.to_pylist():
                out.write(json.dumps(obj, ensure_ascii=False) + "\n")
