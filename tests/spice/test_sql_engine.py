"""/v1/sql on DataFusion: the runtime's dialect, JSON functions, the cookbook query over
eval.results in the post-#4835 layout, and types as the runtime's JSON writer shows them."""

from __future__ import annotations

from typing import Any

from .helpers import TEXT, rows_of


def sql(client: Any, query: str, **headers: str) -> Any:
    return client.post("/v1/sql", content=query.encode(), headers={**TEXT, **headers})


def _failing_run(client: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]
    data = [
        {"input": messages, "ideal": "4", "output": "four"},
        {"input": "capital of France?", "ideal": "Paris", "output": "Paris"},
    ]
    r = client.put("/v1/evals/cook", json={"dataset": "cook", "scorers": ["match"], "data": data})
    assert r.status_code == 200, r.text
    return rows_of(client.post("/v1/evals/cook", json={"model": "replay"}))[0]


def test_cookbook_query_answers_the_failing_case(client) -> None:
    """The Spice cookbook's query: the failing case's user message, expected, actual."""
    run = _failing_run(client)
    query = (
        "SELECT json_get_str(json_get_json(input, 1), 'content') AS input, expected, actual "
        f"FROM eval.results WHERE run_id = '{run['id']}' AND value = 0.0"
    )
    assert rows_of(sql(client, query)) == [{"input": "2+2?", "expected": "4", "actual": "four"}]


def test_results_columns_are_the_runtime_layout(client) -> None:
    run = _failing_run(client)
    r = sql(client, f"SELECT * FROM spice.eval.results WHERE run_id = '{run['id']}'")
    rows = rows_of(r)
    layout = ["run_id", "created_at", "input", "actual", "expected", "scorer", "value"]
    assert list(rows[0]) == layout
    paris = next(row for row in rows if row["input"] == "capital of France?")
    assert paris["actual"] == "Paris" and paris["expected"] == "Paris" and paris["value"] == 1.0
    assert "T" in paris["created_at"] and not paris["created_at"].endswith("Z")
    assert "output" not in paris


def test_json_functions_follow_the_crate(client) -> None:
    doc = '{"a": {"b": [1, -2, 2.5, "x", true, null, {"c": 1}]}, "a": 9, "s": "t"}'
    q = (
        f"SELECT json_get_int('{doc}', 'a', 'b', 0) AS i,"
        f" json_get_int('{doc}', 'a', 'b', 2) AS i_of_float,"
        f" json_get_int('{doc}', 'a', 'b', 1) AS negative,"
        f" json_get_float('{doc}', 'a', 'b', 2) AS f,"
        f" json_get_float('{doc}', 'a', 'b', 0) AS f_of_int,"
        f" json_get_str('{doc}', 'a', 'b', 3) AS s,"
        f" json_get_str('{doc}', 'a', 'b', -4) AS from_end,"
        f" json_get_str('{doc}', 'a', 'b', '3') AS key_as_index,"
        f" json_get_bool('{doc}', 'a', 'b', 4) AS b,"
        f" json_get_json('{doc}', 'a', 'b', 6) AS j,"
        f" json_as_text('{doc}', 's') AS t,"
        f" json_as_text('{doc}', 'a', 'b', 5) AS null_text,"
        f" json_get('{doc}', 'a', 'b', 6, 'c') AS g,"
        f" json_contains('{doc}', 'a', 'b', 5) AS has_null,"
        f" json_contains('{doc}', 'nope') AS has_nope,"
        f" json_length('{doc}', 'a', 'b') AS n,"
        f" json_length('{doc}') AS top,"
        f" json_get_str('not json', 'a') AS broken,"
        f" json_get_str('{doc}', 'a', 'b', 99) AS out_of_range"
    )
    assert rows_of(sql(client, q)) == [
        {
            "i": 1,
            "f": 2.5,
            "f_of_int": 1.0,
            "s": "x",
            "from_end": "x",
            "key_as_index": "x",
            "b": True,
            "j": '{"c": 1}',
            "t": "t",
            "g": "1",
            "has_null": True,
            "has_nope": False,
            "n": 7,
            "top": 3,
        }
    ]


def test_arrow_operators_are_a_known_difference(client) -> None:
    r = sql(client, "SELECT error_message -> 'a' FROM eval.runs")
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
    assert "Operator -> is not yet supported" in r.text and "json_get" in r.text


def test_runtime_dialect_and_types(client) -> None:
    run = _failing_run(client)
    rows = rows_of(sql(client, "SELECT * FROM eval.runs"))
    assert rows[0]["id"] == run["id"] and rows[0]["scorers"] == ["match"]
    assert rows[0]["metrics"] == {"match/mean": 0.5}
    q = (
        "SELECT array_length(scorers, 1) AS n, metrics['match/mean'] AS m,"
        " date_trunc('day', created_at) < now() AS past FROM eval.runs"
    )
    assert rows_of(sql(client, q)) == [{"n": 1, "m": 0.5, "past": True}]
    assert rows_of(sql(client, "SELECT 1 AS one, 'a' || 'b' AS ab")) == [{"one": 1, "ab": "ab"}]
    r = sql(client, "SELEC nonsense")
    assert r.status_code == 400 and "SQL error" in r.text, r.text
