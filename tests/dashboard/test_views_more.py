"""The read models of Qianfan, Oxen and OpenAI Evals (server/<vendor>/views.py) against what
each surface's API answers: runs made over real HTTP on a live server in mock mode, then
read through the views on a sqlite3 connection to its database. Keyset paging and the
indexes it needs are checked on databases built by the surfaces' migrations.

``seed`` is shared with tests/dashboard/test_browser_surfaces.py."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaldock.server import jsonio
from evaldock.server.db import Database
from evaldock.server.openai.views import OpenAIRunsView, iso
from evaldock.server.oxen.views import NOTE, OxenRunsView
from evaldock.server.qianfan.views import QianfanRunsView
from evaldock.server.readmodel import CasesQuery, RunsQuery
from tests.openai import helpers as oa
from tests.qianfan.helpers import EVAL, signed_headers
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow

# Qianfan: the mock judge scores the share of the reference's words in the prediction onto
# 1..5 and cannot score an empty one (-1); the referee passes a case from 3 (the scale's
# middle). Case 1 (judge 3) passes, cases 2 and 3 (judge 1, -1) fail.
QIANFAN_CASES = [
    {"prompt": "q0", "reference": "apple banana cherry", "prediction": "apple banana cherry"},
    {"prompt": "q1", "reference": "apple banana", "prediction": "apple"},
    {"prompt": "q2", "reference": "kiwi mango", "prediction": "grape"},
    {"prompt": "q3", "reference": "plum", "prediction": " "},
]
REFEREE = {
    "templateName": "t1",
    "templateContent": "Rate {prediction} against {reference} for {src}. {metric} {steps}",
    "metric": "correctness",
    "steps": "compare the answer with the reference",
    "maxScore": 5,
}
DIMENSION = "满意度"
MANUAL = "/wenxinworkshop/evaldock/eval/manual/score"
OXEN_TEXTS = ["good movie", "bad film", "fine", "dull plot", "great cast"]
OXEN = "/api/repos/ox/data"
OXEN_AUTH = {"Authorization": "Bearer test"}


@dataclass
class Seeded:
    """The runs made, as each surface's API reports them."""

    qianfan: dict[str, Any] = field(default_factory=dict)  # eval/detail
    qianfan_report: dict[str, Any] = field(default_factory=dict)  # the one report entry
    qianfan_results: list[dict[str, Any]] = field(default_factory=list)  # eval/result/list
    oxen: dict[str, Any] = field(default_factory=dict)  # GET .../evaluations/<id>
    oxen_results: list[dict[str, Any]] = field(default_factory=list)  # GET .../results
    oxen_embeddings: dict[str, Any] = field(default_factory=dict)
    openai: dict[str, Any] = field(default_factory=dict)  # the run
    openai_eval: dict[str, Any] = field(default_factory=dict)
    openai_items: list[dict[str, Any]] = field(default_factory=list)


def _qianfan(http: httpx.Client, path: str, body: Any) -> Any:
    host = http.base_url.netloc.decode()
    r = http.post(path, json=body, headers=signed_headers("POST", path, host))
    assert r.status_code == 200, r.text
    data = r.json()
    assert "error_code" not in data, data
    return data["result"]


def _until(get: Any, done: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = get()
        if done(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not finish: {found}")
        time.sleep(0.05)


def seed_qianfan(http: httpx.Client, out: Seeded) -> None:
    made = _qianfan(
        http,
        "/wenxinworkshop/evaldock/dataset/create",
        {"name": "fruit", "cases": QIANFAN_CASES},
    )
    body = {
        "name": "fruit judged",
        "versionEvalInfo": [{"modelId": "am-1", "modelVersionId": "amv-1"}],
        "datasetId": made["datasetId"],
        "evalStandardConf": {
            "evalMode": "rule,model,manual",
            "scoreModes": ["similarity", "accuracy"],
            "prompt": REFEREE,
            "evaluationDimension": [{"dimension": DIMENSION}],
        },
    }
    created = _qianfan(http, f"{EVAL}/create", body)
    eval_id = created["evalIdStr"]

    def detail() -> Any:
        return _qianfan(http, f"{EVAL}/detail", {"id": eval_id})

    waiting = _until(detail, lambda d: d["state"] != "Doing" and d["state"] != "Pending", "task")
    assert waiting["state"] == "DoingWithManualBegin", waiting
    unit = waiting["versionEvalInfo"][0]["evalUnitId"]
    # Manual: cases 0 and 1 scored 1 and 0, case 2 left unscored (-1); case 3 not at all.
    scores = [
        {"evalUnitId": unit, "caseIndex": i, "dimension": DIMENSION, "score": s}
        for i, s in ((0, 1), (1, 0), (2, -1))
    ]
    _qianfan(http, MANUAL, {"id": eval_id, "scores": scores, "finish": True})
    out.qianfan = _until(detail, lambda d: d["state"] in ("Done", "PartlyDone", "Failed"), "task")
    assert out.qianfan["state"] == "Done", out.qianfan
    (out.qianfan_report,) = _qianfan(http, f"{EVAL}/report", {"id": eval_id})
    page = _qianfan(http, f"{EVAL}/result/list", {"id": eval_id, "pageNo": 1, "pageSize": 100})
    out.qianfan_results = sorted(page["items"], key=lambda r: r["caseIndex"])


def _parquet(**columns: list[Any]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def seed_oxen(http: httpx.Client, out: Seeded) -> None:
    r = http.post("/api/repos", json={"namespace": "ox", "name": "data"}, headers=OXEN_AUTH)
    assert r.status_code == 200, r.text
    form = {"name": "Ox", "email": "ox@x", "message": "add data"}
    data = _parquet(text=OXEN_TEXTS, n=list(range(len(OXEN_TEXTS))))
    r = http.put(
        f"{OXEN}/file/main/",
        files=[("files[]", ("data.parquet", data))],
        data=form,
        headers=OXEN_AUTH,
    )
    assert r.status_code == 200, r.text

    def evaluate(**body: Any) -> dict[str, Any]:
        payload = {"prompt": "Classify: {text}", "target_column": "pred", **body}
        r = http.post(f"{OXEN}/evaluations/main/data.parquet", json=payload, headers=OXEN_AUTH)
        assert r.status_code == 200, r.text
        ident = r.json()["evaluation"]["id"]
        return dict(
            _until(
                lambda: http.get(f"{OXEN}/evaluations/{ident}", headers=OXEN_AUTH).json()[
                    "evaluation"
                ],
                lambda e: e["status"] in ("completed", "failed", "cancelled"),
                "evaluation",
            )
        )

    out.oxen = evaluate(name="sentiment", type="text", model="gpt-4o-mini", auto_commit=False)
    assert out.oxen["status"] == "completed", out.oxen
    r = http.get(f"{OXEN}/evaluations/{out.oxen['id']}/results", headers=OXEN_AUTH)
    out.oxen_results = r.json()["results"]
    out.oxen_embeddings = evaluate(
        name="vectors",
        type="embeddings",
        model="text-embedding-3-small",
        prompt="{text}",
        target_column="vec",
        auto_commit=False,
    )
    assert out.oxen_embeddings["status"] == "completed", out.oxen_embeddings


def seed_openai(http: httpx.Client, out: Seeded) -> None:
    out.openai_eval = oa.make_eval(http)
    r = http.post(
        f"{oa.BASE}/evals/{out.openai_eval['id']}/runs",
        headers=oa.AUTH,
        json={
            "name": "capitals run",
            "data_source": {
                "type": "jsonl",
                "source": {"type": "file_content", "content": oa.ROWS},
            },
        },
    )
    assert r.status_code == 200, r.text
    out.openai = oa.poll_run(http, out.openai_eval["id"], r.json()["id"])
    assert out.openai["status"] == "completed", out.openai
    r = http.get(
        f"{oa.BASE}/evals/{out.openai_eval['id']}/runs/{out.openai['id']}/output_items",
        headers=oa.AUTH,
        params={"limit": 100, "order": "asc"},
    )
    assert r.status_code == 200, r.text
    out.openai_items = r.json()["data"]


def seed(http: httpx.Client) -> Seeded:
    out = Seeded()
    seed_qianfan(http, out)
    seed_oxen(http, out)
    seed_openai(http, out)
    return out


@dataclass
class World:
    server: ServerProcess
    seeded: Seeded

    def connect(self) -> sqlite3.Connection:
        path = self.server.data_dir / "evaldock.sqlite3"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        return conn


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = ServerProcess(tmp_path_factory.mktemp("views") / "data").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            seeded = seed(http)
        yield World(server, seeded)
    finally:
        server.stop()


@pytest.fixture
def conn(world: World) -> Iterator[sqlite3.Connection]:
    c = world.connect()
    yield c
    c.close()


# -- Qianfan ----------------------------------------------------------------------------


def test_qianfan_run_metrics_and_histograms_equal_the_report(
    world: World, conn: sqlite3.Connection
) -> None:
    view, task = QianfanRunsView(), world.seeded.qianfan
    effect = world.seeded.qianfan_report["effectMetric"]
    (row,) = [r for r in view.runs(conn, RunsQuery()) if r.id == task["evalIdStr"]]
    assert (row.surface, row.status, row.vendor_status) == ("qianfan", "completed", "Done")
    assert (row.name, row.dataset, row.model) == ("fruit judged", "fruit", "am-1 amv-1")
    assert row.tenant != "" and "test" not in row.tenant  # masked
    # The runs table shows the stored rule means; the judge's mean is on the run's page.
    assert list(row.metrics)[:2] == ["accuracy", "f1Score"] and "avgJudgeScore" not in row.metrics
    detail = view.run(conn, task["evalIdStr"])
    assert detail is not None
    assert detail.metrics["avgJudgeScore"] == effect["avgJudgeScore"]
    for key in ("accuracy", "f1Score", "rouge_1", "rouge_2", "rouge_l", "bleu4"):
        assert detail.metrics[key] == pytest.approx(effect[key], abs=1e-12)
    assert detail.scorers == [
        "judgeScore",
        "accuracy",
        "f1Score",
        "rouge_1",
        "rouge_2",
        "rouge_l",
        "bleu4",
        f"manual: {DIMENSION}",
    ]
    assert detail.signature and "|prompt:" in detail.signature
    hists = {h.scorer: dict(h.bins) for h in view.histograms(conn, task["evalIdStr"])}
    assert hists["judgeScore"] == effect["scoreDistribution"]
    (manual,) = effect["manualScoreDistribution"]
    assert hists[f"manual: {DIMENSION}"] == manual["scoreDistribution"]
    assert sum(hists["accuracy"].values()) == len(QIANFAN_CASES)
    for key in ("f1Score", "bleu4"):
        expected = [0] * 10
        for item in world.seeded.qianfan_results:
            expected[min(max(int(item["metrics"][key] * 10 + 1e-9), 0), 9)] += 1
        assert list(hists[key].values()) == expected, key


def test_qianfan_cases_filter_sort_and_page(world: World, conn: sqlite3.Connection) -> None:
    view, eval_id = QianfanRunsView(), world.seeded.qianfan["evalIdStr"]
    api = world.seeded.qianfan_results
    page = view.cases(conn, eval_id, CasesQuery())
    assert page.total == len(QIANFAN_CASES) and page.scorer == "judgeScore"
    for case, item in zip(page.rows, api, strict=True):
        assert case.idx == item["caseIndex"]
        assert (case.input, case.ideal, case.output) == (
            item["prompt"],
            item["reference"],
            item["prediction"],
        )
        assert case.scores["judgeScore"] == item["judgeScore"]
        assert case.scores["accuracy"] == item["metrics"]["accuracy"]
        assert case.detail == item["judge_reason"]
    assert [c.scores[f"manual: {DIMENSION}"] for c in page.rows] == [1, 0, -1, None]
    failing = [i["caseIndex"] for i in api if i["judgeScore"] < 3]
    failed = view.cases(conn, eval_id, CasesQuery(failed_only=True))
    assert [c.idx for c in failed.rows] == failing == [2, 3]
    assert all(c.failed for c in failed.rows)
    by_judge = view.cases(conn, eval_id, CasesQuery(sort="score", order="desc"))
    assert [c.scores["judgeScore"] for c in by_judge.rows] == sorted(
        (i["judgeScore"] for i in api), reverse=True
    )
    ranged = view.cases(conn, eval_id, CasesQuery(scorer="accuracy", min_score=0.5))
    assert ranged.scorer == "accuracy"
    assert [c.idx for c in ranged.rows] == [
        i["caseIndex"] for i in api if i["metrics"]["accuracy"] >= 0.5
    ]
    manual = view.cases(conn, eval_id, CasesQuery(scorer=f"manual: {DIMENSION}", min_score=0))
    assert [c.idx for c in manual.rows] == [0, 1]
    second = view.cases(conn, eval_id, CasesQuery(offset=2, limit=2))
    assert [c.idx for c in second.rows] == [2, 3] and second.total == 4
    # Text search over prompt, reference and prediction (the case's own words).
    word = api[1]["reference"][:3]
    hits = view.cases(conn, eval_id, CasesQuery(q=word))
    assert [c.idx for c in hits.rows] == [
        i["caseIndex"]
        for i in api
        if word.lower() in (i["prompt"] + i["reference"] + (i["prediction"] or "")).lower()
    ]
    assert hits.total >= 1
    assert view.cases(conn, eval_id, CasesQuery(q="%")).total == 0
    assert view.run(conn, "ame-nothing") is None


# -- Oxen -------------------------------------------------------------------------------


def test_oxen_run_shows_the_source_model_and_rows(world: World, conn: sqlite3.Connection) -> None:
    view, api = OxenRunsView(), world.seeded.oxen
    runs = {r.id: r for r in view.runs(conn, RunsQuery())}
    row = runs[api["id"]]
    assert (row.surface, row.status, row.vendor_status) == ("oxen", "completed", "completed")
    assert row.dataset == "ox/data @ main: data.parquet"
    assert row.name == "sentiment" and row.model.startswith("gpt-4o-mini")
    assert row.processed == api["progress"]["processed"] == len(OXEN_TEXTS)
    assert row.metrics == {
        "rows processed": api["progress"]["processed"],
        "tokens used": api["tokens_used"],
    }
    assert runs[world.seeded.oxen_embeddings["id"]].metrics == {"rows processed": 5.0}
    detail = view.run(conn, api["id"])
    assert detail is not None
    assert detail.note == NOTE and detail.scorers == []
    assert detail.signature == api["engine_signature"]
    assert detail.configuration["prompt"] == "Classify: {text}"
    assert view.histograms(conn, api["id"]) == []


def test_oxen_cases_are_the_evaluated_rows(world: World, conn: sqlite3.Connection) -> None:
    view, api = OxenRunsView(), world.seeded.oxen
    page = view.cases(conn, api["id"], CasesQuery())
    assert page.total == len(OXEN_TEXTS)
    assert [c.input for c in page.rows] == [f"Classify: {t}" for t in OXEN_TEXTS]
    assert [c.output for c in page.rows] == [r["pred"] for r in world.seeded.oxen_results]
    assert all(c.ideal is None and c.scores == {} and not c.failed for c in page.rows)
    tail = view.cases(conn, api["id"], CasesQuery(offset=1, limit=2, order="desc"))
    assert [c.idx for c in tail.rows] == [3, 2]
    assert view.cases(conn, api["id"], CasesQuery(failed_only=True)).total == 0
    vectors = view.cases(conn, world.seeded.oxen_embeddings["id"], CasesQuery(limit=1))
    (case,) = vectors.rows
    assert case.input == OXEN_TEXTS[0]
    assert case.output is not None and case.output.startswith("embedding, ")


# -- OpenAI -----------------------------------------------------------------------------


def test_openai_run_pass_rates_and_counts(world: World, conn: sqlite3.Connection) -> None:
    view, run = OpenAIRunsView(), world.seeded.openai
    names = {c["id"]: c["name"] for c in world.seeded.openai_eval["testing_criteria"]}
    (row,) = [r for r in view.runs(conn, RunsQuery()) if r.id == run["id"]]
    assert (row.surface, row.status, row.vendor_status) == ("openai", "completed", "completed")
    assert row.name == "capitals / capitals run" and row.dataset == "jsonl: file_content 3 rows"
    assert row.created_at == iso(run["created_at"])
    assert run["model"] in ("", None) and row.model == "graders: string_check, text_similarity"
    expected = {
        names[r["testing_criteria"]] + " pass rate": r["passed"] / (r["passed"] + r["failed"])
        for r in run["per_testing_criteria_results"]
    }
    assert row.metrics == expected
    detail = view.run(conn, run["id"])
    assert detail is not None
    assert detail.scorers == ["Exact", "Fuzzy"]
    assert detail.configuration["result_counts"] == run["result_counts"]
    hists = {h.scorer: dict(h.bins) for h in view.histograms(conn, run["id"])}
    for r in run["per_testing_criteria_results"]:
        assert hists[names[r["testing_criteria"]]] == {"passed": r["passed"], "failed": r["failed"]}


def test_openai_cases_are_the_output_items(world: World, conn: sqlite3.Connection) -> None:
    view, run = OpenAIRunsView(), world.seeded.openai
    items = world.seeded.openai_items
    page = view.cases(conn, run["id"], CasesQuery())
    assert page.total == len(items) == len(oa.ROWS)
    for case, item, given in zip(page.rows, items, oa.ROWS, strict=True):
        assert case.idx == item["datasource_item_id"]
        assert case.ideal == given["item"]["answer"]
        assert case.output == given["sample"]["output_text"]
        assert case.failed == (item["status"] == "fail")
        assert [case.scores[n] for n in ("Exact", "Fuzzy")] == [r["score"] for r in item["results"]]
    failing = [i["datasource_item_id"] for i in items if i["status"] == "fail"]
    failed = view.cases(conn, run["id"], CasesQuery(failed_only=True))
    assert [c.idx for c in failed.rows] == failing and failed.total == len(failing)
    fuzzy = view.cases(conn, run["id"], CasesQuery(scorer="Fuzzy", sort="score", order="desc"))
    scores = [c.scores["Fuzzy"] for c in fuzzy.rows]
    assert scores == sorted(scores, reverse=True) and fuzzy.scorer == "Fuzzy"
    # Text search over the item and the sample.
    out = oa.ROWS[1]["sample"]["output_text"]
    hits = view.cases(conn, run["id"], CasesQuery(q=out))
    assert 1 in [c.idx for c in hits.rows]
    assert all(out in (c.output or "") + c.input + (c.ideal or "") for c in hits.rows)
    assert view.cases(conn, run["id"], CasesQuery(q="no such words anywhere")).total == 0
    exact = view.cases(conn, run["id"], CasesQuery(scorer="Exact", max_score=0.5))
    assert [c.idx for c in exact.rows] == [
        i["datasource_item_id"] for i in items if i["results"][0]["score"] <= 0.5
    ]


# -- keyset paging and its indexes, on migrated databases ---------------------------------


def _migrated(path: Path) -> sqlite3.Connection:
    async def go() -> None:
        db = Database(path)
        await db.open()
        await db.migrate("core", "evaldock.server")
        for name in ("qianfan", "oxen", "openai"):
            await db.migrate(name, f"evaldock.server.{name}")
        await db.close()

    asyncio.run(go())
    c = sqlite3.connect(path)
    c.row_factory = sqlite3.Row
    return c


def _openai_runs(c: sqlite3.Connection, n: int) -> None:
    c.execute(
        "INSERT INTO openai_evals (id, tenant, name, config, criteria, created_at, updated_at)"
        " VALUES ('eval_1', 't', 'e', '{}', '[]', 0, 0)"
    )
    source = jsonio.encode({"type": "jsonl", "source": {"type": "file_id", "id": "file-1"}})
    for i in range(n):
        # Two runs a second: the keyset's id breaks the ties.
        c.execute(
            "INSERT INTO openai_runs (id, tenant, eval_id, name, model, data_source, rows,"
            " created_at) VALUES (?, 't', 'eval_1', 'r', 'm', ?, 1, ?)",
            (f"evalrun_{i:03d}", source, 1_700_000_000 + i // 2),
        )
    c.commit()


def test_openai_runs_keyset_pages_through_iso_cursors(tmp_path: Path) -> None:
    c = _migrated(tmp_path / "db.sqlite3")
    _openai_runs(c, 9)
    view = OpenAIRunsView()
    every = [(r.created_at, r.id) for r in view.runs(c, RunsQuery(limit=100))]
    assert every == sorted(every, reverse=True) and len(every) == 9
    for order in ("desc", "asc"):
        seen: list[tuple[str, str]] = []
        after = None
        while True:
            page = view.runs(c, RunsQuery(limit=2, order=order, after=after))  # type: ignore[arg-type]
            if not page:
                break
            seen += [r.key for r in page]
            after = page[-1].key
        assert seen == (every if order == "desc" else every[::-1])
    # A cursor from another surface between two of this surface's seconds.
    cut = iso(1_700_000_002)[:-1] + ".5Z"
    older = view.runs(c, RunsQuery(limit=100, after=(cut, "zzz")))
    assert [r.created_at for r in older] == [k for k, _ in every if k < cut]
    newer = view.runs(c, RunsQuery(limit=100, order="asc", after=(cut, "")))
    assert [r.created_at for r in newer] == sorted(k for k, _ in every if k > cut)
    assert view.runs(c, RunsQuery(status="failed", limit=100))  # no job row: failed


@pytest.mark.parametrize(
    ("view", "sql", "index"),
    [
        (QianfanRunsView(), "qianfan_evals e", "qianfan_evals_created"),
        (OxenRunsView(), "oxen_evaluations e", "oxen_evaluations_created"),
        (OpenAIRunsView(), "openai_runs r", "openai_runs_created"),
    ],
)
def test_runs_pages_walk_the_created_index(view: Any, sql: str, index: str, tmp_path: Path) -> None:
    """A runs page is an index walk at any depth, never a sort of the table."""
    c = _migrated(tmp_path / "db.sqlite3")
    alias = sql.split()[1]
    for order in ("desc", "asc"):
        plan = " ".join(
            str(r[3])
            for r in c.execute(
                f"EXPLAIN QUERY PLAN SELECT {alias}.id FROM {sql}"
                f" WHERE ({alias}.created_at, {alias}.id) < (?, ?)"
                f" ORDER BY {alias}.created_at {order}, {alias}.id {order} LIMIT 50",
                ("2025", "x"),
            )
        )
        assert index in plan and "TEMP B-TREE" not in plan, plan
    assert view.runs(c, RunsQuery()) == []


def test_qianfan_judge_order_uses_its_index(tmp_path: Path) -> None:
    c = _migrated(tmp_path / "db.sqlite3")
    plan = " ".join(
        str(r[3])
        for r in c.execute(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM qianfan_results"
            " WHERE eval_id = ? AND error IS NOT NULL",
            ("ame-x",),
        )
    )
    assert "qianfan_results_errors" in plan, plan
    plan = " ".join(
        str(r[3])
        for r in c.execute(
            "EXPLAIN QUERY PLAN SELECT r.unit_idx, r.case_idx FROM qianfan_results r"
            " WHERE r.eval_id = ? ORDER BY r.judge_score DESC, r.unit_idx DESC, r.case_idx DESC"
            " LIMIT 50 OFFSET 99950",
            ("ame-x",),
        )
    )
    assert "qianfan_results_judge" in plan and "TEMP B-TREE" not in plan, plan


def test_openai_score_order_uses_its_expression_index(tmp_path: Path) -> None:
    """A score-sorted (and score-filtered) page walks the expression index of that
    criterion's position; the fourth criterion has none and sorts."""
    c = _migrated(tmp_path / "db.sqlite3")
    _openai_runs(c, 1)
    criteria = [{"id": f"c{i}", "name": f"C{i}", "type": "string_check"} for i in range(4)]
    c.execute("UPDATE openai_evals SET criteria = ?", (jsonio.encode(criteria),))
    c.commit()
    view = OpenAIRunsView()
    for position, indexed in ((0, True), (1, True), (2, True), (3, False)):
        seen: list[str] = []
        c.set_trace_callback(seen.append)
        query = CasesQuery(scorer=f"C{position}", sort="score", order="desc", min_score=0.5)
        assert view.cases(c, "evalrun_000", query).total == 0
        c.set_trace_callback(None)
        (paged,) = [s for s in seen if "ORDER BY" in s and "LIMIT" in s]
        plan = " ".join(str(r[3]) for r in c.execute("EXPLAIN QUERY PLAN " + paged))
        assert (f"openai_items_score{position}" in plan) == indexed, plan
        assert ("TEMP B-TREE" not in plan) == indexed, plan
