"""Table I/O: CSV/TSV write-back byte-identical but for the new column, parquet types kept,
JSON Lines objects kept, batches in row order, typed errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from evaldock.server.oxen.tables import (
    EMBEDDING_TYPE,
    ColumnExists,
    ColumnLengthMismatch,
    ColumnNotFound,
    ColumnWriter,
    NotATable,
    TableError,
    TableRefused,
    add_column,
    column_names,
    iter_batches,
    iter_column,
    read_table,
    write_table,
)

# Quoting styles, CRLF endings, an embedded newline, escaped quotes, spaces, an empty cell,
# a blank line and no final newline: everything a rewrite would normalise away.
CSV = (
    b'id,text,"note, quoted"\r\n'
    b'1,"hello, world"," padded "\r\n'
    b'2,"multi\nline","say ""hi"""\r\n'
    b"\r\n"
    b"3,,plain\r\n"
    b'4,"quoted anyway",007'
)


def test_csv_reads_every_cell_as_the_exact_string(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_bytes(CSV)
    t = read_table(src)
    assert t.columns == ("id", "text", "note, quoted") and t.num_rows == 4
    got = [v for batch in iter_column(t, "note, quoted", batch_size=3) for v in batch]
    assert got == [" padded ", 'say "hi"', "plain", "007"]
    assert [len(b["id"]) for b in iter_batches(t, ["id", "text"], batch_size=3)] == [3, 1]
    texts = next(iter_batches(t, ["text"], 10))["text"]
    assert texts == ["hello, world", "multi\nline", "", "quoted anyway"]


def test_csv_write_back_is_byte_identical_except_the_added_column(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_bytes(CSV)
    t = add_column(read_table(src), "pred", ["a", "b,c", None, 'q"x'])
    out = tmp_path / "out.csv"
    write_table(t, out)
    expected = (
        b'id,text,"note, quoted",pred\r\n'
        b'1,"hello, world"," padded ",a\r\n'
        b'2,"multi\nline","say ""hi""","b,c"\r\n'
        b"\r\n"
        b"3,,plain,\r\n"
        b'4,"quoted anyway",007,"q""x"'
    )
    assert out.read_bytes() == expected
    back = read_table(out)
    assert column_names(back) == ["id", "text", "note, quoted", "pred"]
    assert next(iter_column(back, "pred")) == ["a", "b,c", "", 'q"x']
    original = next(iter_column(read_table(src), "note, quoted"))
    assert next(iter_column(back, "note, quoted")) == original


def test_tsv_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "d.tsv"
    src.write_bytes(b"a\tb c\n1\tx, y\n2\t\n")
    t = read_table(src)
    assert t.columns == ("a", "b c") and t.num_rows == 2
    out = tmp_path / "o.tsv"
    write_table(add_column(t, "p", ["P1", "tab\there"]), out)
    assert out.read_bytes() == b'a\tb c\tp\n1\tx, y\tP1\n2\t\t"tab\there"\n'


def test_csv_embeddings_are_json_array_cells(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_bytes(b"t\nx\ny\n")
    t = add_column(read_table(src), "emb", [[0.1, 0.2], [1.0, -2.5]])
    out = tmp_path / "o.csv"
    write_table(t, out)
    assert out.read_bytes() == b't,emb\nx,"[0.1,0.2]"\ny,"[1.0,-2.5]"\n'
    cells = next(iter_column(read_table(out), "emb"))
    assert [json.loads(c) for c in cells] == [[0.1, 0.2], [1.0, -2.5]]


def test_overwrite_rules(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_bytes(b"a,b\n1,2\n3,4\n")
    t = read_table(src)
    with pytest.raises(ColumnExists):
        add_column(t, "b", ["x", "y"])
    with pytest.raises(ColumnLengthMismatch):
        add_column(t, "c", ["x"])
    with pytest.raises(ColumnNotFound):
        next(iter_batches(t, ["zz"]))
    t2 = add_column(t, "b", ["x", "y,z"], overwrite=True)
    assert column_names(t2) == ["a", "b"]
    out = tmp_path / "o.csv"
    write_table(t2, out)
    # An overwritten column re-serialises (minimal quoting); cell values stay exact.
    assert out.read_bytes() == b'a,b\n1,x\n3,"y,z"\n'
    t3 = add_column(add_column(t, "p", ["1", "2"]), "p", ["3", "4"], overwrite=True)
    assert next(iter_column(t3, "p")) == ["3", "4"]


def test_parquet_keeps_arrow_types_and_metadata(tmp_path: Path) -> None:
    src = tmp_path / "d.parquet"
    table = pa.table(
        {
            "i": pa.array([1, 2, 3], pa.int16()),
            "f": pa.array([0.5, None, 2.0], pa.float32()),
            "s": ["a", "b", None],
            "ts": pa.array([1, 2, 3], pa.timestamp("ms")),
            "l": pa.array([[1], [], [2, 3]], pa.list_(pa.int64())),
        }
    ).replace_schema_metadata({b"origin": b"test"})
    pq.write_table(table, src)
    t = read_table(src)
    assert t.num_rows == 3
    t = add_column(t, "pred", ["x", "y", "z"])
    t = add_column(t, "emb", [[0.25, 0.5], [1.0, 2.0], None])
    out = tmp_path / "o.parquet"
    write_table(t, out)
    back = pq.read_table(out)
    for name in table.column_names:
        assert back.schema.field(name).type == table.schema.field(name).type
        assert back.column(name).to_pylist() == table.column(name).to_pylist()
    assert back.schema.field("emb").type == EMBEDDING_TYPE
    assert back.column("emb").to_pylist() == [[0.25, 0.5], [1.0, 2.0], None]
    assert back.schema.metadata[b"origin"] == b"test"
    # Batches come in row order, across parquet batch boundaries.
    values = [v for b in iter_column(read_table(out), "i", batch_size=2) for v in b]
    assert values == [1, 2, 3]


def test_parquet_many_rows_in_batches(tmp_path: Path) -> None:
    n = 20_000
    src = tmp_path / "big.parquet"
    pq.write_table(pa.table({"k": pa.array(range(n), pa.int32())}), src, row_group_size=3000)
    t = add_column(read_table(src), "p", [str(i) for i in range(n)])
    out = tmp_path / "o.parquet"
    write_table(t, out)
    seen = 0
    for batch in iter_batches(read_table(out), ["k", "p"], batch_size=7000):
        assert batch["p"] == [str(k) for k in batch["k"]]
        assert batch["k"][0] == seen
        seen += len(batch["k"])
    assert seen == n


def test_jsonl_keeps_each_object_and_adds_one_key(tmp_path: Path) -> None:
    src = tmp_path / "d.jsonl"
    lines = [
        '{"id": 1, "text": "a", "n": 1.50, "nested": {"k": [1, 2]}}',
        '{"id":2,"text":"ü","n":1e5}',
        "",
        "{ }",
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    t = read_table(src)
    assert t.columns == ("id", "text", "n", "nested") and t.num_rows == 3
    assert next(iter_column(t, "text")) == ["a", "ü", None]
    t = add_column(t, "pred", ["x", "y", "z"])
    t = add_column(t, "emb", [[0.1], [0.2, 0.3], None])
    out = tmp_path / "o.jsonl"
    write_table(t, out)
    got = out.read_text(encoding="utf-8").split("\n")
    assert got[0] == (
        '{"id": 1, "text": "a", "n": 1.50, "nested": {"k": [1, 2]}, "pred": "x", "emb": [0.1]}'
    )
    assert got[1] == '{"id":2,"text":"ü","n":1e5,"pred":"y","emb":[0.2,0.3]}'
    assert got[2] == ""
    assert got[3] == '{"pred":"z","emb":null}'
    objs = [json.loads(line) for line in got if line]
    assert [list(o) for o in objs][:2] == [
        ["id", "text", "n", "nested", "pred", "emb"],
        ["id", "text", "n", "pred", "emb"],
    ]


def test_jsonl_to_parquet_and_back_to_csv(tmp_path: Path) -> None:
    src = tmp_path / "d.jsonl"
    src.write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')
    t = add_column(read_table(src), "emb", [[0.5], [1.5]])
    write_table(t, tmp_path / "o.parquet")
    back = pq.read_table(tmp_path / "o.parquet")
    assert back.column("a").to_pylist() == [1, 2]
    assert back.schema.field("emb").type == EMBEDDING_TYPE
    write_table(read_table(tmp_path / "o.parquet"), tmp_path / "o.csv")
    assert (tmp_path / "o.csv").read_text() == "a,b,emb\n1,x,[0.5]\n2,y,[1.5]\n"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("notes.txt", b"hello"),
        ("empty.csv", b""),
        ("dup.csv", b"a,a\n1,2\n"),
        ("bad.jsonl", b'{"a": 1}\n[1, 2]\n'),
        ("broken.jsonl", b'{"a": 1\n'),
        ("fake.parquet", b"not parquet at all"),
    ],
)
def test_not_a_table(tmp_path: Path, name: str, data: bytes) -> None:
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(NotATable):
        read_table(p)


def test_a_quote_inside_an_unquoted_cell_is_literal(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_bytes(b'size,name\n5" screen,tv\n6,"a ""b"" c"\n7,x"y\n')
    t = read_table(src)
    assert next(iter_column(t, "size")) == ['5" screen', "6", "7"]
    assert next(iter_column(t, "name")) == ["tv", 'a "b" c', 'x"y']
    out = tmp_path / "o.csv"
    write_table(add_column(t, "p", ["1", "2", "3"]), out)
    assert out.read_bytes() == b'size,name,p\n5" screen,tv,1\n6,"a ""b"" c",2\n7,x"y,3\n'


def _parts_column(folder: Path, values: list[str], step: int) -> ColumnWriter:
    writer = ColumnWriter(folder, pa.string())
    for start in range(0, len(values), step):
        writer.write(start, pa.array(values[start : start + step]), {"n": str(start)})
    return writer


@pytest.mark.parametrize("ext", ["csv", "parquet", "jsonl"])
def test_column_written_in_parts_fills_every_format(tmp_path: Path, ext: str) -> None:
    # Parts of 7 rows against source batches of other sizes: the cursor joins and splits.
    n = 50
    src = tmp_path / f"d.{ext}"
    if ext == "csv":
        src.write_text("k\n" + "".join(f"{i}\n" for i in range(n)))
    elif ext == "jsonl":
        src.write_text("".join(json.dumps({"k": str(i)}) + "\n" for i in range(n)))
    else:
        pq.write_table(pa.table({"k": [str(i) for i in range(n)]}), src, row_group_size=9)
    column = _parts_column(tmp_path / "parts", [f"p{i}" for i in range(n)], 7).column(n)
    assert len(column.parts) == 8
    out = tmp_path / f"o.{ext}"
    write_table(add_column(read_table(src), "p", column), out)
    got = [b for b in iter_batches(read_table(out), ["k", "p"], batch_size=11)]
    assert [p for b in got for p in b["p"]] == [f"p{k}" for b in got for k in b["k"]]
    assert sum(len(b["k"]) for b in got) == n


def test_column_writer_resume_keeps_whole_parts_only(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    _parts_column(folder, [str(i) for i in range(20)], 5)
    (folder / "part-000000000010.arrow").write_bytes(b"torn")  # a part cut by a crash
    done, metas = ColumnWriter(folder, pa.string()).resume()
    # Rows 0-9 survive; the torn part and the one after the gap are removed.
    assert done == 10
    assert [m[b"n"] for m in metas] == [b"0", b"5"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "part-000000000000.arrow",
        "part-000000000005.arrow",
    ]


# -- bounded before they start (issue 17) -----------------------------------------------


@pytest.mark.parametrize(
    ("head", "line"),
    [
        (b'text,label\n"opened here,0\n', 2),  # in a row: Arrow said "straddles" in 0.3 s
        (b'"text,label\n', 1),  # in the header: quadratic, minutes for 7.6 MB
    ],
)
def test_an_unterminated_quote_is_refused_naming_its_line(
    tmp_path: Path, head: bytes, line: int
) -> None:
    src = tmp_path / "d.csv"
    src.write_bytes(head + b"some words, more words,1\n" * 40_000)  # 1 MB after the quote
    with pytest.raises(TableRefused) as e:
        read_table(src)
    assert isinstance(e.value, TableError)
    assert f"opens on line {line} never closes" in str(e.value)


def test_a_3_7_mb_quoted_cell_reads_back_exactly(tmp_path: Path) -> None:
    cell = ("x" * 58 + '"' + "\n") * (3_700_000 // 60) + "with, a comma"
    src = tmp_path / "d.csv"
    body = b'text,label\nshort,0\n"' + cell.replace('"', '""').encode() + b'",1\nafter,2\n'
    src.write_bytes(body)
    t = read_table(src)
    assert t.num_rows == 3
    assert next(iter_column(t, "text")) == ["short", cell, "after"]
    # The write-back splices the same records: the big one byte for byte.
    out = tmp_path / "o.csv"
    write_table(add_column(t, "p", ["a", "b", "c"]), out)
    big = b'"' + cell.replace('"', '""').encode() + b'"'
    assert out.read_bytes() == b"text,label,p\nshort,0,a\n" + big + b",1,b\nafter,2,c\n"


def test_a_cell_over_16_mib_is_refused_naming_the_bound(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_bytes(b'a,b\n1,"' + b"y" * (16 * 1024 * 1024 + 1) + b'"\n')
    with pytest.raises(TableRefused, match="opens on line 2 is longer than 16 MiB"):
        read_table(src)


def test_a_parquet_bomb_is_refused_by_its_footer(tmp_path: Path) -> None:
    # One 32 MiB cell of "a" stored in ~1 kB: refused before any page is decoded (a 400
    # MiB cell took a page read from 96 to 2,489 MB).
    src = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"text": ["a" * (32 << 20)]}), src, compression="zstd")
    assert src.stat().st_size < 100_000
    with pytest.raises(TableRefused) as e:
        read_table(src)
    assert "column 'text' of row group 0" in str(e.value)
    assert "the most one value may decode to is 16 MiB" in str(e.value)


def test_json_lines_nested_too_deep_name_the_line(tmp_path: Path) -> None:
    src = tmp_path / "d.jsonl"
    src.write_text('{"a": 1}\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(NotATable, match=r"line 2 is not JSON .*nest deeper"):
        read_table(src)
