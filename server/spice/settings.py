"""The ``[spice]`` table: the surface's typed settings (one default, one place)."""

from __future__ import annotations

import msgspec


class SpiceSettings(msgspec.Struct, kw_only=True):
    """The ``[spice]`` table."""

    # The spicepod.yaml to load; empty: the example shipped in the package.
    spicepod: str = ""
    # Folders (besides the spicepod's own) whose files a dataset may name.
    dataset_dirs: list[str] = []
    # "runtime": the v1 runtime's wire answer (a JSON array of one run row, what the
    # `spice eval` CLI decodes); "documented": the object of the runtime's OpenAPI page.
    response_shape: str = "runtime"
    # Seconds POST /v1/evals/{name} waits for its run before answering it as it stands.
    run_timeout: float = 300.0
    # Model requests in flight per run (judge-routed models).
    concurrency: int = 32
    # Cases one dataset may hold (10,000 cases x 5 scorers score in ~1 s).
    max_cases: int = 100_000
    # /v1/sql: seconds a query may run, and rows it may return.
    sql_timeout: float = 5.0
    sql_max_rows: int = 100_000
    # ...and bytes of values it may return (SELECT repeat('x', 1000000000) would else
    # send a 1 GB answer): 256 MiB holds 100,000 rows of 2.5 KiB.
    sql_max_bytes: int = 256 * 1024 * 1024
    # ...and megabytes the worker process running it may hold, engines it keeps loaded
    # included (a request-lane worker may hold the embedder: 971 MB resident measured in
    # real mode): DataFusion's memory pool (sorts, joins, aggregates) gets half, the
    # caller's tables, the rows and the answer pickled back the rest. Four 60 MB-value
    # queries took 1,257 MB of the API process when they ran in its threads.
    sql_memory_mb: int = 2048
