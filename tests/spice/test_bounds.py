"""Spice dataset files are read within bounds (server/tabular.py): an unterminated quote is
an error naming the line it opened on (not the rest of the file swallowed into one cell),
a cell over 16 MiB is refused naming the bound, a parquet file is checked by its footer
before a page is decoded, JSON nested too deep names its line (not a RecursionError)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from evaldock.server.spice.spicepod import SpicepodError, read_rows

ROWS = b"what is 2+2,4\n" * 20_000


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (b'input,ideal\n"opened here,4\n' + ROWS, 2),  # was: one case, the file its input
        (b'"input,ideal\n' + ROWS, 1),  # was: no cases at all
    ],
    ids=["in-a-row", "in-the-header"],
)
def test_an_unterminated_quote_names_its_line(tmp_path: Path, text: bytes, line: int) -> None:
    path = tmp_path / "cases.csv"
    path.write_bytes(text)
    with pytest.raises(SpicepodError, match=f"opens on line {line} never closes"):
        read_rows(path, 100_000)


def test_quoted_cells_with_line_breaks_still_read(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_bytes(b'input,ideal\r\n"two\r\nlines","a ""quoted"" word"\r\n5" screen,x\r\n')
    assert read_rows(path, 10) == [
        {"input": "two\nlines", "ideal": 'a "quoted" word', "output": None},
        {"input": '5" screen', "ideal": "x", "output": None},
    ]


def test_a_cell_over_16_mib_is_refused_naming_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_bytes(b'input,ideal\nq,"' + b"y" * (16 * 1024 * 1024 + 1) + b'"\n')
    with pytest.raises(SpicepodError, match="opens on line 2 is longer than 16 MiB"):
        read_rows(path, 10)


def test_a_parquet_bomb_is_refused_by_its_footer(tmp_path: Path) -> None:
    # One 32 MiB ideal stored in ~1 kB (a 400 MiB one took a read to 1.7 GB): refused
    # from the footer, before a page is decoded.
    path = tmp_path / "cases.parquet"
    table = pa.table({"input": ["q"], "ideal": ["a" * (32 << 20)]})
    pq.write_table(table, path, compression="zstd")
    with pytest.raises(SpicepodError) as e:
        read_rows(path, 10)
    assert "column 'ideal' of row group 0" in str(e.value)
    assert "the most one value may decode to is 16 MiB" in str(e.value)


def test_parquet_columns_spice_does_not_read_are_not_checked(tmp_path: Path) -> None:
    path = tmp_path / "cases.parquet"
    table = pa.table({"input": ["q"], "ideal": ["4"], "notes": ["a" * (32 << 20)]})
    pq.write_table(table, path, compression="zstd")
    assert read_rows(path, 10) == [{"input": "q", "ideal": "4", "output": None}]


def test_parquet_over_max_cases_is_refused_from_the_footer(tmp_path: Path) -> None:
    path = tmp_path / "cases.parquet"
    pq.write_table(pa.table({"input": ["q"] * 11, "ideal": ["4"] * 11}), path)
    with pytest.raises(SpicepodError, match=r"more than 10 cases \(setting \[spice\] max_cases\)"):
        read_rows(path, 10)


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        (
            "cases.jsonl",
            '{"input": "q", "ideal": "4"}\n{"input": "q", "ideal": ' + DEEP + "}\n",
            "line 2",
        ),
        ("cases.json", '[{"input": "q", "ideal": ' + DEEP + "}]", "the JSON array"),
    ],
    ids=["jsonl", "json-array"],
)
def test_json_nested_too_deep_is_an_error_not_a_recursion_error(
    tmp_path: Path, name: str, text: str, needle: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpicepodError) as e:
        read_rows(path, 10)
    assert needle in str(e.value) and "nest deeper" in str(e.value)


def test_a_levenshtein_pair_past_the_bound_fails_the_run_naming_its_case(client) -> None:
    long_a, long_b = "a" * 1_000_000, "b" * 1_000_000  # a million edits apart
    data = [
        {"input": "short", "ideal": "answer", "output": "answer"},
        {"input": "long", "ideal": long_a, "output": long_b},
    ]
    body = {"dataset": "long_ds", "scorers": ["levenshtein"], "data": data}
    assert client.put("/v1/evals/long", json=body).status_code == 200
    run = client.post("/v1/evals/long", json={"model": "replay"}).json()[0]
    assert run["status"] == "Failed", run
    reason = str(run.get("error") or run)
    assert "on case 2" in reason and "LEVENSHTEIN_MAX_CELLS" in reason, reason
