"""Hostile input to the Spice surface: every answer a 4xx in Spice's text/plain shape,
never a 5xx, and nothing stored. Bad JSON and wrong shapes, every bound of
openapi/spice.yaml, SQL that tries to write, attach, read the catalogue or another
tenant's rows, runaway and oversized queries, dataset paths out of the allowed folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .helpers import TEXT, rows_of

EXAMPLE_EVALS = ["capitals", "capitals_semantic", "squares"]


def refused(r: Any, status: int | tuple[int, ...] = 400, text: str | None = None) -> str:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/plain"), r.headers["content-type"]
    if text is not None:
        assert text in r.text, r.text[:300]
    return str(r.text)


def nothing_stored(client: Any, headers: dict[str, str] | None = None) -> None:
    headers = headers or {}
    assert [s["name"] for s in rows_of(client.get("/v1/evals", headers=headers))] == EXAMPLE_EVALS
    count = client.post(
        "/v1/sql", content="SELECT count(*) AS n FROM eval.runs", headers={**TEXT, **headers}
    )
    assert rows_of(count) == [{"n": 0}]
    # no dataset was stored under any name the hostile requests used
    for dataset in ("x", "d", "up"):
        r = client.put("/v1/evals/probe", json={"dataset": dataset, "scorers": ["match"]})
        refused(r, 404, f"dataset '{dataset}' not found")


# -- bodies -------------------------------------------------------------------------------
DEEP = b"[" * 10_000 + b"]" * 10_000
BAD_JSON = [b"", b"{", b"{not json", b'{"model": "mock"', b"\xff\xfe", DEEP]
WRONG_SHAPE_RUN: list[Any] = [{}, [], "mock", 3, {"model": None}, {"model": ["mock"]}]
WRONG_SHAPE_PUT: list[Any] = [
    {},
    {"dataset": "d"},
    {"scorers": ["match"]},
    {"dataset": "d", "scorers": "match"},
    {"dataset": "d", "scorers": []},
    {"dataset": "d", "scorers": [""]},
    {"dataset": "d", "scorers": [3]},
    {"dataset": "", "scorers": ["match"]},
    {"dataset": "../d", "scorers": ["match"]},
    {"dataset": "d", "scorers": ["match"], "extra": 1},
    {"dataset": "d", "scorers": ["match"], "data": []},
    {"dataset": "d", "scorers": ["match"], "data": [{"input": "q"}]},
    {"dataset": "d", "scorers": ["match"], "data": [{"input": 1, "ideal": "a"}]},
    {"dataset": "d", "scorers": ["match"], "data": [{"input": "q", "ideal": "a", "output": 5}]},
    {"dataset": "d", "scorers": ["match"], "data": ["q"]},
    {"dataset": "d", "scorers": ["match"], "from": ""},
]


def test_bad_json_is_400_and_wrong_shapes_422(client) -> None:
    json_ct = {"Content-Type": "application/json"}
    for raw in BAD_JSON:
        refused(client.post("/v1/evals/capitals", content=raw, headers=json_ct), 400)
        refused(client.put("/v1/evals/x", content=raw, headers=json_ct), 400)
        refused(client.post("/v1/sql", content=raw, headers=json_ct), 400)
    assert "Failed to parse the request body as JSON" in refused(
        client.post("/v1/evals/capitals", content=b"{", headers=json_ct), 400
    )
    for body in WRONG_SHAPE_RUN:
        refused(client.post("/v1/evals/capitals", json=body), 422, "Failed to deserialize")
    for body in WRONG_SHAPE_PUT:
        refused(client.put("/v1/evals/x", json=body), 422, "Failed to deserialize")
    for body in ([1], {"query": "SELECT 1"}, {"sql": 1}, "SELECT 1"):
        refused(client.post("/v1/sql", json=body), 400, '{"sql": "<query>"}')
    refused(client.post("/v1/sql", content=b"SELECT '\xff'", headers=TEXT), 400, "UTF-8")
    xml = {"Content-Type": "text/xml"}
    refused(client.post("/v1/evals/capitals", content=b"<a/>", headers=xml), 415)
    refused(client.post("/v1/sql", content=b"<a/>", headers=xml), 415)
    nothing_stored(client)


def _case(**override: Any) -> dict[str, Any]:
    return {"input": "q", "ideal": "a", "output": "a", **override}


def _put(client: Any, name: str = "x", **override: Any) -> Any:
    body = {"dataset": "x", "scorers": ["match"], "data": [_case()], **override}
    return client.put(f"/v1/evals/{name}", json=body)


def test_every_spec_bound(client) -> None:
    """One step past each maxLength / maxItems of openapi/spice.yaml: a 4xx, nothing kept."""
    message = {"role": "user", "content": "q"}
    over = [
        _put(client, description="d" * 4097),
        _put(client, dataset="d" * 129),
        _put(client, scorers=["match"] * 33),
        _put(client, scorers=["m" * 129]),
        _put(client, **{"from": "f" * 1025}, data=None),
        _put(client, data=[_case()] * 100_001),
        _put(client, data=[_case(input="q" * 1_000_001)]),
        _put(client, data=[_case(ideal="a" * 1_000_001)]),
        _put(client, data=[_case(output="a" * 1_000_001)]),
        _put(client, data=[_case(input=[message] * 1001)]),
        _put(client, data=[_case(ideal=[message] * 1001)]),
        _put(client, data=[_case(output=[message] * 1001)]),
        client.post("/v1/evals/capitals", json={"model": "m" * 257}),
    ]
    for r in over:
        refused(r, (400, 422))
    refused(_put(client, name="n" * 129), 400, "too long")
    refused(client.post("/v1/evals/" + "n" * 129, json={"model": "mock"}), 400, "too long")
    refused(client.delete("/v1/evals/" + "n" * 129), 400, "too long")
    refused(client.get("/v1/evals/capitals/runs/" + "r" * 65), 400, "too long")
    refused(client.get("/v1/evals", headers={"X-API-Key": "k" * 257}), 400, "too long")
    sql = "SELECT 1" + " " * 100_000
    refused(client.post("/v1/sql", content=sql, headers=TEXT), 400, "at most 100000")
    refused(client.post("/v1/sql", json={"sql": sql}), 400, "at most 100000")
    for name in ("%20", "%09"):  # blank and control-character names
        refused(_put(client, name=name), 400)
    nothing_stored(client)


def test_body_over_the_server_limit_is_413(make_client) -> None:
    client = make_client(**{"server.max_body_bytes": 4096})
    refused(_put(client, data=[_case(input="q" * 5000)]), 413)
    refused(client.post("/v1/sql", content="SELECT 1" + " " * 5000, headers=TEXT), 413)
    nothing_stored(client)


# -- SQL ----------------------------------------------------------------------------------
# Every entry: a 400 in Spice's text/plain with DataFusion's message, and the tables as
# they were. The SQLite-era probes stay (each must still be refused); the DataFusion ones
# try its own ways to files and other tables (CREATE EXTERNAL TABLE, COPY, URL tables,
# table functions, SET).
ONLY_SELECT = "only SELECT"
NOT_FOUND = "not found: only SELECT"
NO_FUNCTION = "Invalid function"
SQL_REFUSED = [
    ("INSERT INTO eval.runs (id) VALUES ('x')", ONLY_SELECT),
    ("UPDATE eval.results SET value = 1", ONLY_SELECT),
    ("DELETE FROM spice.eval.results", ONLY_SELECT),
    ("REPLACE INTO eval.runs (id) VALUES ('x')", ONLY_SELECT),
    ("DROP VIEW eval_results", ONLY_SELECT),
    ("CREATE TABLE t (x)", "SQL error"),
    ("CREATE TEMP VIEW v AS SELECT * FROM main.jobs", NOT_FOUND),
    ("WITH x AS (DELETE FROM eval.runs RETURNING *) SELECT * FROM x", ONLY_SELECT),
    ("ATTACH DATABASE ':memory:' AS m", ONLY_SELECT),
    ("ATTACH 'file:/etc/passwd?mode=ro' AS p", ONLY_SELECT),
    ("DETACH main", ONLY_SELECT),
    ("VACUUM INTO '/tmp/evaldock-copy.db'", "SQL error"),
    ("SELECT * FROM sqlite_master", NOT_FOUND),
    ("SELECT * FROM sqlite_temp_master", NOT_FOUND),
    ("SELECT * FROM temp.sqlite_schema", NOT_FOUND),
    ("PRAGMA table_info(spice_runs)", "SQL error"),
    ("PRAGMA writable_schema = ON", "SQL error"),
    ("SELECT * FROM pragma_table_info('jobs')", "not found"),
    ("SELECT * FROM pragma_database_list", NOT_FOUND),
    ("SELECT * FROM main.spice_results", NOT_FOUND),
    ('SELECT * FROM "main"."spice_runs"', NOT_FOUND),
    ("SELECT * FROM jobs", NOT_FOUND),
    ("SELECT * FROM job_view", NOT_FOUND),
    ("SELECT * FROM spice_specs", NOT_FOUND),
    ("SELECT * FROM eval.runs, main.spice_datasets", NOT_FOUND),
    ("SELECT (SELECT count(*) FROM jobs) FROM eval.runs", NOT_FOUND),
    ("SELECT load_extension('/tmp/x.so')", NO_FUNCTION),
    ("SELECT fts3_tokenizer('simple')", NO_FUNCTION),
    ("BEGIN IMMEDIATE", ONLY_SELECT),
    ("SAVEPOINT s", ONLY_SELECT),
    ("ANALYZE", ONLY_SELECT),
    ("SELECT * FROM dbstat", NOT_FOUND),
    ("SELECT 1; DELETE FROM eval.runs", "one statement"),
    ("SELECT 1\x00; DELETE FROM eval.runs", "SQL error"),
    ("SELECT length(randomblob(900000000))", NO_FUNCTION),
    ("SELECT replace(hex(zeroblob(40000000)), '0', 'ab')", NO_FUNCTION),
    # DataFusion's own ways out: files, DDL, settings
    ("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'", ONLY_SELECT),
    ("CREATE EXTERNAL TABLE p STORED AS PARQUET LOCATION 'file:///etc/'", ONLY_SELECT),
    ("COPY (SELECT * FROM eval.runs) TO '/tmp/evaldock-copy.csv'", ONLY_SELECT),
    ("COPY eval.results TO '/tmp/evaldock-copy.parquet' STORED AS PARQUET", ONLY_SELECT),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/evaldock-copy.json'", ONLY_SELECT),
    ("INSERT INTO eval_runs SELECT * FROM eval_runs", ONLY_SELECT),
    ("CREATE TABLE t AS SELECT * FROM eval.runs", ONLY_SELECT),
    ("CREATE VIEW v AS SELECT 1", ONLY_SELECT),
    ("CREATE SCHEMA spice.other", ONLY_SELECT),
    ("DROP TABLE eval.runs", ONLY_SELECT),
    ("DROP SCHEMA eval CASCADE", ONLY_SELECT),
    ("CREATE FUNCTION f() RETURNS INT RETURN 1", ONLY_SELECT),
    ("SET datafusion.execution.batch_size = 1", ONLY_SELECT),
    ("SET datafusion.catalog.information_schema = false", ONLY_SELECT),
    ("PREPARE p AS SELECT 1", ONLY_SELECT),
    ("SELECT * FROM '/etc/passwd'", NOT_FOUND),
    ("SELECT * FROM 'file:///etc/passwd'", NOT_FOUND),
    ("SELECT * FROM read_csv('/etc/passwd')", "not found"),
    ("SELECT * FROM read_parquet('/etc/passwd')", "not found"),
    ("SELECT * FROM read_json('/etc/passwd')", "not found"),
    ("SELECT * FROM parquet_metadata('/etc/passwd')", "not found"),
    ("SELECT * FROM datafusion.public.runs", NOT_FOUND),
    ("SELECT " + "(" * 5000 + "1" + ")" * 5000, "RecursionLimitExceeded"),
    # 20,000 terms overflow the planner's stack: the worker dies, the server answers
    ("SELECT 1" + "+1" * 20_000, "could not finish"),
    # runaway and oversized answers
    (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
        "sql_timeout",
    ),
    (
        "SELECT sum(length(a.input || b.input || c.input || d.input)) FROM eval.results a,"
        " eval.results b, eval.results c, eval.results d",
        "sql_timeout",
    ),
    ("SELECT count(*) FROM generate_series(1, 100000000000)", "sql_timeout"),
    ("SELECT length(repeat('x', 900000000)) AS n", "[spice] sql_"),
    (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 60) SELECT x FROM c",
        "sql_max_rows",
    ),
    ("SELECT * FROM generate_series(1, 100000000000)", "sql_max_rows"),
    ("SELECT repeat('0', 2000) AS h FROM generate_series(1, 40)", "sql_max_bytes"),
    ("SELECT array_agg(x) FROM generate_series(1, 300000000) t(x)", "[spice] sql_"),
]


@pytest.mark.parametrize(("sql", "why"), SQL_REFUSED, ids=[s[:40] for s, _ in SQL_REFUSED])
def test_sql_that_is_not_a_read_of_eval_tables(make_client, sql: str, why: str) -> None:
    client = make_client(
        **{"spice.sql_timeout": 0.3, "spice.sql_max_rows": 50, "spice.sql_max_bytes": 60_000}
    )
    assert rows_of(client.post("/v1/evals/capitals", json={"model": "replay"}))
    refused(client.post("/v1/sql", content=sql.encode(), headers=TEXT), 400, why)
    assert not list(Path("/tmp").glob("evaldock-copy*"))  # no file written
    # the tables are as they were
    runs = rows_of(client.post("/v1/sql", content="SELECT * FROM eval.runs", headers=TEXT))
    assert len(runs) == 1 and runs[0]["status"] == "Completed"
    n = client.post("/v1/sql", content="SELECT count(*) AS n FROM eval.results", headers=TEXT)
    assert rows_of(n) == [{"n": 24 * 4}]


def test_other_tenants_rows_stay_out_of_reach(make_client) -> None:
    client = make_client(**{"auth.spice.keys": ["k1", "k2"]})
    k1, k2 = {"X-API-Key": "k1"}, {"X-API-Key": "k2"}
    run = rows_of(client.post("/v1/evals/capitals", json={"model": "replay"}, headers=k1))[0]
    put = client.put(
        "/v1/evals/mine",
        json={"dataset": "up", "scorers": ["match"], "data": [_case()]},
        headers=k1,
    )
    assert put.status_code == 200
    for sql in (
        "SELECT * FROM eval.runs",
        "SELECT * FROM eval.results",
        f"SELECT * FROM spice.eval.results WHERE run_id = '{run['id']}'",
        "SELECT * FROM eval_results",
        "SELECT * FROM eval./* hidden */results",
    ):
        assert rows_of(client.post("/v1/sql", content=sql, headers={**TEXT, **k2})) == []
    for sql in (
        "SELECT * FROM main.spice_results",
        "SELECT * FROM eval.results WHERE tenant IS NOT NULL",
        "SELECT * FROM eval.runs UNION ALL SELECT id, '', '', '', '', '', '', '', '' "
        "FROM main.spice_runs",
    ):
        refused(client.post("/v1/sql", content=sql, headers={**TEXT, **k2}), 400)
    refused(client.get(f"/v1/evals/capitals/runs/{run['id']}", headers=k2), 404)
    assert [s["name"] for s in rows_of(client.get("/v1/evals", headers=k2))] == EXAMPLE_EVALS
    refused(client.post("/v1/evals/mine", json={"model": "replay"}, headers=k2), 404)
    refused(client.delete("/v1/evals/mine", headers=k2), 404, "eval 'mine' not found")
    refused(
        client.put("/v1/evals/theirs", json={"dataset": "up", "scorers": ["match"]}, headers=k2),
        404,
        "dataset 'up' not found",
    )
    assert client.get(f"/v1/evals/capitals/runs/{run['id']}", headers=k1).status_code == 200


# -- dataset paths ------------------------------------------------------------------------
def test_dataset_paths_outside_the_allowed_folders(make_client, tmp_path: Path) -> None:
    allowed = tmp_path / "datasets"
    allowed.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.csv"
    secret.write_text("input,ideal,output\nq,a,a\n")
    (allowed / "ok.csv").write_text("input,ideal,output\nq,a,a\n")
    (allowed / "link.csv").symlink_to(secret)
    (allowed / "linked_dir").symlink_to(outside, target_is_directory=True)
    (allowed / "notes.txt").write_text("input,ideal\nq,a\n")
    client = make_client(**{"spice.dataset_dirs": [str(allowed)]})
    probes = [
        str(secret),
        str(allowed / "link.csv"),
        str(allowed / "linked_dir" / "secret.csv"),
        str(allowed / ".." / "outside" / "secret.csv"),
        str(allowed / "absent.csv"),
        str(allowed),
        "/etc/passwd",
        "/dev/zero",
        "../../../../../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2fetc%2fpasswd",
        "%2fetc%2fpasswd",
        "..\\..\\etc\\passwd",
        "....//....//etc/passwd",
        "~/.bashrc",
        "x\u0000.csv",
        "/proc/self/environ",
    ]
    texts = set()
    for path in probes:
        for prefix in ("file:", "file://", ""):
            r = client.put(
                "/v1/evals/x", json={"dataset": "x", "scorers": ["match"], "from": prefix + path}
            )
            texts.add(refused(r, 400).replace(path, "P"))
    assert len(texts) == 1, texts  # unlisted, absent and linked-out paths read the same
    refused(
        client.put(
            "/v1/evals/x",
            json={"dataset": "x", "scorers": ["match"], "from": f"file:{allowed / 'notes.txt'}"},
        ),
        400,
        "must end in",
    )
    nothing_stored(client)
    ok = client.put(
        "/v1/evals/ok",
        json={"dataset": "d", "scorers": ["match"], "from": f"file:{allowed / 'ok.csv'}"},
    )
    assert ok.status_code == 200, ok.text


def test_a_file_swapped_for_a_link_after_put_is_not_read(make_client, tmp_path: Path) -> None:
    allowed = tmp_path / "datasets"
    allowed.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text("input,ideal,output\nsecret,s,s\n")
    data = allowed / "d.csv"
    data.write_text("input,ideal,output\nq,a,a\n")
    client = make_client(**{"spice.dataset_dirs": [str(allowed)]})
    body = {"dataset": "d", "scorers": ["match"], "from": f"file:{data}"}
    assert client.put("/v1/evals/e", json=body).status_code == 200
    data.unlink()
    os.symlink(secret, data)
    run = rows_of(client.post("/v1/evals/e", json={"model": "replay"}))[0]
    assert run["status"] == "Failed" and "not a readable file" in run["error_message"]
    rows = client.post("/v1/sql", content="SELECT input FROM eval.results", headers=TEXT)
    assert rows_of(rows) == []
