"""The Spice surface in-process (and over HTTP with EVALDOCK_TEST_SERVER=1): the example
spicepod, scorers through HTTP with the ``replay`` model, shapes, content types, errors,
auth, read-only SQL and eval specs added at run time."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from .helpers import TEXT, expected_means, rows_of, write_pod

SCORERS = ["match", "json_match", "includes", "fuzzy_match", "levenshtein"]


def choice(*contents: str) -> list[dict[str, Any]]:
    return [
        {"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
        for i, c in enumerate(contents)
    ]


def lev(a: str, b: str) -> float:
    return float(Levenshtein.normalized_similarity(a, b))


# (output, ideal): match, json_match, includes, fuzzy_match, levenshtein — by hand.
TEXT_CASES: list[tuple[str, str, tuple[float, float, float, float, float]]] = [
    ("Paris", "Paris", (1, 0, 1, 1, 1.0)),
    ("paris", "Paris", (0, 0, 0, 1, 0.8)),
    ("The capital is Paris.", "Paris", (0, 0, 1, 1, 1 - 16 / 21)),
    ("e\u0301", "\u00e9", (0, 0, 0, 0, 0.0)),  # combining mark: two chars vs one
    ("東京", "東京都", (0, 0, 0, 1, 1 - 1 / 3)),  # CJK: Spice counts chars
    ("🙂🙂", "🙂", (0, 0, 1, 1, 0.5)),  # emoji: one char each
    ("", "", (1, 0, 1, 1, 1.0)),  # both empty: equal, and lev 1.0
    ("", "x", (0, 0, 0, 0, 0.0)),
    ("x", "", (0, 0, 1, 0, 0.0)),  # "" is in everything; fuzzy needs both or neither
    ('{"a": 1, "b": [1, 2.0]}', '{"b": [1.0, 2], "a": 1.0}', (0, 1, 0, 0, None)),
    ("[1, [2, 3]]", "[1, [3, 2]]", (0, 0, 0, 0, None)),  # nested arrays keep order
    ("true", "1", (0, 0, 0, 0, 0.0)),  # true is not 1
    ("The Answer!", "answer", (0, 0, 0, 1, None)),  # articles and punctuation go
]
CHOICE_CASES: list[tuple[Any, Any, tuple[float, float, float, float, float]]] = [
    (choice("A"), choice("A"), (1, 0, 1, 1, 1.0)),
    (choice("A", "B"), choice("A"), (0, 0, 0, 0, 1.0)),  # unequal lengths: 0, lev: first
    (choice("1.0"), choice("1"), (0, 1, 1, 1, 1 - 2 / 3)),
]


def _put(client, name: str, cases, scorers=SCORERS, **extra) -> None:
    data = [
        {"input": f"case {i}", "ideal": ideal, "output": out}
        for i, (out, ideal, _) in enumerate(cases)
    ]
    body = {"dataset": f"{name}_ds", "scorers": scorers, "data": data, **extra}
    r = client.put(f"/v1/evals/{name}", json=body)
    assert r.status_code == 200, r.text


def _per_case(client, run_id: str) -> dict[tuple[str, str], float]:
    rows = rows_of(
        client.post(
            "/v1/sql",
            content=f"SELECT input, scorer, value FROM eval.results WHERE run_id = '{run_id}'",
            headers=TEXT,
        )
    )
    return {(r["input"], r["scorer"]): r["value"] for r in rows}


def _f32_mean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float32)
    return float(str(np.float32(np.cumsum(arr, dtype=np.float32)[-1] / np.float32(len(arr)))))


@pytest.mark.parametrize("cases", [TEXT_CASES, CHOICE_CASES], ids=["text", "choices"])
def test_scorers_through_http_with_replay(client, cases) -> None:
    _put(client, "table", cases)
    run = rows_of(client.post("/v1/evals/table", json={"model": "replay"}))[0]
    assert run["status"] == "Completed", run
    got = _per_case(client, run["id"])
    assert len(got) == len(cases) * len(SCORERS)
    for i, (out, ideal, expected) in enumerate(cases):
        for scorer, want in zip(SCORERS, expected, strict=True):
            if want is None:  # levenshtein of a long pair: the definition itself
                want = lev(out, ideal)
            assert got[(f"case {i}", scorer)] == pytest.approx(want, abs=1e-6), (i, scorer)
    for scorer in SCORERS:
        values = [got[(f"case {i}", scorer)] for i in range(len(cases))]
        assert run["metrics"][f"{scorer}/mean"] == pytest.approx(_f32_mean(values), abs=1e-7)


def test_results_answer_and_ideal_columns(client) -> None:
    """eval.results.actual is the model's answer and expected the ideal, as every runtime
    release after spiceai/spiceai PR #4835 (v1.0.x had output/actual, swapped)."""
    run = rows_of(client.post("/v1/evals/capitals", json={"model": "replay"}))[0]
    rows = rows_of(
        client.post(
            "/v1/sql",
            json={
                "sql": f"SELECT * FROM spice.eval.results WHERE run_id = '{run['id']}' "
                "AND scorer = 'match' LIMIT 2 OFFSET 1"
            },
        )
    )
    assert rows[0]["actual"] == "The capital of Germany is Berlin."
    assert rows[0]["expected"] == "Berlin"
    layout = ["run_id", "created_at", "input", "actual", "expected", "scorer", "value"]
    assert list(rows[0]) == layout


def test_health_and_ready_are_open_plain_text(make_client) -> None:
    client = make_client(**{"auth.spice.keys": ["k1"]})
    for path, text in (("/health", "ok"), ("/v1/ready", "ready")):
        r = client.get(path)
        assert r.status_code == 200 and r.text == text
        assert r.headers["content-type"].startswith("text/plain")


def test_example_spicepod_out_of_the_box(client) -> None:
    specs = rows_of(client.get("/v1/evals"))
    assert [s["name"] for s in specs] == ["capitals", "capitals_semantic", "squares"]
    assert specs[0]["scorers"] == ["match", "includes", "fuzzy_match", "levenshtein"]
    run = rows_of(client.post("/v1/evals/capitals", json={"model": "mock"}))
    assert len(run) == 1 and run[0]["status"] == "Completed"
    assert set(run[0]) == {
        "id",
        "created_at",
        "completed_at",
        "dataset",
        "model",
        "status",
        "scorers",
        "metrics",
    }
    assert len(run[0]["id"]) == 32 and not run[0]["created_at"].endswith("Z")
    # replay: 24 cases, 6 of each kind (exact, wordier, lower case, wrong)
    replay = rows_of(client.post("/spice/v1/evals/capitals", json={"model": "replay"}))[0]
    metrics = replay["metrics"]
    assert metrics["match/mean"] == 0.25 and metrics["includes/mean"] == 0.5
    assert metrics["fuzzy_match/mean"] == 0.75
    squares = rows_of(client.post("/v1/evals/squares", json={"model": "replay"}))[0]
    assert squares["metrics"] == {"json_match/mean": 0.5, "match/mean": 0.0}


def test_errors_are_plain_text_like_the_runtime(client) -> None:
    def check(r, status: int, text: str | None = None) -> None:
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("text/plain")
        if text is not None:
            assert r.text == text

    check(client.post("/v1/evals/nope", json={"model": "mock"}), 404, "eval 'nope' not found")
    check(
        client.post("/v1/evals/capitals", json={"model": "gpt-9"}), 404, "model 'gpt-9' not found"
    )
    check(client.post("/v1/evals/capitals", content=b"{not json"), 400)
    assert client.post("/v1/evals/capitals", content=b"{x").text.startswith(
        "Failed to parse the request body as JSON"
    )
    for bad in ({}, {"model": 3}, [], {"model": "x" * 300}):
        r = client.post("/v1/evals/capitals", json=bad)
        check(r, 422)
        assert r.text.startswith("Failed to deserialize the JSON body into the target type")
    r = client.put("/v1/evals/e", json={"dataset": "missing", "scorers": ["match"]})
    check(r, 404, "dataset 'missing' not found")
    r = client.put("/v1/evals/e", json={"dataset": "capitals", "scorers": ["nope"]})
    check(r, 400)
    assert "scorer 'nope' is not defined" in r.text


@pytest.fixture(scope="module")
def pod500(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One spicepod for the six cases below: with EVALDOCK_TEST_SERVER=1 the same flags
    then find the same live server, reset (two server starts, not six)."""
    return write_pod(tmp_path_factory.mktemp("pod"), 500)


@pytest.mark.parametrize("shape", ["runtime", "documented"])
@pytest.mark.parametrize("accept", ["application/json", "text/csv", "text/plain"])
def test_500_cases_three_evals_every_shape_and_type(
    make_client, pod500: Path, shape, accept
) -> None:
    client = make_client(**{"spice.spicepod": str(pod500), "spice.response_shape": shape})
    want = expected_means(500)
    for name in ("exact", "fuzzy", "semantic"):
        r = client.post(f"/v1/evals/{name}", json={"model": "replay"}, headers={"Accept": accept})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(accept)
        if accept == "application/json":
            body = r.json()
            run = body[0] if shape == "runtime" else body
            status = run["status"]
            metrics = run["metrics"]
            assert status == ("Completed" if shape == "runtime" else "completed")
            if shape == "documented":
                assert set(run) == {
                    "primary_key",
                    "time_column",
                    "dataset",
                    "model",
                    "status",
                    "error_message",
                    "scorers",
                    "metrics",
                }
                assert run["error_message"] is None
            for key, value in metrics.items():
                if key in want:
                    assert value == pytest.approx(want[key], abs=1e-6)
                else:
                    assert key == "minilm/mean" and 0 < value <= 1
        elif accept == "text/csv":
            rows = list(csv.DictReader(io.StringIO(r.text)))
            assert len(rows) == 1
            status_key = "status"
            assert rows[0][status_key] in ("Completed", "completed")
            assert rows[0]["scorers"].startswith('["')
        else:
            lines = r.text.splitlines()
            assert lines[0].startswith("+-") and lines[-1].startswith("+-") and len(lines) == 5
            assert "Completed" in lines[3] or "completed" in lines[3]
    counts = rows_of(
        client.post(
            "/v1/sql",
            content="SELECT scorer, count(*) AS n FROM eval.results GROUP BY 1 ORDER BY 1",
            headers=TEXT,
        )
    )
    assert counts == [
        {"scorer": s, "n": 500}
        for s in ("fuzzy_match", "includes", "levenshtein", "match", "minilm")
    ]


def test_failed_runs_answer_200_with_the_reason(make_client, tmp_path: Path) -> None:
    pod = write_pod(tmp_path / "pod", 5)
    client = make_client(**{"spice.spicepod": str(pod)})
    run = rows_of(client.post("/v1/evals/judged", json={"model": "replay"}))[0]
    assert run["status"] == "Failed" and "judge_model" in run["error_message"]
    assert "metrics" in run and run["metrics"] == {}
    broken = rows_of(client.post("/v1/evals/broken", json={"model": "replay"}))[0]
    assert broken["status"] == "Failed"
    assert "not a readable file" in broken["error_message"]
    assert "/etc/passwd" in broken["error_message"]  # the spicepod's own text, not a probe
    chat = rows_of(client.post("/v1/evals/exact", json={"model": "chat"}))[0]
    assert chat["status"] == "Completed"  # routed to the mock judge's gpt-4o-mini


def test_run_timeout_answers_the_run_as_it_stands(make_client) -> None:
    client = make_client(**{"spice.run_timeout": 0})
    run = rows_of(client.post("/v1/evals/capitals", json={"model": "replay"}))[0]
    assert run["status"] in ("Queued", "Running", "Completed")
    import time

    for _ in range(200):
        got = rows_of(client.get(f"/v1/evals/capitals/runs/{run['id']}"))[0]
        if got["status"] == "Completed":
            break
        time.sleep(0.05)
    assert got["status"] == "Completed" and got["id"] == run["id"]
    assert client.get(f"/v1/evals/squares/runs/{run['id']}").status_code == 404
    assert client.get("/v1/evals/capitals/runs/nope").status_code == 404


def test_auth_when_keys_are_configured(make_client) -> None:
    client = make_client(**{"auth.spice.keys": ["k1", "k2"]})
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
        r = client.get("/v1/evals", headers=headers)
        assert r.status_code == 401 and r.text == "Unauthorized"
    r = client.post("/v1/evals/capitals", json={"model": "replay"}, headers={"X-API-Key": "k1"})
    assert r.status_code == 200
    mine = rows_of(
        client.post(
            "/v1/sql", content="SELECT id FROM eval.runs", headers={**TEXT, "X-API-Key": "k1"}
        )
    )
    theirs = rows_of(
        client.post(
            "/v1/sql", content="SELECT id FROM eval.runs", headers={**TEXT, "X-API-Key": "k2"}
        )
    )
    assert len(mine) == 1 and theirs == []
    results = client.post(
        "/v1/sql",
        content="SELECT count(*) AS n FROM eval.results",
        headers={**TEXT, "X-API-Key": "k2"},
    )
    assert rows_of(results) == [{"n": 0}]


def test_open_by_default_ignores_keys(client) -> None:
    assert client.get("/v1/evals", headers={"X-API-Key": "anything"}).status_code == 200
    assert client.get("/v1/evals").status_code == 200


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM jobs", "only SELECT"),
        ("SELECT * FROM main.spice_results", "only SELECT"),
        ("SELECT * FROM sqlite_master", "only SELECT"),
        ("PRAGMA table_info(spice_runs)", "SQL error"),
        ("DELETE FROM eval.runs", "only SELECT"),
        ("ATTACH 'x.db' AS x", "only SELECT"),
        ("SELECT 1; SELECT 2", "one statement"),
        ("SELEC nonsense", "SQL error"),
        ("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'", "only SELECT"),
        ("", "required"),
        ("-- a comment only", "only SELECT"),
        (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
            " SELECT count(*) FROM c",
            "sql_timeout",
        ),
    ],
)
def test_sql_refuses_anything_else(make_client, sql: str, why: str) -> None:
    client = make_client(**{"spice.sql_timeout": 0.3})
    r = client.post("/v1/sql", content=sql.encode(), headers=TEXT)
    assert r.status_code == 400, r.text
    assert why in r.text


def test_sql_names_literals_row_cap_and_types(make_client) -> None:
    client = make_client(**{"spice.sql_max_rows": 50})
    client.post("/v1/evals/capitals", json={"model": "replay"})
    q = 'SELECT \'eval.runs\' AS s, count(*) AS n FROM "eval"."runs" -- eval.results'
    assert rows_of(client.post("/v1/sql", content=q, headers=TEXT)) == [{"s": "eval.runs", "n": 1}]
    r = client.post("/v1/sql", content="SELECT * FROM eval.results", headers=TEXT)
    assert r.status_code == 400 and "sql_max_rows" in r.text
    run = rows_of(
        client.post(
            "/v1/sql",
            content="SELECT * FROM spice.eval.runs",
            headers={"Content-Type": "application/x-www-form-urlencoded"},  # as curl -d
        )
    )[0]
    assert isinstance(run["scorers"], list) and isinstance(run["metrics"], dict)
    assert "error_message" not in run
    text = client.post(
        "/v1/sql", content="SELECT id FROM eval.runs", headers={**TEXT, "Accept": "text/csv"}
    )
    assert text.text.startswith("id\n")


def test_runtime_specs_put_list_run_delete(make_client, tmp_path: Path) -> None:
    data_dir = tmp_path / "datasets"
    data_dir.mkdir()
    (data_dir / "d.csv").write_text("input,ideal,output\nq1,a,a\nq2,b,c\n")
    client = make_client(**{"spice.dataset_dirs": [str(data_dir)]})
    r = client.put(
        "/v1/evals/mine",
        json={"dataset": "d", "scorers": ["match"], "from": "file:" + str(data_dir / "d.csv")},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "mine", "dataset": "d", "scorers": ["match"]}
    assert "mine" in [s["name"] for s in rows_of(client.get("/v1/evals"))]
    run = rows_of(client.post("/v1/evals/mine", json={"model": "replay"}))[0]
    assert run["metrics"] == {"match/mean": 0.5}
    # a second spec over the same stored dataset, by name
    assert (
        client.put("/v1/evals/again", json={"dataset": "d", "scorers": ["includes"]}).status_code
        == 200
    )
    # unlisted and absent paths: the same 400
    texts = set()
    for path in ("/etc/passwd", str(data_dir / "absent.csv"), "../../x.csv"):
        r = client.put(
            "/v1/evals/x", json={"dataset": "x", "scorers": ["match"], "from": "file:" + path}
        )
        assert r.status_code == 400
        texts.add(r.text.replace(path, "P"))
    assert len(texts) == 1
    assert client.delete("/v1/evals/mine").status_code == 204
    assert client.delete("/v1/evals/mine").text == "eval 'mine' not found"
    assert client.delete("/v1/evals/capitals").status_code == 400
    assert client.post("/v1/evals/mine", json={"model": "replay"}).status_code == 404
    # its run stays readable
    assert rows_of(
        client.post(
            "/v1/sql", content=f"SELECT id FROM eval.runs WHERE id = '{run['id']}'", headers=TEXT
        )
    )
