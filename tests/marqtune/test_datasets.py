"""Dataset parsing: linear checks, bounded archives, streamed from disk, cancellable."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from evaldock.server.marqtune import datasets
from evaldock.server.marqtune.datasets import DatasetInvalid, Limits, Schema

from .helpers import EVAL_CSV, SCHEMA, TAR_DOCUMENTS, TAR_QUERIES, TAR_SCHEMA, tar_bytes

EVAL = Schema("evaluation", dict(SCHEMA), ["query"], ["title", "image"])
TAR = Schema("evaluation", dict(TAR_SCHEMA), ["query"], ["title", "image"])
TRAINING = Schema("training", dict(SCHEMA), [], [])


def write(tmp_path: Path, data: bytes, name: str = "upload") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def tar_gz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_csv_and_tar_parse_from_a_file(tmp_path: Path) -> None:
    fmt, parsed, stats = datasets.parse_file(write(tmp_path, EVAL_CSV.encode()), EVAL)
    assert fmt == "csv" and parsed is not None
    assert stats == {"rowCount": 6, "queryCount": 4, "documentCount": 4}
    assert (fmt, parsed, stats) == datasets.parse(EVAL_CSV.encode(), EVAL)

    members = {"queries.csv": TAR_QUERIES.encode(), "documents.jsonl": TAR_DOCUMENTS.encode()}
    for data in (tar_bytes({k: v.decode() for k, v in members.items()}), tar_gz(members)):
        fmt, parsed, stats = datasets.parse_file(write(tmp_path, data), TAR)
        assert fmt == "tar" and parsed is not None
        assert stats == {"rowCount": 3, "queryCount": 2, "documentCount": 3}
        assert parsed.doc_ids == ["p1", "p2", "p2"]


def test_tar_members_in_either_order_and_others_skipped(tmp_path: Path) -> None:
    data = tar_gz(
        {
            "documents.jsonl": TAR_DOCUMENTS.encode(),
            "notes/readme.txt": b"x" * 10_000,
            "./queries.csv": TAR_QUERIES.encode(),
        }
    )
    assert datasets.parse_file(write(tmp_path, data), TAR)[2]["rowCount"] == 3
    bad = tar_gz(
        {
            "queries.csv": (TAR_QUERIES + "green hat,p9,1\n").encode(),
            "documents.jsonl": TAR_DOCUMENTS.encode(),
        }
    )
    with pytest.raises(DatasetInvalid, match=r"queries\.csv line 5: doc_id 'p9' is not in"):
        datasets.parse_file(write(tmp_path, bad), TAR)
    with pytest.raises(DatasetInvalid, match=r"missing documents.jsonl \(found: queries.csv\)"):
        datasets.parse_file(write(tmp_path, tar_gz({"queries.csv": TAR_QUERIES.encode()})), TAR)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"  \n", "The uploaded file is empty"),
        (b"query,title,image,score\n", "has a header but no rows"),
        (b"query,title,query,image,score\nq,t,q,i,1\n", "repeats header columns: query"),
        (b"query,title,score\nred,red,1\n", "lacks columns named in dataSchema: image"),
        (b"query,title,image,score\nq,t,i,1\nq\xff,t,i,1\n", "is not UTF-8 text"),
        (b"query,title,image,score\nq,t,i\n", "line 2 has 3 fields; the header has 4"),
    ],
)
def test_invalid_csv_reasons(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(DatasetInvalid, match=reason):
        datasets.parse_file(write(tmp_path, data), EVAL)


def test_training_csv_counts_rows_and_rejects_tar(tmp_path: Path) -> None:
    assert datasets.parse_file(write(tmp_path, EVAL_CSV.encode()), TRAINING) == (
        "csv",
        None,
        {"rowCount": 6},
    )
    with pytest.raises(DatasetInvalid, match="Training datasets must be a CSV file"):
        datasets.parse_file(write(tmp_path, tar_gz({"queries.csv": b"q\n"})), TRAINING)


def test_header_wider_than_max_columns_names_the_setting(tmp_path: Path) -> None:
    header = ",".join(["query", "title", "image", "score"] + [f"c{i}" for i in range(2_000)])
    data = f"{header}\n".encode()
    with pytest.raises(DatasetInvalid, match=r"2004 columns .*\[marqtune\] max_columns"):
        datasets.parse_file(write(tmp_path, data), EVAL)
    wider = Limits(max_columns=3_000)
    row = ",".join(["q", "t", "i", "1"] + [""] * 2_000)
    assert datasets.parse_file(write(tmp_path, data + row.encode()), EVAL, wider)[2] == {
        "rowCount": 1,
        "queryCount": 1,
        "documentCount": 1,
    }


def test_wide_header_checks_are_linear(tmp_path: Path) -> None:
    """200,000 columns: ``header.count`` per column (the old check) would take ~an hour."""
    names = [f"c{i}" for i in range(200_000)]
    data = ",".join(["query", "title", "image", "score", *names, "c7"]).encode() + b"\n"
    with pytest.raises(DatasetInvalid, match=r"repeats header columns: c7$"):
        datasets.parse_file(write(tmp_path, data), EVAL, Limits(max_columns=1_000_000))
    missing = ",".join(["query", "title", "score", *names]).encode() + b"\n"
    with pytest.raises(DatasetInvalid, match=r"lacks columns .*: image .*\(199953 more\)\)$"):
        datasets.parse_file(write(tmp_path, missing), EVAL, Limits(max_columns=1_000_000))


def test_archive_over_max_decompressed_bytes_fails(tmp_path: Path) -> None:
    big = b'{"pid": "p1", "title": "' + b"a" * 3_000_000 + b'"}\n'
    data = tar_gz({"documents.jsonl": big, "queries.csv": b"query,pid,score\nq,p1,1\n"})
    limits = Limits(max_decompressed_bytes=1 << 20, max_compression_ratio=1e9)
    with pytest.raises(DatasetInvalid, match=r"\[marqtune\] max_decompressed_bytes"):
        datasets.parse_file(write(tmp_path, data), TAR, limits)
    # The cap counts the whole stream, members skipped included.
    skipped = tar_gz({"padding.bin": b"\0" * 3_000_000, "queries.csv": b"q\n"})
    with pytest.raises(DatasetInvalid, match=r"\[marqtune\] max_decompressed_bytes"):
        datasets.parse_file(write(tmp_path, skipped), TAR, limits)


def test_archive_over_max_compression_ratio_fails(tmp_path: Path) -> None:
    bomb = tar_gz({"padding.bin": b"\0" * 8_000_000, "queries.csv": b"q\n"})
    assert len(bomb) < 80_000  # >100x
    with pytest.raises(DatasetInvalid, match=r"100 times .*\[marqtune\] max_compression_ratio"):
        datasets.parse_file(write(tmp_path, bomb), TAR)


def test_archive_is_streamed_not_held_in_memory(tmp_path: Path) -> None:
    """A 40 MB member the parser does not need is never held (the old code read it whole)."""
    data = tar_gz(
        {
            "padding.bin": b"\0" * 40_000_000,
            "queries.csv": TAR_QUERIES.encode(),
            "documents.jsonl": TAR_DOCUMENTS.encode(),
        }
    )
    path = write(tmp_path, data)
    limits = Limits(max_compression_ratio=1e6)
    tracemalloc.start()
    try:
        assert datasets.parse_file(path, TAR, limits)[0] == "tar"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000


def test_check_cancelled_is_called_while_reading(tmp_path: Path) -> None:
    rows = "".join(f"q{i},t{i},i{i}.png,1\n" for i in range(5_000))
    path = write(tmp_path, ("query,title,image,score\n" + rows).encode())
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1

    datasets.parse_file(path, EVAL, Limits(), check)
    assert calls >= 5_000 // datasets.CHECK_EVERY

    class Cancelled(Exception):
        pass

    def cancel_on_third() -> None:
        check()
        if calls >= 3:
            raise Cancelled

    calls = 0
    with pytest.raises(Cancelled):
        datasets.parse_file(path, EVAL, Limits(), cancel_on_third)

    docs = "\n".join(json.dumps({"pid": f"p{i}", "title": "t"}) for i in range(5_000))
    archive = tar_gz({"documents.jsonl": docs.encode(), "queries.csv": b"query,pid,score\n"})
    calls = 0
    with pytest.raises(Cancelled):
        datasets.parse_file(write(tmp_path, archive), TAR, Limits(), cancel_on_third)


def test_gzip_that_is_not_a_tar_reads_as_csv(tmp_path: Path) -> None:
    with pytest.raises(DatasetInvalid, match="is not UTF-8 text"):
        datasets.parse_file(write(tmp_path, gzip.compress(EVAL_CSV.encode())), EVAL)
