"""The ``[oxen]`` table: every default of the Oxen surface, in one place."""

from __future__ import annotations

import msgspec


class OxenSettings(msgspec.Struct, kw_only=True):
    # Largest upload body (streamed to disk and hashed as it arrives, never in memory).
    max_upload_bytes: int = 1024 * 1024 * 1024
    # Rows an `is_sample` evaluation runs when the request names no sample_count.
    sample_count: int = 10
    # Rows read, generated and committed as progress per step (a v2 `batch_size`
    # overrides it); 1,000 rows keep a progress commit every ~second at 1k rows/s.
    batch_size: int = 1000
    # Generations in flight per text evaluation (the judge's own [judge] concurrency caps
    # the whole process).
    concurrency: int = 64
    # Texts per embedder.encode call: 64 is sentence-transformers' sweet spot on CPU.
    embed_batch_size: int = 64
    # Rows per embedding step (one encode call over this many rows, then progress).
    embed_chunk_rows: int = 4096
    # Largest page of rows a data_frames or results request answers (estimated as JSON):
    # a page is read in a worker and rendered in the API process, so a page of huge cells
    # (a parquet file whose one cell decodes to 400 MB) is refused with this setting's
    # name. 10,000 rows of 384-float embeddings are ~40 MB.
    max_page_mb: int = 64
    # Vendor embedding model names served by the embedder engine (whatever model it
    # runs, all-MiniLM-L6-v2 by default; the evaluation's `model_ran` says which).
    embedding_models: list[str] = msgspec.field(
        default_factory=lambda: ["text-embedding-3-small", "text-embedding-3-large"]
    )
    # [oxen.models]: v2 `model_id` -> vendor model name (e.g. a Hub model uuid to
    # "gpt-4o-mini"); an id not listed is taken as a model name itself.
    models: dict[str, str] = msgspec.field(default_factory=dict)
    # Author of the commits an evaluation makes.
    commit_author: str = "evaldock"
    commit_email: str = "evaldock@localhost"
