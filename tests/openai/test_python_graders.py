"""``python`` graders: off by default (a 400 saying why and how to turn them on); on,
``grade(sample, item)`` runs in a worker task of its own under the python limits: a
grader that works, one that raises (0, the error in the result), one that loops forever
(stopped by the wall-time limit, recorded, the run still completes)."""

from __future__ import annotations

from typing import Any

from .helpers import AUTH, BASE, ROWS, make_eval, poll_run, start_run

WORKS = """
def grade(sample, item):
    return 1.0 if sample["output_text"].lower() == item["answer"].lower() else 0.25
"""
RAISES = """
def grade(sample, item):
    if item["answer"] == "Rome":
        raise ValueError("no Rome today")
    return 1.0
"""
LOOPS = """
def grade(sample, item):
    if item["answer"] == "Madrid":
        while True:
            pass
    return 1.0
"""


def _python(name: str, source: str, **extra: Any) -> dict[str, Any]:
    return {"type": "python", "name": name, "source": source, **extra}


def _on(make_client: Any) -> Any:
    return make_client(
        **{"openai.python_graders": True, "openai.python_grader_seconds": 2, "control.key": "c"}
    )


def _results(client: Any, e: dict[str, Any], run: dict[str, Any]) -> list[list[dict[str, Any]]]:
    url = f"{BASE}/evals/{e['id']}/runs/{run['id']}/output_items"
    items = client.get(url, headers=AUTH).json()["data"]
    return [i["results"] for i in items]


def test_python_graders_are_off_by_default_with_the_reason(client: Any) -> None:
    r = client.post(
        f"{BASE}/evals",
        headers=AUTH,
        json={
            "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
            "testing_criteria": [_python("py", WORKS)],
        },
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "testing_criteria[0].type"
    assert "[openai] python_graders = true" in err["message"]
    assert "any holder of an API key could run code" in err["message"]
    r = client.post(
        f"{BASE}/fine_tuning/alpha/graders/validate",
        headers=AUTH,
        json={"grader": _python("py", WORKS)},
    )
    assert r.status_code == 400 and "python_graders" in r.json()["error"]["message"]


def test_a_grader_that_works_one_that_raises_and_one_that_loops(make_client: Any) -> None:
    client = _on(make_client)
    e = make_eval(
        client,
        testing_criteria=[
            _python("Works", WORKS, pass_threshold=0.5),
            _python("Raises", RAISES),
            _python("Loops", LOOPS),
        ],
    )
    run = poll_run(client, e["id"], start_run(client, e["id"]).json()["id"], timeout=120)
    assert run["status"] == "completed", run
    # Paris: all pass; Madrid: the loop is stopped there; Rome: raises.
    assert run["result_counts"] == {"total": 3, "passed": 1, "failed": 0, "errored": 2}
    works, raises, loops = zip(*_results(client, e, run), strict=True)
    assert [r["score"] for r in works] == [1.0, 1.0, 0.25]
    assert [r["passed"] for r in works] == [True, True, False]
    assert [r["score"] for r in raises] == [1.0, 1.0, 0.0]
    assert raises[2]["error"].startswith("ValueError: no Rome today (line 4 in grade)")
    assert loops[0]["score"] == 1.0 and "error" not in loops[0]
    for stopped in loops[1:]:
        assert stopped["score"] == 0.0 and stopped["passed"] is False
        assert "python grader stopped" in stopped["error"]
        assert "[openai] python_grader_seconds" in stopped["error"]


def test_checks_of_python_graders(make_client: Any) -> None:
    client = _on(make_client)
    for source, words in (
        ("def grade(:", "does not parse"),
        ("def other(sample, item):\n    return 1\n", "no top-level grade"),
        ("x" * (256 * 1024 + 1), "over 256 kB"),
    ):
        r = client.post(
            f"{BASE}/fine_tuning/alpha/graders/validate",
            headers=AUTH,
            json={"grader": _python("py", source)},
        )
        assert r.status_code == 400, r.text
        assert words in r.json()["error"]["message"]


def test_graders_run_of_python_graders(make_client: Any) -> None:
    client = _on(make_client)
    url = f"{BASE}/fine_tuning/alpha/graders/run"
    ok = client.post(
        url,
        headers=AUTH,
        json={"grader": _python("py", WORKS), "model_sample": "PARIS", "item": ROWS[0]["item"]},
    ).json()
    assert ok["reward"] == 1.0
    assert ok["metadata"]["errors"]["python_grader_runtime_error"] is False
    bad = client.post(
        url,
        headers=AUTH,
        json={"grader": _python("py", RAISES), "model_sample": "x", "item": ROWS[2]["item"]},
    ).json()
    assert bad["reward"] == 0.0
    assert bad["metadata"]["errors"]["python_grader_runtime_error"] is True
    assert "no Rome today" in bad["metadata"]["errors"]["python_grader_runtime_error_details"]
    loop = client.post(
        url,
        headers=AUTH,
        json={"grader": _python("py", LOOPS), "model_sample": "x", "item": ROWS[1]["item"]},
    ).json()
    assert loop["reward"] == 0.0
    assert "wall-time" in loop["metadata"]["errors"]["python_grader_runtime_error_details"]


# A grader that leaves state behind in its interpreter: a module global, an environment
# variable, a module of its own, a thread that never ends, a patched builtin module.
LEAKS = """
import json, os, sys, threading, time

json.EVALDOCK_LEAK = "set by an earlier grader"
os.environ["EVALDOCK_LEAK"] = "1"
sys.modules["evaldock_leak"] = json


def _linger():
    while True:
        time.sleep(0.05)


threading.Thread(target=_linger, name="evaldock-leak", daemon=True).start()


def grade(sample, item):
    return 1.0
"""
# Scores 1 only in an interpreter none of that reached.
CLEAN = """
import json, os, sys, threading


def grade(sample, item):
    clean = (
        not hasattr(json, "EVALDOCK_LEAK")
        and "EVALDOCK_LEAK" not in os.environ
        and "evaldock_leak" not in sys.modules
        and all(t.name != "evaldock-leak" for t in threading.enumerate())
    )
    return 1.0 if clean else 0.0
"""


def test_a_grader_leaves_nothing_behind_for_the_next(make_client: Any) -> None:
    """Each python grader's worker is retired when its task ends: the next grader (the
    next criterion of the run, the next graders.run call) starts in a fresh interpreter."""
    # A minute, not _on's 2 s: a fresh worker may import the task module under its limit.
    client = make_client(**{"openai.python_graders": True, "openai.python_grader_seconds": 60})
    e = make_eval(client, testing_criteria=[_python("Leaks", LEAKS), _python("Clean", CLEAN)])
    run = poll_run(client, e["id"], start_run(client, e["id"]).json()["id"], timeout=120)
    assert run["status"] == "completed", run
    for leaks, clean in _results(client, e, run):
        assert leaks["score"] == 1.0 and clean["score"] == 1.0, (leaks, clean)
    url = f"{BASE}/fine_tuning/alpha/graders/run"
    for source in (LEAKS, CLEAN, LEAKS, CLEAN):
        r = client.post(
            url,
            headers=AUTH,
            json={"grader": _python("py", source), "model_sample": "x", "item": {}},
        )
        assert r.status_code == 200 and r.json()["reward"] == 1.0, r.text
