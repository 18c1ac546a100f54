"""The embedding step in-process: parts beside the encode, progress after each part,
a resume from the last whole part, and the results parquet of the vectors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from evaldock.engines.embedder.mock import MockEmbedder
from evaldock.server.oxen import jobs, tables
from evaldock.server.oxen.blobs import BlobStore


class Recorder:
    """A TaskContext's progress side: records (done, total, parts on disk then)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.seen: list[tuple[int, int | None, int]] = []
        self.threads: set[str] = set()

    def progress(self, done: int, total: int | None = None) -> None:
        self.threads.add(threading.current_thread().name)
        rows = sum(
            len(a) for a in tables.ColumnWriter(self.work, tables.EMBEDDING_TYPE).column(0).arrays()
        ) if self.work.exists() else 0  # fmt: skip
        self.seen.append((done, total, rows))


def test_parts_progress_and_resume(tmp_path: Path) -> None:
    texts = [f"row {i} " + "word " * (i % 7) for i in range(1000)]
    src = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": texts}), src)
    source = jobs.PromptSource(str(src), "parquet", "d.parquet", "{text}")
    embedder = MockEmbedder({})
    want = embedder.encode(texts)
    work = tmp_path / "work"
    ctx = Recorder(work)
    assert jobs._embed_rows(ctx, embedder, source, str(work), 128, 32) == 1000  # type: ignore[arg-type]
    # Progress follows the parts: never a row counted before its vector is on disk.
    assert [d for d, _, _ in ctx.seen] == [0, *range(128, 1000, 128), 1000]
    assert all(rows >= done for done, _, rows in ctx.seen)
    column = tables.ColumnWriter(work, tables.EMBEDDING_TYPE).column(1000)
    got = np.concatenate([np.asarray(a.values).reshape(-1, want.shape[1]) for a in column.arrays()])
    np.testing.assert_array_equal(got, want)

    # A restart after the last part was lost redoes that part only.
    parts = sorted(work.glob("part-*.arrow"))
    parts[-1].unlink()
    again = Recorder(work)
    assert jobs._embed_rows(again, embedder, source, str(work), 128, 32) == 1000  # type: ignore[arg-type]
    assert [d for d, _, _ in again.seen] == [896, 1000]
    column = tables.ColumnWriter(work, tables.EMBEDDING_TYPE).column(1000)
    got = np.concatenate([np.asarray(a.values).reshape(-1, want.shape[1]) for a in column.arrays()])
    np.testing.assert_array_equal(got, want)

    # The results parquet holds the same vectors, as float32 lists.
    key = jobs.write_results(None, str(tmp_path), str(work), "embeddings", "emb", 1000)  # type: ignore[arg-type]
    table = pq.read_table(BlobStore(tmp_path).path(key))
    assert table.schema.field("emb").type == tables.EMBEDDING_TYPE
    flat = np.asarray(table.column("emb").combine_chunks().values).reshape(-1, want.shape[1])
    np.testing.assert_array_equal(flat, want)
