import csv
import io

import pytest

from evaldock.server.negotiation import CSV, JSON, TEXT, choose, to_csv, to_text_table


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("text/csv", CSV),
        ("text/plain", TEXT),
        ("text/*", CSV),
        ("text/csv;q=0.5, text/plain", TEXT),
        ("text/csv, */*;q=0.1", CSV),
        ("application/xml", JSON),  # nothing servable: JSON, never 406
        ("application/json;q=0, text/csv;q=0.2", CSV),
        ("text/plain, application/json", TEXT),
        ("application/json, text/plain, */*", JSON),  # axios' default
    ],
)
def test_choose(accept: str | None, expected: str) -> None:
    assert choose(accept) == expected


def test_csv_round_trips_nested_values() -> None:
    rows = [{"a": 1, "b": "x,y", "c": {"k": [1, 2]}}, {"a": None, "b": 'q"uote'}]
    text = to_csv(rows, ["a", "b", "c"])
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed == [["a", "b", "c"], ["1", "x,y", '{"k":[1,2]}'], ["", 'q"uote', ""]]


def test_text_table_is_aligned() -> None:
    table = to_text_table([{"id": 1, "name": "long name"}, {"id": 22, "name": "x"}], ["id", "name"])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[0].startswith("+----+")
    assert lines[1] == "| id | name      |"
    assert lines[3] == "| 1  | long name |"
    assert to_text_table([], ["id"]).splitlines() == ["+----+", "| id |", "+----+"]
