"""Bounds on tabular data files, checked before (or while) they are read.

Every surface that reads data files (Oxen's tables, Spice's and Marqtune's datasets) calls
these, so a file is refused for the same reason, with the same message, everywhere. The
errors are :class:`TabularInvalid`\\ s (``ValueError``); each surface wraps them in its
own invalid-data error, prefixed with the file's name. Imports nothing from a surface
and, at import, not pyarrow (Marqtune reads no parquet).

- **CSV quoting, in one linear pass** (:class:`CsvScanner`). Whether a line ends a record
  depends on every quote before it, so a reader that re-examines the open record at each
  line (``pending += line``, or a parser retried on a growing block) is quadratic when a
  quote never closes: a 7.6 MB CSV whose first quote never closes took minutes. The
  scanner keeps the quote state across lines and looks at each byte once (``find`` from
  quote to quote and delimiter to delimiter; a line with no quote is one ``in`` test, and
  :meth:`CsvScanner.scan` passes runs of ordinary lines with one regular expression), so
  an unterminated quote is :class:`UnterminatedQuote` naming the line it opened on, after
  one pass. Quoting as Arrow's and Python's ``csv`` parsers read it: a ``"`` opens a quoted
  cell only at the start of a cell (``5" screen`` is text), ``""`` inside one is a quote.
- **Cells and records** are bounded: :data:`CELL_LIMIT` (16 MiB) per cell,
  :data:`RECORD_LIMIT` (64 MiB) per record. Arrow's CSV reader must hold one whole record
  in its read block, so the largest record a scan saw is the block size to read it with
  (:attr:`CsvScanner.largest_record`): a 3.7 MB quoted cell is read, not refused with
  "straddles two block boundaries".
- **parquet** (:func:`check_parquet`): the footer says, before any page is decoded, what
  each column chunk decodes to (``total_uncompressed_size``), how many values it holds
  and how well it compressed. A 13 kB file holding one 400 MiB cell of ``a`` took a read
  from 96 to 2,489 MB; the footer alone refuses it (:class:`ParquetTooLarge`).
- **JSON**: Python's JSON reader raises ``RecursionError`` (a 500, not a 400) on nesting
  deeper than about 1,000 levels; :data:`JSON_ERRORS` and :func:`json_reason` turn both
  kinds of failure into a reason a surface puts in its own error, with the line.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, AnyStr, Generic

if TYPE_CHECKING:
    import pyarrow.parquet as pq

MiB = 1 << 20
# One CSV cell: a dataset cell may hold a whole chat transcript (hundreds of kB), 16 MiB
# is far past any and bounds a runaway quote. Bytes in a binary read, characters in a
# text read (as the csv module's field_size_limit counts them).
CELL_LIMIT = 16 * MiB
# One CSV record (all its cells and line breaks): what Arrow's reader holds in one block,
# and what one line read from a file may cost before it is refused. Four cells at the
# cell limit.
RECORD_LIMIT = 64 * MiB
# JSON errors a reader turns into "line N is not JSON": a decode error, and the
# RecursionError Python's reader raises past its nesting depth.
JSON_ERRORS = (ValueError, RecursionError)


class TabularInvalid(ValueError):
    """A data file refused before or while it is read; the message says which line,
    column or bound, and what to change. Surfaces prefix the file's name."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its message and attributes, not its __init__ (the subclasses take
        # other arguments): it crosses a worker process's pipe whole, as a surface
        # error's ``cause`` too.
        return _rebuild, (type(self), self.args, dict(vars(self)))


def _rebuild(
    cls: type[TabularInvalid], args: tuple[Any, ...], attrs: dict[str, Any]
) -> TabularInvalid:
    exc = cls.__new__(cls)
    ValueError.__init__(exc, *args)
    vars(exc).update(attrs)
    return exc


class UnterminatedQuote(TabularInvalid):
    def __init__(self, line: int) -> None:
        super().__init__(
            f"the quoted cell that opens on line {line} never closes (no matching '\"' "
            'before the end of the file); close it, or write a quote inside a cell as ""'
        )
        self.line = line


class CellTooLarge(TabularInvalid):
    def __init__(self, line: int, quoted: bool, limit: int = CELL_LIMIT) -> None:
        what = f"the quoted cell that opens on line {line}" if quoted else f"a cell on line {line}"
        fix = "close its quote where the cell ends, or " if quoted else ""
        super().__init__(
            f"{what} is longer than {_size(limit)}, the most one cell may hold "
            f"(evaldock.server.tabular.CELL_LIMIT); {fix}split the cell"
        )
        self.line = line
        self.limit = limit


class RecordTooLarge(TabularInvalid):
    def __init__(self, line: int, limit: int = RECORD_LIMIT) -> None:
        super().__init__(
            f"the record that starts on line {line} is longer than {_size(limit)}, the most "
            "one row may hold (evaldock.server.tabular.RECORD_LIMIT); split the row, or "
            "check that the file's lines end in \\n"
        )
        self.line = line
        self.limit = limit


class ParquetTooLarge(TabularInvalid):
    """A parquet file whose footer says it decodes to more than a bound allows."""


def _size(n: float) -> str:
    if n >= MiB:
        return f"{n / MiB:,.1f} MiB".replace(".0 MiB", " MiB")
    return f"{int(n):,} bytes"


# -- CSV ---------------------------------------------------------------------------------
class CsvScanner(Generic[AnyStr]):
    """The quote state of a CSV file, one physical line at a time, in one linear pass.

    ``CsvScanner(b",")`` scans bytes, ``CsvScanner(",")`` text. :meth:`lines` and
    :meth:`records` read a stream through it, handing each line or record on; :meth:`scan`
    only checks one (fast); :meth:`feed` takes one line (with its line ending) and says
    whether the line ends a record. Raises :class:`CellTooLarge`, :class:`RecordTooLarge`
    as soon as a bound is passed and :class:`UnterminatedQuote` from :meth:`finish` (which
    the three readers call at the end).
    """

    def __init__(
        self, delimiter: AnyStr, cell_limit: int = CELL_LIMIT, record_limit: int = RECORD_LIMIT
    ) -> None:
        self.delimiter: AnyStr = delimiter
        self.quote: AnyStr = '"' if isinstance(delimiter, str) else b'"'
        self.newline: AnyStr = "\n" if isinstance(delimiter, str) else b"\n"
        # A line that is one whole record, every quoted cell closed and every other cell
        # free of quotes. Possessive quantifiers: no backtracking, linear in the line. A
        # line it does not match (a quote mid-cell, a cell going on to the next line)
        # takes the scan in Python; on lines it matches the two agree. ``_simple`` runs
        # of such lines are what :meth:`scan` passes in C (83 MB of CSV with a quoted cell
        # on every line: 0.6 s, where feeding each line took 1.5 s).
        text = delimiter if isinstance(delimiter, str) else delimiter.decode("latin-1")
        d = re.escape(text)
        cell = f'"(?:[^"\\n]++|"")*+"|[^"{d}\\n]*+'
        line = f"(?:{cell})(?:{d}(?:{cell}))*+\\r?"
        self._whole: Callable[[AnyStr], re.Match[AnyStr] | None]
        self._whole = self._compile(f"{line}\\n?", delimiter).fullmatch
        self._simple: Callable[[AnyStr, int], re.Match[AnyStr] | None]
        self._simple = self._compile(f"(?:{line}\\n)*+", delimiter).match
        self.cell_limit = cell_limit
        self.record_limit = record_limit
        self.line = 0  # physical lines fed so far
        self.in_quotes = False
        self.largest_record = 0  # bytes (or characters) of the longest record so far
        self._opened_on = 0  # the line of the open quote
        self._carried = 0  # length of the open cell on earlier lines of its record
        self._quoted = False  # whether the open cell started with a quote
        self._record = 0  # length of the open record so far
        self._record_line = 1  # the line the open record started on
        self._head: list[AnyStr] | None = None  # scan(): the first record's lines
        self._first: AnyStr | None = None  # scan(): the first record

    @staticmethod
    def _compile(pattern: str, like: AnyStr) -> re.Pattern[AnyStr]:
        return re.compile(pattern if isinstance(like, str) else pattern.encode("latin-1"))

    def feed(self, line: AnyStr) -> bool:
        """Scan one line (with its line ending); True when it ends a record."""
        self.line += 1
        if not self._record:
            self._record_line = self.line
        self._record += len(line)
        if self._record > self.record_limit:
            raise RecordTooLarge(self._record_line, self.record_limit)
        if not self.in_quotes and self.quote not in line:
            # The common line: no quote, so its cells are what split() says. Only a line
            # longer than a cell may be needs its cells measured.
            if len(line) > self.cell_limit and max(map(len, line.split(self.delimiter))) > (
                self.cell_limit
            ):
                raise CellTooLarge(self.line, False, self.cell_limit)
        elif not self.in_quotes and len(line) <= self.cell_limit and self._whole(line):
            pass  # a record of whole cells on one line, quoted ones closed: matched in C
        else:
            self._scan(line)
            if self.in_quotes:
                return False
        self.largest_record = max(self.largest_record, self._record)
        self._record = 0
        return True

    def _scan(self, line: AnyStr) -> None:
        quote, delimiter = self.quote, self.delimiter
        i, n = 0, len(line)
        start = 0  # where the open cell's part on this line begins
        at_cell_start = not self.in_quotes
        while i < n:
            if self.in_quotes:
                j = line.find(quote, i)
                if j < 0:
                    break  # the quoted cell goes on to the next line
                if line[j + 1 : j + 2] == quote:
                    i = j + 2  # "" is one quote inside the cell
                    continue
                self.in_quotes, i = False, j + 1
            elif at_cell_start and line[i : i + 1] == quote:
                self.in_quotes, self._opened_on, self._quoted = True, self.line, True
                at_cell_start, i = False, i + 1
            else:
                k = line.find(delimiter, i)
                self._cell_ends((n if k < 0 else k) - start)
                if k < 0:
                    return
                start = i = k + 1
                at_cell_start = True
        if self.in_quotes:
            self._carried += n - start
            if self._carried > self.cell_limit:
                raise CellTooLarge(self._opened_on, True, self.cell_limit)
        else:
            self._cell_ends(n - start)

    def _cell_ends(self, length: int) -> None:
        """A cell ends: ``length`` on this line, after what earlier lines carried."""
        total, quoted = self._carried + length, self._quoted
        self._carried, self._quoted = 0, False
        if total > self.cell_limit:
            line = self._opened_on if quoted else self.line
            raise CellTooLarge(line, quoted, self.cell_limit)

    def finish(self) -> None:
        """The end of the file: raises :class:`UnterminatedQuote` if a quote is open."""
        if self.in_quotes:
            raise UnterminatedQuote(self._opened_on)

    def scan(self, stream: IO[AnyStr], block: int = 1 << 20) -> AnyStr | None:
        """Read the whole stream through the scanner; its first record (a CSV's header),
        or None when it is empty. Raises as :meth:`feed` does, and
        :class:`UnterminatedQuote` at the end.

        What :meth:`records` checks, at C speed: the stream is read ``block`` at a time;
        runs of lines that are whole records of closed cells are passed by one regular
        expression, the inside of an open quoted cell by ``find``; only the lines between
        (a quote mid-cell, where a quoted cell opens or closes) go through :meth:`feed`.
        """
        nl = self.newline
        parts: list[AnyStr] = []  # a line begun in an earlier block, in parts
        size = 0
        self._head, self._first = [], None
        while chunk := stream.read(block):
            end = chunk.rfind(nl) + 1
            if not end:
                parts.append(chunk)
                size += len(chunk)
                if self._record + size > self.record_limit:
                    line = self._record_line if self._record else self.line + 1
                    raise RecordTooLarge(line, self.record_limit)
                continue
            parts.append(chunk[:end])
            self._scan_text(chunk[:0].join(parts))  # each byte joined once
            parts, size = [chunk[end:]], len(chunk) - end
        if size:
            self._scan_text(parts[0][:0].join(parts))
        self.finish()
        return self._first

    def _scan_text(self, text: AnyStr) -> None:
        """Scan whole lines (the last one may lack its line ending, at the end)."""
        nl, pos, end = self.newline, 0, len(text)
        while pos < end:
            if self._head is not None:  # the first record: line by line, kept
                j = text.find(nl, pos) + 1 or end
                self._head.append(text[pos:j])
                if self.feed(text[pos:j]):
                    self._first, self._head = text[:0].join(self._head), None
                pos = j
                continue
            if not self.in_quotes:
                run = self._simple(text, pos)
                stop = run.end() if run else pos
                if stop > pos:
                    self._pass_records(text, pos, stop)
                    pos = stop
                    continue
            else:
                # Inside a quoted cell, the lines before the next quote's are its text.
                q = text.find(self.quote, pos)
                inside = end if q < 0 else text.rfind(nl, pos, q) + 1
                if inside > pos:
                    self._pass_quoted(text, pos, inside)
                    pos = inside
                    continue
            j = text.find(nl, pos) + 1 or end
            self.feed(text[pos:j])
            pos = j

    def _pass_records(self, text: AnyStr, pos: int, stop: int) -> None:
        """``text[pos:stop]``: lines that are each a whole record of closed cells."""
        nl = self.newline
        if stop - pos > self.largest_record:  # a line here may be the longest yet
            longest = max(map(len, text[pos:stop].split(nl))) + len(nl)
            if longest > min(self.cell_limit, self.record_limit):
                while pos < stop:  # rare: feed() measures each cell and names the line
                    j = text.find(nl, pos) + 1
                    self.feed(text[pos:j])
                    pos = j
                return
            self.largest_record = max(self.largest_record, longest)
        self.line += text.count(nl, pos, stop)

    def _pass_quoted(self, text: AnyStr, pos: int, inside: int) -> None:
        """``text[pos:inside]``: whole lines inside the open quoted cell."""
        length = inside - pos
        self.line += text.count(self.newline, pos, inside)
        self._record += length
        if self._record > self.record_limit:
            raise RecordTooLarge(self._record_line, self.record_limit)
        self._carried += length
        if self._carried > self.cell_limit:
            raise CellTooLarge(self._opened_on, True, self.cell_limit)

    def lines(self, stream: IO[AnyStr]) -> Iterator[AnyStr]:
        """The stream's lines, each scanned before it is handed on (to ``csv.reader``).

        A line is read at most ``record_limit + 1`` long, so a file with no line breaks
        costs one record's worth of memory before it is refused.
        """
        readline, limit = stream.readline, self.record_limit + 1
        while line := readline(limit):
            self.feed(line)
            yield line
        self.finish()

    def records(self, stream: IO[AnyStr]) -> Iterator[AnyStr]:
        """The stream's records, each with its own line ending (a blank line is a record).

        Lines of a record are joined once, at its end: never a growing concatenation.
        """
        parts: list[AnyStr] = []
        readline, limit = stream.readline, self.record_limit + 1
        while line := readline(limit):
            if self.feed(line):
                if parts:
                    parts.append(line)
                    yield line[:0].join(parts)
                    parts = []
                else:
                    yield line
            else:
                parts.append(line)
        self.finish()


# -- parquet -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ParquetLimits:
    """What a parquet file may decode to, read from its footer before any page is.

    ``max_value_bytes``: the mean decoded size of one value of a column chunk (a chunk's
    ``total_uncompressed_size`` over its ``num_values``): one cell, as :data:`CELL_LIMIT`
    bounds a CSV cell. The 400 MiB cell is one value of 400 MiB.
    ``max_column_chunk_bytes``: one column of one row group, decoded: 1 GiB, the largest
    upload Oxen takes by default (a reader streams a chunk's pages, so a big chunk of
    small values costs one batch; this bounds the work, the mean bounds the memory).
    ``max_row_group_bytes``: one row group, all columns, decoded (Spice reads a whole file
    at once; four chunks at the chunk bound).
    ``max_ratio``: decoded over stored bytes of a column chunk, for chunks that decode to
    more than ``ratio_floor``. Text compresses 3-10x and repetitive text with zstd some
    100x; 1,000x is a file built to expand (the 400 MiB cell is stored in 13 kB: 32,000x).
    Small chunks skip it (16 MiB of anything is cheap).

    Dictionary-encoded chunks can decode to more than ``total_uncompressed_size`` (a
    repeated value is stored once); the footer does not say how much more, so that case is
    bounded by the readers' batch sizes and the worker's memory limit, not here.
    """

    max_value_bytes: int = CELL_LIMIT
    max_column_chunk_bytes: int = 1024 * MiB
    max_row_group_bytes: int = 4096 * MiB
    max_ratio: float = 1000.0
    ratio_floor: int = 16 * MiB


PARQUET_LIMITS = ParquetLimits()


def check_parquet(
    metadata: pq.FileMetaData,
    limits: ParquetLimits = PARQUET_LIMITS,
    columns: Collection[str] | None = None,
) -> None:
    """Raise :class:`ParquetTooLarge` when the footer says a row group or column chunk
    decodes past ``limits``; ``columns`` (top-level names) limits the check to the columns
    that will be read. Reads only the footer: O(row groups x columns)."""
    bounds = "evaldock.server.tabular.ParquetLimits"
    smaller_groups = (
        f"; write the file with smaller row groups (pyarrow: row_group_size=) ({bounds})"
    )
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        decoded = 0
        for c in range(group.num_columns):
            chunk = group.column(c)
            path = chunk.path_in_schema
            if columns is not None and path.split(".", 1)[0] not in columns:
                continue
            size, stored = chunk.total_uncompressed_size, chunk.total_compressed_size
            decoded += size
            where = f"column {path!r} of row group {g}"
            values = max(chunk.num_values, 1)
            if size / values > limits.max_value_bytes:
                raise ParquetTooLarge(
                    f"{where} decodes to {_size(size)} in {chunk.num_values:,} value(s), "
                    f"{_size(size / values)} a value; the most one value may decode to is "
                    f"{_size(limits.max_value_bytes)} (max_value_bytes); split the cells "
                    f"({bounds})"
                )
            if size > limits.max_column_chunk_bytes:
                raise ParquetTooLarge(
                    f"{where} decodes to {_size(size)}; the most one column chunk may decode "
                    f"to is {_size(limits.max_column_chunk_bytes)} (max_column_chunk_bytes)"
                    f"{smaller_groups}"
                )
            if size > limits.ratio_floor and size > limits.max_ratio * max(stored, 1):
                raise ParquetTooLarge(
                    f"{where} is stored in {_size(stored)} and decodes to {_size(size)}, "
                    f"{size / max(stored, 1):,.0f} times as much; the most accepted is "
                    f"{limits.max_ratio:,.0f} times (max_ratio, for chunks over "
                    f"{_size(limits.ratio_floor)}), past what data compresses to: a file built "
                    f"to expand ({bounds})"
                )
        if decoded > limits.max_row_group_bytes:
            raise ParquetTooLarge(
                f"row group {g} decodes to {_size(decoded)}; the most one row group may "
                f"decode to is {_size(limits.max_row_group_bytes)} (max_row_group_bytes)"
                f"{smaller_groups}"
            )


# -- JSON --------------------------------------------------------------------------------
def json_reason(exc: BaseException) -> str:
    """Why a JSON text did not parse, for "line N is not JSON (...)" messages."""
    if isinstance(exc, RecursionError):
        return (
            "arrays/objects nest deeper than the JSON reader goes, about "
            f"{sys.getrecursionlimit():,} levels"
        )
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    return str(exc)
