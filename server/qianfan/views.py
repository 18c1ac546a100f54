"""The dashboard's read model of Qianfan evaluation tasks (``qianfan_evals``) and their
per-case results (``qianfan_results``).

A case is one model version's (unit's) answer to one dataset case: input the dataset's
prompt, ideal its reference, output the prediction; a score column per rule metric the
task selected (``scoreModes``), the judge's score (judge mode) and each manual dimension
(manual mode). A case fails when its inference failed, or the judge scored it below the
middle of its scale (3 on the default 1..5) or could not score it (-1). The histograms
are the report's charts: the judge's score distribution ("-1" = invalid), each manual
dimension's, and tenths of each rule metric. A task with several model versions shows
the first one's metrics as its headline and every version's in the run page.

Paging: tasks by keyset on ``(created_at, id)`` (0005_dashboard_indexes.sql); cases by
LIMIT/OFFSET over the primary key ``(eval_id, unit_idx, case_idx)``, or over
``(eval_id, judge_score, unit_idx, case_idx)`` when sorted or filtered on the judge.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .. import jsonio
from ..readmodel import (
    CaseRow,
    CasesPage,
    CasesQuery,
    Histogram,
    RunDetail,
    RunRow,
    RunsQuery,
)
from ..readsql import TENTHS, keyset, masked_tenant, run_row, runs_page, text_filter, where
from .modes import selected_metrics
from .store import EVAL_JOB, EVAL_STATUSES, METRIC_COLUMNS

JUDGE = "judgeScore"
MANUAL = "manual: "  # a manual dimension's column: "manual: 满意度"
# The referee's scale when the task's prompt names no maxScore: [qianfan] judge_min_score
# and judge_max_score's defaults (the view reads the task, not the server's settings).
JUDGE_MIN, JUDGE_MAX = 1, 5

_SELECT = (
    "SELECT e.id, e.tenant, e.name, e.dataset_id, e.dataset_name, e.eval_mode,"
    " e.standard_conf, e.case_count, e.stop_requested, e.manual_finished, e.created_at,"
    " j.status AS state, j.processed, j.total, j.started_at, j.finished_at, j.error,"
    " (SELECT group_concat(u.model_name || ' ' || u.model_version, ', ')"
    "  FROM qianfan_units u WHERE u.eval_id = e.id) AS models"
    " FROM qianfan_evals e JOIN job_view j ON j.id = e.id"
)


def _modes(row: sqlite3.Row) -> list[str]:
    return [m for m in str(row["eval_mode"]).split(",") if m]


def _rule_keys(conf: dict[str, Any], modes: list[str]) -> list[str]:
    """The report keys of the rule metrics the task computes, in report order."""
    if "rule" not in modes:
        return []
    chosen = selected_metrics(conf.get("scoreModes"))
    return [k for k in METRIC_COLUMNS if k in chosen]


def judge_scale(conf: dict[str, Any]) -> tuple[int, int]:
    prompt = conf.get("prompt") or {}
    top = prompt.get("maxScore", JUDGE_MAX) if isinstance(prompt, dict) else JUDGE_MAX
    try:
        return JUDGE_MIN, int(top)
    except (TypeError, ValueError):
        return JUDGE_MIN, JUDGE_MAX


def judge_pass(conf: dict[str, Any]) -> float:
    """The judge score a case needs to pass: the middle of the scale (3 on 1..5)."""
    low, top = judge_scale(conf)
    return (low + top) / 2


def _dimensions(conf: dict[str, Any], modes: list[str]) -> list[str]:
    if "manual" not in modes:
        return []
    dims = conf.get("evaluationDimension") or [{"dimension": "满意度"}]
    return [str(d["dimension"]) for d in dims]


def _units(conn: sqlite3.Connection, ids: list[str]) -> dict[str, list[sqlite3.Row]]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    out: dict[str, list[sqlite3.Row]] = {}
    for u in conn.execute(
        "SELECT eval_id, idx, model_name, model_version, metrics FROM qianfan_units"
        f" WHERE eval_id IN ({marks}) ORDER BY eval_id, idx",
        ids,
    ):
        out.setdefault(u["eval_id"], []).append(u)
    return out


def _judge_means(conn: sqlite3.Connection, eval_id: str, low: int, top: int) -> dict[int, float]:
    """Per unit, the mean judge score over valid scores (the report's avgJudgeScore)."""
    return {
        int(r[0]): float(r[1])
        for r in conn.execute(
            # Only inferred cases are judged (a row with an error keeps judge_score NULL),
            # so the index (eval_id, judge_score, unit_idx, ...) answers it alone.
            "SELECT unit_idx, AVG(judge_score) FROM qianfan_results WHERE eval_id = ?"
            " AND judge_score BETWEEN ? AND ? GROUP BY unit_idx",
            (eval_id, low, top),
        )
    }


def _failures(conn: sqlite3.Connection, eval_id: str) -> int:
    """Cases whose inference failed (the partial index qianfan_results_errors)."""
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM qianfan_results WHERE eval_id = ? AND error IS NOT NULL",
            (eval_id,),
        ).fetchone()[0]
    )


def _metrics(
    conn: sqlite3.Connection, row: sqlite3.Row, units: list[sqlite3.Row], first_only: bool
) -> dict[str, float]:
    """Rule means (stored per unit) and, on the run's page, the judge's mean; a unit's
    name prefixes its metrics when the task has several. The runs table (``first_only``)
    shows the stored rule means only: the judge's mean is an index walk over every case
    (100,000 per task), too much for each of a page's 50 rows."""
    conf = jsonio.decode(row["standard_conf"])
    modes = _modes(row)
    keys = _rule_keys(conf, modes)
    judging = "model" in modes and not first_only
    judged = _judge_means(conn, row["id"], *judge_scale(conf)) if judging else {}
    out: dict[str, float] = {}
    for u in units[:1] if first_only else units:
        prefix = (
            "" if len(units) == 1 or first_only else f"{u['model_name']} {u['model_version']}: "
        )
        if int(u["idx"]) in judged:
            out[prefix + "avgJudgeScore"] = judged[int(u["idx"])]
        means = jsonio.decode(u["metrics"]) if u["metrics"] else {}
        out.update({prefix + k: float(means[k]) for k in keys if k in means})
    return out


def _row(row: sqlite3.Row, metrics: dict[str, float], failed_cases: int = 0) -> RunRow:
    state = row["state"]
    word = EVAL_STATUSES.word(state)
    if word == "Doing" and row["stop_requested"]:
        word = "Stopping"
    elif word == "Done" and failed_cases:
        word = "PartlyDone"
    return RunRow(
        surface="qianfan",
        tenant=masked_tenant(row["tenant"]),
        id=row["id"],
        name=row["name"],
        dataset=row["dataset_name"] or row["dataset_id"],
        model=row["models"] or "",
        status=state,
        vendor_status=word,
        processed=int(row["processed"]),
        total=int(row["total"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        metrics=metrics,
        error=row["error"],
    )


class QianfanRunsView:
    surface = "qianfan"
    job_kind = EVAL_JOB

    def runs(self, conn: sqlite3.Connection, query: RunsQuery) -> list[RunRow]:
        rows = runs_page(conn, _SELECT, query, "j.status", keyset(query, "e.created_at", "e.id"))
        units = _units(conn, [r["id"] for r in rows])
        return [_row(r, _metrics(conn, r, units.get(r["id"], []), True)) for r in rows]

    def run(self, conn: sqlite3.Connection, run_id: str) -> RunDetail | None:
        found = run_row(
            conn, _SELECT, "e.id", run_id, extra="e.metrics_signature, e.judge_signature"
        )
        if found is None:
            return None
        units = _units(conn, [run_id]).get(run_id, [])
        failed = _failures(conn, run_id)
        conf = jsonio.decode(found["standard_conf"])
        row = _row(found, _metrics(conn, found, units, True), int(failed))
        signature = " ".join(s for s in (found["metrics_signature"], found["judge_signature"]) if s)
        modes = _modes(found)
        return RunDetail(
            row=row,
            metrics=_metrics(conn, found, units, False),
            signature=signature or None,
            configuration={
                "evalMode": found["eval_mode"],
                "datasetId": found["dataset_id"],
                "evalStandardConf": conf,
                "models": [f"{u['model_name']} {u['model_version']}" for u in units],
            },
            scorers=self._scorers(conf, modes),
            pass_threshold=judge_pass(conf) if "model" in modes else None,
        )

    @staticmethod
    def _scorers(conf: dict[str, Any], modes: list[str]) -> list[str]:
        return [
            *(["judgeScore"] if "model" in modes else []),
            *_rule_keys(conf, modes),
            *(MANUAL + d for d in _dimensions(conf, modes)),
        ]

    def _task(self, conn: sqlite3.Connection, run_id: str) -> tuple[dict[str, Any], list[str]]:
        found = conn.execute(
            "SELECT standard_conf, eval_mode FROM qianfan_evals WHERE id = ?", (run_id,)
        ).fetchone()
        if found is None:
            return {}, []
        return jsonio.decode(found["standard_conf"]), _modes(found)

    def cases(self, conn: sqlite3.Connection, run_id: str, query: CasesQuery) -> CasesPage:
        conf, modes = self._task(conn, run_id)
        scorers = self._scorers(conf, modes)
        if not modes:
            return CasesPage([], 0, "")
        scorer = query.scorer if query.scorer in scorers else (scorers[0] if scorers else "")
        column, cargs = self._column(scorer)
        threshold = judge_pass(conf)
        clauses: list[str] = ["r.eval_id = ?"]
        args: list[Any] = [run_id]
        if query.failed_only:
            if "model" in modes:
                # judge_score NULL: not judged (yet); -1: the judge could not score it.
                clauses.append("(r.error IS NOT NULL OR r.judge_score < ?)")
                args.append(threshold)
            else:
                clauses.append("r.error IS NOT NULL")
        if column and query.min_score is not None:
            clauses.append(f"{column} >= ?")
            args += [*cargs, query.min_score]
        if column and query.max_score is not None:
            clauses.append(f"{column} <= ?")
            args += [*cargs, query.max_score]
        search, sargs = text_filter(query, ["c.prompt", "c.reference", "r.prediction"])
        if search:
            # The prompt and reference live with the dataset's case: one lookup by key each.
            clauses.append(
                "EXISTS (SELECT 1 FROM qianfan_evals e JOIN qianfan_dataset_cases c"
                " ON c.dataset_id = e.dataset_id AND c.idx = r.case_idx"
                f" WHERE e.id = r.eval_id AND {search})"
            )
            args += sargs
        base = where(*clauses)
        total = conn.execute(f"SELECT COUNT(*) FROM qianfan_results r{base}", args).fetchone()[0]
        direction = "DESC" if query.order == "desc" else "ASC"
        order = f"r.unit_idx {direction}, r.case_idx {direction}"
        oargs: list[Any] = []
        if query.sort == "score" and column:
            # Ties in the same direction, so the judge index serves the whole order.
            order = f"{column} {direction}, r.unit_idx {direction}, r.case_idx {direction}"
            oargs = list(cargs)
        keys = conn.execute(
            f"SELECT r.unit_idx, r.case_idx FROM qianfan_results r{base}"
            f" ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, *oargs, query.limit, query.offset],
        ).fetchall()
        if not keys:
            return CasesPage([], int(total), scorer)
        return CasesPage(self._rows(conn, run_id, conf, modes, keys), int(total), scorer)

    @staticmethod
    def _column(scorer: str) -> tuple[str, list[Any]]:
        """The SQL expression of a scorer's per-case value (and its arguments)."""
        if scorer == JUDGE:
            return "r.judge_score", []
        if scorer in METRIC_COLUMNS:
            return f"r.{METRIC_COLUMNS[scorer]}", []
        if scorer.startswith(MANUAL):
            return (
                "(SELECT m.score FROM qianfan_manual_scores m WHERE m.eval_id = r.eval_id"
                " AND m.unit_idx = r.unit_idx AND m.case_idx = r.case_idx AND m.dimension = ?)",
                [scorer[len(MANUAL) :]],
            )
        return "", []

    def _rows(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        conf: dict[str, Any],
        modes: list[str],
        keys: list[sqlite3.Row],
    ) -> list[CaseRow]:
        pairs = [(int(k[0]), int(k[1])) for k in keys]
        by_unit: dict[int, list[int]] = {}
        for unit, case in pairs:
            by_unit.setdefault(unit, []).append(case)
        cells: dict[tuple[int, int], sqlite3.Row] = {}
        manual: dict[tuple[int, int], dict[str, float]] = {}
        dims = _dimensions(conf, modes)
        # Per unit, ``case_idx IN (...)``: each case is one primary-key lookup (a row-value
        # IN over (unit, case) walks the unit's every case: 100 ms at 100,000).
        for unit, cases in by_unit.items():
            marks = ",".join("?" * len(cases))
            for r in conn.execute(
                "SELECT r.unit_idx, r.case_idx, r.prediction, r.error, r.judge_score,"
                " r.judge_reason, c.prompt, c.reference, u.model_name, u.model_version,"
                f" {', '.join('r.' + c for c in METRIC_COLUMNS.values())}"
                " FROM qianfan_results r JOIN qianfan_evals e ON e.id = r.eval_id"
                " JOIN qianfan_units u ON u.eval_id = r.eval_id AND u.idx = r.unit_idx"
                " LEFT JOIN qianfan_dataset_cases c ON c.dataset_id = e.dataset_id"
                " AND c.idx = r.case_idx"
                f" WHERE r.eval_id = ? AND r.unit_idx = ? AND r.case_idx IN ({marks})",
                [run_id, unit, *cases],
            ):
                cells[(int(r["unit_idx"]), int(r["case_idx"]))] = r
            if dims:
                for m in conn.execute(
                    "SELECT case_idx, dimension, score FROM qianfan_manual_scores"
                    f" WHERE eval_id = ? AND unit_idx = ? AND case_idx IN ({marks})",
                    [run_id, unit, *cases],
                ):
                    manual.setdefault((unit, int(m[0])), {})[m[1]] = float(m[2])
        several = (
            conn.execute(
                "SELECT COUNT(*) FROM qianfan_units WHERE eval_id = ?", (run_id,)
            ).fetchone()[0]
            > 1
        )
        threshold = judge_pass(conf)
        rows = []
        for key in pairs:
            r = cells[key]
            scores: dict[str, float | None] = {}
            if "model" in modes:
                scores[JUDGE] = r["judge_score"]
            for k in _rule_keys(conf, modes):
                scores[k] = r[METRIC_COLUMNS[k]]
            for d in dims:
                scores[MANUAL + d] = manual.get(key, {}).get(d)
            judge = r["judge_score"]
            failed = r["error"] is not None or (
                "model" in modes and judge is not None and judge < threshold
            )
            model = f"{r['model_name']} {r['model_version']}: " if several else ""
            reason = r["error"] or r["judge_reason"] or ""
            rows.append(
                CaseRow(
                    idx=key[1],
                    input=r["prompt"] or "",
                    ideal=r["reference"],
                    output=r["prediction"],
                    scores=scores,
                    failed=failed,
                    detail=(model + reason) if (model or reason) else "",
                )
            )
        return rows

    def histograms(self, conn: sqlite3.Connection, run_id: str) -> list[Histogram]:
        conf, modes = self._task(conn, run_id)
        out: list[Histogram] = []
        if "model" in modes:
            out.append(self._judge_histogram(conn, run_id, conf))
        for d in _dimensions(conf, modes):
            out.append(self._manual_histogram(conn, run_id, d))
        keys = _rule_keys(conf, modes)
        if keys:
            out += self._rule_histograms(conn, run_id, keys)
        return out

    @staticmethod
    def _rule_histograms(conn: sqlite3.Connection, run_id: str, keys: list[str]) -> list[Histogram]:
        """Tenths of every rule metric (as readsql.tenths bins them) in one pass over
        the task's rows, counted here: one GROUP BY per metric costs a scan each, and 60
        SUM(...) columns cost 6 million expressions per 100,000 cases."""
        buckets = ", ".join(
            f"MIN(MAX(CAST({METRIC_COLUMNS[k]} * 10 + 1e-9 AS INTEGER), 0), 9)" for k in keys
        )
        counts = [[0] * 10 for _ in keys]
        for row in conn.execute(
            f"SELECT {buckets} FROM qianfan_results WHERE eval_id = ?", (run_id,)
        ):
            for i, b in enumerate(row):
                if b is not None:  # not scored (a failed inference)
                    counts[i][b] += 1
        return [Histogram(k, list(zip(TENTHS, counts[i], strict=True))) for i, k in enumerate(keys)]

    @staticmethod
    def _judge_histogram(conn: sqlite3.Connection, run_id: str, conf: dict[str, Any]) -> Histogram:
        """As the report's scoreDistribution: "-1" (not scored, or off the scale) and a
        count for every score of the scale, over the successfully inferred cases."""
        low, top = judge_scale(conf)
        counts = {"-1": 0, **{str(s): 0 for s in range(low, top + 1)}}
        # Over the index (eval_id, judge_score, ...); a failed inference is never judged
        # (NULL), so the failures (a partial index) come off the NULL count.
        # GROUP BY the column itself walks the index in order (no temporary b-tree).
        for value, n in conn.execute(
            "SELECT judge_score, COUNT(*) FROM qianfan_results WHERE eval_id = ?"
            " GROUP BY judge_score",
            (run_id,),
        ):
            score = None if value is None else int(value)
            key = "-1" if score is None or not low <= score <= top else str(score)
            counts[key] += int(n)
        counts["-1"] -= _failures(conn, run_id)
        return Histogram(JUDGE, list(counts.items()))

    @staticmethod
    def _manual_histogram(conn: sqlite3.Connection, run_id: str, dimension: str) -> Histogram:
        """As the report's manualScoreDistribution: "-1" (unscored, of the inferred cases)
        and each score seen."""
        inferred = conn.execute(
            "SELECT COUNT(*) FROM qianfan_results WHERE eval_id = ?", (run_id,)
        ).fetchone()[0] - _failures(conn, run_id)
        seen: dict[int, int] = {}
        for score, n in conn.execute(
            "SELECT m.score, COUNT(*) FROM qianfan_manual_scores m JOIN qianfan_results r"
            " ON r.eval_id = m.eval_id AND r.unit_idx = m.unit_idx AND r.case_idx = m.case_idx"
            " WHERE m.eval_id = ? AND m.dimension = ? AND r.error IS NULL GROUP BY m.score",
            (run_id, dimension),
        ):
            seen[int(score)] = int(n)
        unscored = int(inferred) - sum(n for s, n in seen.items() if s != -1)
        bins = [("-1", unscored), *((str(s), seen[s]) for s in sorted(seen) if s != -1)]
        return Histogram(MANUAL + dimension, bins)
