"""Marqtune dataset files are read within the shared bounds (server/tabular.py): an
unterminated quote is an error naming the line it opened on (the csv module alone took
the rest of the file as the last cell, and a row of the right width passed), a cell up to
16 MiB is read and one over it refused naming the bound, JSON nested too deep in
documents.jsonl names its line (not a RecursionError)."""

from __future__ import annotations

import json

import pytest

from evaldock.server.marqtune import datasets
from evaldock.server.marqtune.datasets import DatasetInvalid, Schema

from .helpers import SCHEMA, TAR_QUERIES, TAR_SCHEMA, tar_bytes

EVAL = Schema("evaluation", dict(SCHEMA), ["query"], ["title", "image"])
TAR = Schema("evaluation", dict(TAR_SCHEMA), ["query"], ["title", "image"])
# The image column last: a quote opened in it swallows the rest of the file as one cell.
HEADER = "query,score,title,image\n"
ROWS = "".join(f"q{i},{i % 10},title {i},img/{i}.png\n" for i in range(2000))


def test_an_unterminated_quote_names_the_line_it_opened_on() -> None:
    data = HEADER + "red shirt,3,red shirt,img/red.png\n" + 'hat,5,hat,"img/hat.png\n' + ROWS
    with pytest.raises(DatasetInvalid) as e:
        datasets.parse(data.encode(), EVAL)
    assert "opens on line 3 never closes" in str(e.value)
    assert str(e.value).startswith("The file is not valid CSV")


def test_an_unterminated_quote_in_a_tar_member_names_it() -> None:
    documents = "\n".join(json.dumps({"pid": p, "title": p, "image": p}) for p in ("p1", "p2"))
    queries = TAR_QUERIES + 'blue jeans,"p2,4\n'
    data = tar_bytes({"queries.csv": queries, "documents.jsonl": documents})
    with pytest.raises(DatasetInvalid, match=r"queries\.csv is not valid CSV: .*line 5"):
        datasets.parse(data, TAR)


def test_a_cell_up_to_the_bound_is_read_and_over_it_refused() -> None:
    big = "x" * (1 << 20)  # past the csv module's 128 KiB default
    data = HEADER + f'red shirt,3,"{big}",img/red.png\n'
    _, parsed, _ = datasets.parse(data.encode(), EVAL)
    assert parsed is not None and parsed.fields[0]["title"] == big
    over = HEADER + f'red shirt,3,"{"y" * (16 * 1024 * 1024 + 1)}",img/red.png\n'
    with pytest.raises(DatasetInvalid, match="opens on line 2 is longer than 16 MiB"):
        datasets.parse(over.encode(), EVAL)


def test_documents_nested_too_deep_name_their_line() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    documents = json.dumps({"pid": "p1", "title": "a", "image": "b"}) + '\n{"pid": ' + deep + "}\n"
    data = tar_bytes({"queries.csv": TAR_QUERIES, "documents.jsonl": documents})
    with pytest.raises(DatasetInvalid, match=r"documents\.jsonl line 2 is not JSON: .*nest deeper"):
        datasets.parse(data, TAR)
