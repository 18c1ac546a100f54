"""Spice's work in worker processes: a run over a limit fails naming the setting while
the server answers, a reset kills a running task, a /v1/sql query is stopped by its task
limits where its own progress handler cannot reach, large datasets travel through files;
and the defects fixed on the way: runs record their signature, ``POST /v1/evals/{name}``
waits for its run without polling, a control-plane reset by key on open Spice removes
the public tenant's evals."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from evaldock.engines.scorers import Column
from evaldock.engines.scorers.model import embedding_scores, embedding_scores_now
from evaldock.engines.signature import Signature, evaldock_version
from evaldock.server.compute import run_inline
from evaldock.server.load import load_settings
from evaldock.server.spice import jobs
from evaldock.server.spice.store import SpiceStore

from .helpers import TEXT, rows_of

KEY = "control-test-key"
CTRL = {"X-Evaldock-Control-Key": KEY}
EXAMPLE_EVALS = ["capitals", "capitals_semantic", "squares"]


def random_text(rng: random.Random, n: int) -> str:
    # Random letters: no common prefix or suffix for the distance to strip first.
    return "".join(rng.choices("abcdefghij", k=n))


def long_pairs_pod(folder: Path, pairs: int = 40, chars: int = 90_000) -> Path:
    """A spicepod with one eval, ``huge``: ``pairs`` cases whose ideal and output are
    ``chars`` random characters each, scored by levenshtein: ~0.23 s of CPU a pair (the
    scorer's bound refuses a pair of 1,000,000, which took 27 s of the API's GIL)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(17)
    with (folder / "huge.jsonl").open("w") as fh:
        for i in range(pairs):
            ideal, output = random_text(rng, chars), random_text(rng, chars)
            fh.write(json.dumps({"input": f"q{i}", "ideal": ideal, "output": output}) + "\n")
    (folder / "spicepod.yaml").write_text(
        "version: v1\nkind: Spicepod\nname: huge\n"
        "datasets:\n  - {name: huge, from: 'file:huge.jsonl'}\n"
        "evals:\n  - {name: huge, dataset: huge, scorers: [levenshtein]}\n"
    )
    return folder / "spicepod.yaml"


def wait_done(client: Any, name: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = rows_of(client.get(f"/v1/evals/{name}/runs/{run_id}"))[0]
        if run["status"] in ("Completed", "Failed"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def sql_rows(client: Any, query: str) -> list[dict[str, Any]]:
    return rows_of(client.post("/v1/sql", content=query, headers=TEXT))


# -- limits -------------------------------------------------------------------------------
def test_levenshtein_over_long_pairs_fails_on_its_cpu_limit_while_the_server_answers(
    make_client, tmp_path: Path
) -> None:
    pod = long_pairs_pod(tmp_path / "pod")
    client = make_client(
        **{"spice.spicepod": str(pod), "spice.run_timeout": 0, "jobs.task_cpu_seconds": 2}
    )
    run = rows_of(client.post("/v1/evals/huge", json={"model": "replay"}))[0]
    slowest = 0.0
    deadline = time.monotonic() + 60
    while True:
        start = time.monotonic()
        assert [s["name"] for s in rows_of(client.get("/v1/evals"))] == ["huge"]
        assert client.get("/health").text == "ok"
        slowest = max(slowest, time.monotonic() - start)
        got = rows_of(client.get(f"/v1/evals/huge/runs/{run['id']}"))[0]
        if got["status"] == "Failed":
            break
        assert time.monotonic() < deadline, got
        time.sleep(0.05)
    message = got["error_message"]
    assert "scoring" in message and "CPU-time" in message, message
    assert "raise [jobs] task_cpu_seconds" in message, message
    # The scorer held the API process's GIL for the whole run before; now it costs a
    # worker's core. Generous for two shared cores: the point is seconds, not tens.
    assert slowest < 5, slowest
    assert sql_rows(client, "SELECT count(*) AS n FROM eval.results") == [{"n": 0}]


@pytest.mark.inprocess
def test_a_reset_kills_the_running_task(make_client, tmp_path: Path) -> None:
    pod = long_pairs_pod(tmp_path / "pod")
    client = make_client(**{"spice.spicepod": str(pod), "spice.run_timeout": 0, "control.key": KEY})
    pool = client.app.state.ctx.pool
    run = rows_of(client.post("/v1/evals/huge", json={"model": "replay"}))[0]
    deadline = time.monotonic() + 30
    while True:  # the case was read (the job's total is set): the scoring task runs
        listed = client.get("/_evaldock/jobs?surface=spice", headers=CTRL).json()["jobs"]
        if listed and listed[0]["total"] == 40:
            break
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
    busy = _busy_worker(pool.pids)
    assert rows_of(client.get(f"/v1/evals/huge/runs/{run['id']}"))[0]["status"] == "Running"
    r = client.post("/_evaldock/reset", json={"surface": "spice"}, headers=CTRL)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 3
    while _alive(busy):
        assert time.monotonic() < deadline, "the scoring worker outlived the reset"
        time.sleep(0.05)
    assert busy not in pool.pids
    assert sql_rows(client, "SELECT count(*) AS n FROM eval.runs") == [{"n": 0}]
    assert not list((tmp_path / "data" / "spice" / "runs").glob("*"))
    # The pool carries on: the next run completes.
    small = {"dataset": "small", "scorers": ["levenshtein"], "data": [{"input": "q", "ideal": "a"}]}
    assert client.put("/v1/evals/small", json=small).status_code == 200
    again = rows_of(client.post("/v1/evals/small", json={"model": "replay"}))[0]
    assert wait_done(client, "small", again["id"])["status"] == "Completed"


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def _busy_worker(pids: list[int]) -> int:
    """The worker that is scoring: the one whose CPU time keeps growing."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = {pid: _cpu_ticks(pid) for pid in pids}
        time.sleep(0.3)
        grew = [pid for pid in pids if _cpu_ticks(pid) - before[pid] >= 10]
        if grew:
            return grew[0]
    raise AssertionError("no worker process is scoring")


# ~15 s inside DataFusion's planner and optimizer (8,000 terms to fold), which look for
# no signal: the query's own timer cannot stop it, the task's wall-time limit does.
SLOW_SQL = "SELECT 1" + "+1" * 8000


def test_sql_a_plan_the_query_timer_cannot_stop(make_client) -> None:
    """The task's wall-time limit stops what the query's own timer cannot."""
    client = make_client(**{"spice.sql_timeout": 0.3})
    start = time.monotonic()
    r = client.post("/v1/sql", content=SLOW_SQL, headers=TEXT)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert "wall-time" in r.text and "raise [spice] sql_timeout" in r.text, r.text
    assert time.monotonic() - start < 10  # 0.3 s + the grace, not the ~15 s it needs
    assert sql_rows(client, "SELECT count(*) AS n FROM eval.runs") == [{"n": 0}]


def test_sql_queries_wait_a_bounded_time_for_a_query_slot(make_client) -> None:
    """Spice's queries take all request workers but one (the other surfaces share them;
    with the default two: one query at a time); a query that finds no slot free within
    [spice] sql_timeout is refused saying so."""
    client = make_client(**{"spice.sql_timeout": 0.5})
    answers: dict[int, Any] = {}

    def ask(i: int) -> None:
        answers[i] = client.post("/v1/sql", content=SLOW_SQL, headers=TEXT)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - start < 15
    texts = [r.text for r in answers.values()]
    assert all(r.status_code == 400 for r in answers.values()), texts
    assert all("[spice] sql_timeout" in t for t in texts), texts
    assert sum("wall-time" in t for t in texts) == 1, texts
    assert sum("every query slot busy" in t for t in texts) == 2, texts
    assert sql_rows(client, "SELECT 1 AS one") == [{"one": 1}]


def test_sql_a_recursive_query_stops_at_its_timeout(make_client) -> None:
    client = make_client(**{"spice.sql_timeout": 0.3})
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    r = client.post("/v1/sql", content=sql, headers=TEXT)
    assert r.status_code == 400 and "[spice] sql_timeout" in r.text, r.text


def test_sql_memory_is_bounded_by_its_own_setting(make_client) -> None:
    client = make_client(**{"spice.sql_memory_mb": 200, "spice.sql_max_bytes": 2**30})
    # 16 values of 50 MB built by one function call: no memory pool accounts for them.
    sql = "SELECT x, repeat('x', 50000000) AS z FROM generate_series(1, 16) AS t(x)"
    r = client.post("/v1/sql", content=sql, headers=TEXT)
    assert r.status_code == 400, r.text[:300]
    assert "memory" in r.text and "raise [spice] sql_memory_mb" in r.text, r.text
    assert sql_rows(client, "SELECT 1 AS one") == [{"one": 1}]


def test_sql_other_tables_stay_out_of_reach_with_the_signature_column(client) -> None:
    """eval.runs has one more column (signature): the hostile UNION of test_hostile with
    as many columns is still refused for reading main.spice_runs."""
    sql = (
        "SELECT * FROM eval.runs UNION ALL SELECT id, '', '', '', '', '', '', '', '', '' "
        "FROM main.spice_runs"
    )
    r = client.post("/v1/sql", content=sql, headers=TEXT)
    assert r.status_code == 400 and "only SELECT" in r.text, r.text


# -- large datasets through files ---------------------------------------------------------
def test_a_large_dataset_travels_through_files_and_scores_the_same(
    make_client, tmp_path: Path
) -> None:
    rng = random.Random(5)
    folder = tmp_path / "pod"
    folder.mkdir()
    cases = []
    for i in range(2000):  # ~2.4 MB of text: over the 1 MiB that crosses the pipe inline
        ideal = random_text(rng, 300)
        output = ideal if i % 3 == 0 else random_text(rng, 300)
        cases.append({"input": f"q{i}", "ideal": ideal, "output": output})
    (folder / "big.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    (folder / "spicepod.yaml").write_text(
        "version: v1\nkind: Spicepod\nname: big\n"
        "datasets:\n  - {name: big, from: 'file:big.jsonl'}\n"
        "evals:\n  - {name: big, dataset: big, scorers: [match, levenshtein]}\n"
    )
    client = make_client(**{"spice.spicepod": str(folder / "spicepod.yaml")})
    run = rows_of(client.post("/v1/evals/big", json={"model": "replay"}))[0]
    assert run["status"] == "Completed", run
    lev = [Levenshtein.normalized_similarity(c["output"], c["ideal"]) for c in cases]
    assert run["metrics"]["match/mean"] == pytest.approx(667 / 2000, abs=1e-6)
    assert run["metrics"]["levenshtein/mean"] == pytest.approx(float(np.mean(lev)), abs=1e-5)
    stored = sql_rows(
        client,
        "SELECT input, actual, expected, value FROM eval.results"
        " WHERE scorer = 'levenshtein' AND input IN ('q0', 'q1999') ORDER BY input",
    )
    assert [r["input"] for r in stored] == ["q0", "q1999"]
    assert stored[1]["actual"] == cases[1999]["output"]
    assert stored[1]["expected"] == cases[1999]["ideal"]
    assert stored[1]["value"] == pytest.approx(lev[1999], abs=1e-6)
    count = sql_rows(client, "SELECT count(*) AS n FROM eval.results")
    assert count == [{"n": 4000}]
    if (tmp_path / "data" / "spice").is_dir():  # in-process: the run's files are gone
        assert not list((tmp_path / "data" / "spice" / "runs").glob("*"))


def test_spill_keeps_small_lists_inline_and_large_ones_in_bounded_chunks(
    tmp_path: Path,
) -> None:
    small = jobs.spill([("a", "b", "c")] * 10, tmp_path / "small")
    assert small.items is not None and small.path is None
    assert not (tmp_path / "small").exists()
    # ~18 MB of distinct strings (pickle writes a repeated object once)
    items = [(f"in {i}", f"{i}" + "x" * 3000, f"{i}" + "y" * 3000) for i in range(3000)]
    big = jobs.spill(items, tmp_path / "runs" / "big.texts")
    assert big.items is None and big.path == str(tmp_path / "runs" / "big.texts")
    assert big.count == 3000 and big.load() == items
    chunks = list(big.chunks())
    assert all(len(c) <= jobs.CHUNK_ITEMS for c in chunks) and len(chunks) > 3
    assert not list((tmp_path / "runs").glob("*.part"))
    big.remove()
    assert not (tmp_path / "runs" / "big.texts").exists()


def test_embedding_scores_in_the_worker_equal_the_engines(settings_factory) -> None:
    """embedding_scores_now (sync, what a worker calls) gives exactly what the async
    embedding_scores gives, on the same embedder."""
    from evaldock.server.compute.engines import build_engine

    embedder = build_engine(settings_factory(), "embedder")
    out = Column.of(["Paris", "the capital is Paris", "", "Tokyo"])
    ideal = Column.of(["Paris", "Paris", "x", "Kyoto"])
    want = asyncio.run(embedding_scores(embedder, out, ideal))
    assert embedding_scores_now(embedder, out, ideal) == want
    assert want[0] == pytest.approx(1.0)


def test_score_cases_inline_reports_the_embedder_it_used(settings_factory, tmp_path) -> None:
    settings = settings_factory()
    cases = jobs.Spilled(2, items=[("q1", "a", "a"), ("q2", "b", "c")])
    scored = run_inline(
        jobs.score_cases,
        cases,
        None,
        ["match"],
        ["minilm"],
        str(tmp_path / "t"),
        settings=settings,
    )
    assert scored.scores["match"] == [1.0, 0.0]
    assert len(scored.scores["minilm"]) == 2 and scored.scores["minilm"][0] == pytest.approx(1)
    assert Signature.parse(scored.engines["embedder"]).kind == "embedder"
    assert scored.texts.items == [("q1", "a", "a"), ("q2", "c", "b")]


# -- defects fixed ------------------------------------------------------------------------
def test_a_run_records_its_signature(client) -> None:
    put = client.put(
        "/v1/evals/signed",
        json={"dataset": "capitals", "scorers": ["match", "hf_minilm", "levenshtein"]},
    )
    assert put.status_code == 200, put.text
    run = rows_of(client.post("/v1/evals/signed", json={"model": "replay"}))[0]
    assert run["status"] == "Completed", run
    assert "signature" not in run  # the runtime's row has no room for it
    rows = sql_rows(client, f"SELECT signature FROM eval.runs WHERE id = '{run['id']}'")
    signature = Signature.parse(rows[0]["signature"])
    assert signature.fields[:2] == (
        ("scorers", "match,hf_minilm,levenshtein"),
        ("model", "replay"),
    )
    assert signature.get("embedder") == "mock"
    assert signature.get("embedder.model") == "evaldock-mock-embedder"
    assert signature.fields[-1] == ("evaldock", evaldock_version())
    assert signature.get("judge") is None

    served = rows_of(client.post("/v1/evals/capitals", json={"model": "assistant"}))[0]
    rows = sql_rows(client, f"SELECT signature FROM eval.runs WHERE id = '{served['id']}'")
    signature = Signature.parse(rows[0]["signature"])
    assert signature.get("model") == "assistant" and signature.get("served") == "gpt-4o-mini"
    assert signature.get("judge") == "mock" and signature.get("judge.model") == "lexical"
    assert signature.fields[-1] == ("evaldock", evaldock_version())


def test_a_failed_run_has_no_signature(make_client, tmp_path: Path) -> None:
    from .helpers import write_pod

    client = make_client(**{"spice.spicepod": str(write_pod(tmp_path / "pod", 5))})
    run = rows_of(client.post("/v1/evals/broken", json={"model": "replay"}))[0]
    assert run["status"] == "Failed"
    rows = sql_rows(client, f"SELECT * FROM eval.runs WHERE id = '{run['id']}'")
    assert "signature" not in rows[0]  # null: left out, as every null field


@pytest.mark.inprocess
def test_post_waits_for_its_run_without_polling(
    make_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .helpers import write_pod

    client = make_client(
        **{
            "spice.spicepod": str(write_pod(tmp_path / "pod", 20)),
            "spice.concurrency": 1,
            "engines.judge.delay_ms": 50,  # 20 model calls one at a time: ~1 s
        }
    )
    reads: list[str] = []
    original = SpiceStore.run

    async def counted(self: SpiceStore, run_id: str, tenant: str | None = None) -> Any:
        reads.append(run_id)
        return await original(self, run_id, tenant)

    monkeypatch.setattr(SpiceStore, "run", counted)
    run = rows_of(client.post("/v1/evals/exact", json={"model": "chat"}))[0]
    assert run["status"] == "Completed", run
    # The job reads its run once, the request once when woken; polling every 5-100 ms
    # read it ~15 times in that second.
    assert len(reads) <= 3, reads


def test_a_post_waiting_for_a_run_that_a_reset_deleted_answers_404(
    make_client, tmp_path: Path
) -> None:
    from .helpers import write_pod

    client = make_client(
        **{
            "spice.spicepod": str(write_pod(tmp_path / "pod", 20)),
            "spice.concurrency": 1,
            "engines.judge.delay_ms": 200,  # 20 model calls one at a time: ~4 s
            "control.key": KEY,
        }
    )
    answer: dict[str, Any] = {}
    waiting = threading.Thread(
        target=lambda: answer.update(r=client.post("/v1/evals/exact", json={"model": "chat"}))
    )
    waiting.start()
    deadline = time.monotonic() + 30
    while True:  # running: a reset cancels its handler, whose end wakes the POST
        listed = client.get("/_evaldock/jobs?surface=spice", headers=CTRL).json()["jobs"]
        if listed and listed[0]["status"] == "running":
            break
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
    start = time.monotonic()
    assert client.post("/_evaldock/reset", json={"surface": "spice"}, headers=CTRL).is_success
    waiting.join(30)
    assert time.monotonic() - start < 3  # woken by the job's end, not the 300 s timeout
    r = answer["r"]
    assert r.status_code == 404 and r.text.startswith("run '") and "not found" in r.text


def test_control_reset_by_key_on_open_spice_removes_the_public_tenants_evals(
    make_client,
) -> None:
    client = make_client(**{"control.key": KEY})
    put = client.put(
        "/v1/evals/mine",
        json={"dataset": "up", "scorers": ["match"], "data": [{"input": "q", "ideal": "a"}]},
    )
    assert put.status_code == 200, put.text
    assert rows_of(client.post("/v1/evals/mine", json={"model": "mock"}))[0]["status"]
    assert [s["name"] for s in rows_of(client.get("/v1/evals"))] == [*EXAMPLE_EVALS, "mine"]
    r = client.post("/_evaldock/reset", json={"surface": "spice", "key": "anything"}, headers=CTRL)
    assert r.status_code == 200, r.text
    assert r.json() == {"reset": [{"surface": "spice", "scope": "tenant"}]}
    assert [s["name"] for s in rows_of(client.get("/v1/evals"))] == EXAMPLE_EVALS
    assert sql_rows(client, "SELECT count(*) AS n FROM eval.runs") == [{"n": 0}]
    r = client.put("/v1/evals/probe", json={"dataset": "up", "scorers": ["match"]})
    assert r.status_code == 404 and r.text == "dataset 'up' not found"


def test_settings_name_the_sql_memory_bound(tmp_path: Path) -> None:
    from evaldock.server.spice import SURFACE

    assert SURFACE.defaults()["sql_memory_mb"] == 2048
    settings = load_settings(
        None, {"server.data": str(tmp_path), "spice.sql_memory_mb": 64}, environ={}
    )
    assert settings.section("spice")["sql_memory_mb"] == 64
