"""The shared bounds on data files (server/tabular.py): the CSV quote scanner splits records
as Arrow's and Python's csv parsers do, in one pass, and refuses an unterminated quote, a
cell or a record over its bound naming the line; the parquet footer check refuses what a
file would decode to before anything is decoded; JSON nesting gets a reason."""

from __future__ import annotations

import csv
import io
import json
import pickle
import random
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from evaldock.server import tabular
from evaldock.server.tabular import (
    CellTooLarge,
    CsvScanner,
    ParquetLimits,
    ParquetTooLarge,
    RecordTooLarge,
    UnterminatedQuote,
    check_parquet,
    json_reason,
)


def _random_csv(rng: random.Random, rows: int) -> str:
    pieces = ["a", "b c", "", " ", '"', '""', ",", "\n", "\r\n", 'x"y', "é", "\t"]

    def cell() -> str:
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))
        # A quote not at a cell's start is text (5" screen): such cells stay unquoted.
        if any(ch in text for ch in ",\n\r") or text.startswith('"') or rng.random() < 0.2:
            return '"' + text.replace('"', '""') + '"'
        return text

    lines = ["h1,h2,h3"] + [",".join(cell() for _ in range(3)) for _ in range(rows)]
    return "\n".join(lines) + "\n"


def test_records_are_the_csv_modules_records() -> None:
    rng = random.Random(5)
    for _ in range(200):
        text = _random_csv(rng, rng.randint(1, 8))
        records = list(CsvScanner(",").records(io.StringIO(text, newline="")))
        assert "".join(records) == text
        expected = list(csv.reader(io.StringIO(text, newline="")))
        assert [next(csv.reader([r])) for r in records] == expected


def test_records_are_arrows_rows() -> None:
    rng = random.Random(6)
    for _ in range(100):
        data = _random_csv(rng, rng.randint(1, 8)).encode()
        records = list(CsvScanner(b",").records(io.BytesIO(data)))
        rows = [r for r in records[1:] if r.strip(b"\r\n")]  # Arrow skips blank lines
        table = pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in ("h1", "h2", "h3")},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        assert table.num_rows == len(rows)
        for i, rec in enumerate(rows):
            cells = next(csv.reader(io.StringIO(rec.decode(), newline="")))
            assert [table.column(c)[i].as_py() for c in ("h1", "h2", "h3")] == cells


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_scan_is_records_at_c_speed(block: int) -> None:
    # The same first record, line count and largest record as feeding every line; the
    # same error (type and line) on broken files, whatever the block boundaries.
    rng = random.Random(block)
    texts = [_random_csv(rng, rng.randint(0, 12)) for _ in range(150)]
    texts += [
        'a,b\n1,"open\n' + "x\n" * 50,  # never closes
        '"a,b\n1,2\n',  # in the header
        "a,b\n1,2",  # no final newline
        'a,b\n"x""y",2\r\n3,"z\r\nw"\r\n',
        "",
        "a\n" + "y" * 120 + "\n1\n",  # a cell over the bound below
        'a\n"' + "y\n" * 80 + '"\n',  # a quoted one, across lines
    ]
    for text in texts:
        assert _outcome(text, "records", block) == _outcome(text, "scan", block), text
        raw = text.encode()
        assert _outcome(raw, "records", block) == _outcome(raw, "scan", block), text


def _outcome(data: str | bytes, way: str, block: int) -> tuple[object, ...]:
    scanner: CsvScanner[Any]
    if isinstance(data, bytes):
        scanner, stream = CsvScanner(b",", 100, 500), io.BytesIO(data)
    else:
        # Lines end at "\n" only, as in a binary read (scan() splits there).
        scanner, stream = CsvScanner(",", 100, 500), io.StringIO(data, newline="\n")
    try:
        if way == "records":
            got = list(scanner.records(stream))
            first = got[0] if got else None
        else:
            first = scanner.scan(stream, block)
    except tabular.TabularInvalid as e:
        return type(e), getattr(e, "line", None)
    return first, scanner.line, scanner.largest_record


def test_a_quote_opens_a_cell_only_at_its_start() -> None:
    scanner = CsvScanner(",")
    assert scanner.feed('5" screen,"a ""b"" c",x"y\n')
    assert not scanner.in_quotes
    assert not scanner.feed('a,"open\n')
    assert scanner.feed('closed",b\n')


@pytest.mark.parametrize("lines", [20, 20_000])
def test_an_unterminated_quote_names_the_line_it_opened_on(lines: int) -> None:
    text = "a,b\n1,2\n" + '3,"never closed\n' + "4,5\n" * lines
    with pytest.raises(UnterminatedQuote) as e:
        list(CsvScanner(",").lines(io.StringIO(text)))
    assert e.value.line == 3
    assert "line 3 never closes" in str(e.value)


def test_a_cell_over_the_bound_is_refused_naming_the_line_and_bound() -> None:
    scanner = CsvScanner(b",", cell_limit=100, record_limit=1000)
    with pytest.raises(CellTooLarge) as e:
        list(scanner.records(io.BytesIO(b'a,b\n1,"' + b"x\n" * 60 + b'"\n')))
    assert e.value.line == 2 and "100 bytes" in str(e.value) and "CELL_LIMIT" in str(e.value)
    # Unquoted: the same bound, on the line that holds it.
    with pytest.raises(CellTooLarge, match="a cell on line 3"):
        list(CsvScanner(",", cell_limit=100).lines(io.StringIO("a\n1\n" + "y" * 101 + "\n")))
    # At the bound exactly: read.
    lines = list(CsvScanner(",", cell_limit=100).lines(io.StringIO("a\n" + "y" * 99 + "\n")))
    assert len(lines) == 2


def test_a_record_over_the_bound_is_refused_without_reading_it_whole() -> None:
    stream = io.BytesIO(b"a,b\n" + b"1," * 10_000)  # no line break: one line of 20 kB
    with pytest.raises(RecordTooLarge) as e:
        list(CsvScanner(b",", cell_limit=100, record_limit=1000).lines(stream))
    assert e.value.line == 2 and "RECORD_LIMIT" in str(e.value)
    assert stream.tell() < 2000  # read a record's worth, not the file


def test_the_largest_record_sizes_arrows_block() -> None:
    data = b"a,b\n1,2\n" + b'3,"' + b"z" * 5000 + b'"\n4,5\n'
    scanner = CsvScanner(b",")
    list(scanner.records(io.BytesIO(data)))
    assert scanner.largest_record == len(b'3,"' + b"z" * 5000 + b'"\n')


def _parquet(tmp_path: object, table: pa.Table, **kw: object) -> pq.FileMetaData:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)
    return pq.ParquetFile(io.BytesIO(buf.getvalue())).metadata


def test_a_parquet_bomb_is_refused_by_its_footer(tmp_path: object) -> None:
    # One 32 MiB cell of "a": ~1 kB on disk. Over the mean-value bound and the ratio.
    meta = _parquet(tmp_path, pa.table({"t": ["a" * (32 << 20)], "n": [1]}), compression="zstd")
    with pytest.raises(ParquetTooLarge) as e:
        check_parquet(meta)
    assert "column 't' of row group 0" in str(e.value) and "16 MiB" in str(e.value)
    # The ratio alone, on a column chunk of many small values.
    limits = ParquetLimits(max_value_bytes=1 << 30, ratio_floor=1 << 20)
    with pytest.raises(ParquetTooLarge, match="times as much; the most accepted is 1,000"):
        check_parquet(meta, limits)
    # Only the columns to be read are checked.
    check_parquet(meta, columns=["n"])


def test_parquet_chunk_and_row_group_bounds(tmp_path: object) -> None:
    table = pa.table({"a": [str(i) * 100 for i in range(5000)], "b": list(range(5000))})
    meta = _parquet(tmp_path, table, row_group_size=1000, use_dictionary=False)
    check_parquet(meta)  # an ordinary file passes the defaults
    with pytest.raises(ParquetTooLarge, match="max_column_chunk_bytes"):
        check_parquet(meta, ParquetLimits(max_column_chunk_bytes=50_000))
    with pytest.raises(ParquetTooLarge, match=r"row group 0 decodes to .*max_row_group_bytes"):
        check_parquet(meta, ParquetLimits(max_row_group_bytes=50_000))


def test_json_reasons() -> None:
    with pytest.raises(RecursionError) as deep:
        json.loads("[" * 100_000 + "]" * 100_000)
    assert "nest deeper" in json_reason(deep.value)
    with pytest.raises(json.JSONDecodeError) as bad:
        json.loads("{")
    assert json_reason(bad.value) == bad.value.msg


@pytest.mark.parametrize(
    "error",
    [UnterminatedQuote(3), CellTooLarge(4, True, 10), RecordTooLarge(5), ParquetTooLarge("x")],
)
def test_errors_cross_a_process_boundary_whole(error: Exception) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert vars(again) == vars(error)


def test_the_module_imports_no_surface() -> None:
    source = Path(tabular.__file__).read_text(encoding="utf-8")
    assert "from ." not in source and "evaldock.server." not in source.replace(
        "evaldock.server.tabular", ""
    )
