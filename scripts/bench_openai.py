"""Benchmark OpenAI Evals grading against calling the reference libraries directly.

Three measurements, in the same run and on the same generated rows (``--rows``, default
10,000; answers of 1-12 words over a small vocabulary, so matches, near misses and
misses all occur):

1. **run**: a whole ``jsonl`` run over HTTP (the app in-process, mock engines, the worker
   pool): upload-free ``file_content`` rows, three graders (string_check ``eq``,
   text_similarity ``fuzzy_match`` and ``bleu``), from ``runs.create`` to ``completed``:
   rows/s, wall time;
2. **grade_rows**: the grading task alone (templates, scores, output items written), run
   inline, against a bare loop that calls ``==``, ``rapidfuzz`` and ``sacrebleu`` on the
   same pairs: the ratio is evaldock's overhead over the bare libraries;
3. **per metric**: each library metric (fuzzy_match, bleu, gleu, meteor, rouge_1..5,
   rouge_l) through the grader against its bare library call; every score must be equal
   (the script exits on a mismatch) and the ratio is printed;
4. **model graders** (``--model-rows``, default 2,000): a ``jsonl`` run with a
   ``score_model`` and a ``label_model`` criterion, answered by the mock judge's
   structured call (``{steps, result}``, ``{label}``): rows/s of the judge path;
5. **python graders** (``--python-calls``, default 20): ``graders.run`` of a python
   grader, one call after another; each retires its worker and a fresh one (its task
   module imported ahead) takes its place: the mean latency per call.

Times are CPU seconds of this process for 2 and 3 (single-threaded on both sides; wall
time swings with the neighbours' load); wall seconds for 1 (it spans processes).

    .venv/bin/python scripts/bench_openai.py                 # 10,000 rows
    .venv/bin/python scripts/bench_openai.py --rows 2000 --skip-run
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sacrebleu  # noqa: E402
from nltk.translate.gleu_score import sentence_gleu  # noqa: E402
from nltk.translate.meteor_score import meteor_score  # noqa: E402
from rapidfuzz import fuzz, utils  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402

from evaldock.engines.text_metrics import similarity  # noqa: E402
from evaldock.server.compute import run_inline  # noqa: E402
from evaldock.server.openai import graders, jobs  # noqa: E402

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "sits",
    "on",
    "mat",
    "Paris",
    "paris",
    "rome",
    "4",
    "four",
    "blue",
    "red",
    "running",
    "ran",
    "quick",
]
SIM = {"type": "text_similarity", "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}
CRITERIA = [
    {
        "id": "exact",
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
    },
    {
        **SIM,
        "id": "fuzzy",
        "name": "fuzzy",
        "evaluation_metric": "fuzzy_match",
        "pass_threshold": 0.8,
    },
    {**SIM, "id": "bleu", "name": "bleu", "evaluation_metric": "bleu", "pass_threshold": 0.5},
]


class _NoSynonyms:
    """METEOR without WordNet, as evaldock runs it with no [openai] wordnet_dir."""

    def synsets(self, word: str, *a: object, **k: object) -> list[object]:
        return []


def rows_of(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        answer = " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))
        roll = rng.random()
        if roll < 0.3:
            output = answer
        elif roll < 0.6:
            words = answer.split()
            words[rng.randrange(len(words))] = rng.choice(WORDS)
            output = " ".join(words)
        else:
            output = " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))
        out.append(
            {"item": {"question": f"q{i}", "answer": answer}, "sample": {"output_text": output}}
        )
    return out


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    value = fn()
    return time.process_time() - start, value


def bench_run(rows: list[dict[str, Any]]) -> None:
    from starlette.testclient import TestClient

    from evaldock.server.app import create_app
    from evaldock.server.load import load_settings

    auth = {"Authorization": "Bearer test"}
    with tempfile.TemporaryDirectory(prefix="bench-openai-") as tmp:
        settings = load_settings(
            None, {"server.data": f"{tmp}/data", "server.mode": "mock"}, environ={}
        )
        with TestClient(create_app(settings)) as client:
            schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
            criteria = [{k: v for k, v in c.items() if k != "id"} for c in CRITERIA]
            ev = client.post(
                "/openai/v1/evals",
                headers=auth,
                json={
                    "data_source_config": {"type": "custom", "item_schema": schema},
                    "testing_criteria": criteria,
                },
            ).json()
            started = time.perf_counter()
            run = client.post(
                f"/openai/v1/evals/{ev['id']}/runs",
                headers=auth,
                json={
                    "data_source": {
                        "type": "jsonl",
                        "source": {"type": "file_content", "content": rows},
                    }
                },
            ).json()
            while run["status"] in ("queued", "in_progress"):
                time.sleep(0.05)
                run = client.get(
                    f"/openai/v1/evals/{ev['id']}/runs/{run['id']}", headers=auth
                ).json()
            wall = time.perf_counter() - started
    assert run["status"] == "completed", run
    counts = run["result_counts"]
    print(
        f"run (HTTP, in-process app, worker pool): {len(rows)} rows x 3 graders in {wall:.2f} s "
        f"wall = {len(rows) / wall:,.0f} rows/s  (passed {counts['passed']}, failed "
        f"{counts['failed']}, errored {counts['errored']})"
    )


def _app(tmp: str, **extra: Any) -> Any:
    from starlette.testclient import TestClient

    from evaldock.server.app import create_app
    from evaldock.server.load import load_settings

    overrides = {"server.data": f"{tmp}/data", "server.mode": "mock", **extra}
    return TestClient(create_app(load_settings(None, overrides, environ={})))


MODEL_CRITERIA = [
    {
        "type": "score_model",
        "name": "Judge",
        "model": "gpt-4o-mini",
        "input": [
            {"role": "user", "content": "Reference: {{item.answer}} Answer: {{sample.output_text}}"}
        ],
        "range": [0, 1],
        "pass_threshold": 0.5,
    },
    {
        "type": "label_model",
        "name": "Label",
        "model": "gpt-4o-mini",
        "input": [{"role": "user", "content": "Is {{sample.output_text}} right?"}],
        "labels": ["right", "wrong"],
        "passing_labels": ["right"],
    },
]


def bench_model_graders(rows: list[dict[str, Any]]) -> None:
    auth = {"Authorization": "Bearer test"}
    with tempfile.TemporaryDirectory(prefix="bench-openai-") as tmp, _app(tmp) as client:
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
        ev = client.post(
            "/openai/v1/evals",
            headers=auth,
            json={
                "data_source_config": {"type": "custom", "item_schema": schema},
                "testing_criteria": MODEL_CRITERIA,
            },
        ).json()
        started = time.perf_counter()
        source = {"type": "file_content", "content": rows}
        run = client.post(
            f"/openai/v1/evals/{ev['id']}/runs",
            headers=auth,
            json={"data_source": {"type": "jsonl", "source": source}},
        ).json()
        while run["status"] in ("queued", "in_progress"):
            time.sleep(0.05)
            run = client.get(f"/openai/v1/evals/{ev['id']}/runs/{run['id']}", headers=auth).json()
        wall = time.perf_counter() - started
    assert run["status"] == "completed", run
    calls = sum(u["invocation_count"] for u in run["per_model_usage"])
    print(
        f"model graders (mock judge, structured answers): {len(rows)} rows x 2 criteria "
        f"({calls} judge calls) in {wall:.2f} s wall = {len(rows) / wall:,.0f} rows/s"
    )


PY_GRADER = "def grade(sample, item):\n    return float(sample['output_text'] == 'a')\n"


def bench_python_calls(calls: int) -> None:
    auth = {"Authorization": "Bearer test"}
    grader = {"type": "python", "name": "py", "source": PY_GRADER}
    body = {"grader": grader, "model_sample": "a", "item": {}}
    with (
        tempfile.TemporaryDirectory(prefix="bench-openai-") as tmp,
        _app(tmp, **{"openai.python_graders": True}) as client,
    ):
        url = "/openai/v1/fine_tuning/alpha/graders/run"
        assert client.post(url, headers=auth, json=body).json()["reward"] == 1.0  # warm
        started = time.perf_counter()
        for _ in range(calls):
            assert client.post(url, headers=auth, json=body).json()["reward"] == 1.0
        wall = time.perf_counter() - started
    print(
        f"python graders.run, a fresh worker per call: {calls} calls in {wall:.2f} s wall = "
        f"{1000 * wall / calls:.0f} ms per call"
    )


def bench_grade_rows(rows: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-openai-") as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows))
        ours_s, graded = cpu(
            lambda: run_inline(jobs.grade_rows, str(path), CRITERIA, "", str(Path(tmp) / "out"))
        )
    pairs = [(r["sample"]["output_text"], r["item"]["answer"]) for r in rows]

    def bare() -> list[tuple[float, float, float]]:
        return [
            (
                float(a == b),
                fuzz.WRatio(a, b, processor=utils.default_process) / 100,
                min(1.0, sacrebleu.sentence_bleu(a, [b]).score / 100),
            )
            for a, b in pairs
        ]

    bare_s, scores = cpu(bare)
    passed = sum(1 for e, f, b in scores if e >= 1 and f >= 0.8 and b >= 0.5)
    assert passed == graded.passed, (passed, graded.passed)
    print(
        f"grade_rows task: {len(rows)} rows x 3 graders  ours {ours_s:.2f} s  bare libraries "
        f"{bare_s:.2f} s CPU  ratio {ours_s / bare_s:.2f}x (ours / bare)  "
        f"= {len(rows) / ours_s:,.0f} rows/s; pass counts agree ({passed})"
    )


def bare_metric(metric: str) -> Callable[[str, str], float]:
    if metric == "fuzzy_match":
        return lambda a, b: fuzz.WRatio(a, b, processor=utils.default_process) / 100
    if metric == "bleu":
        # sacreBLEU scores an exact match 100.00000000000004: evaldock clamps to 1.0.
        return lambda a, b: min(1.0, sacrebleu.sentence_bleu(a, [b]).score / 100)
    if metric == "gleu":
        return lambda a, b: sentence_gleu([b.split()], a.split())
    if metric == "meteor":
        return lambda a, b: meteor_score([b.split()], a.split(), wordnet=_NoSynonyms())
    key = "rougeL" if metric == "rouge_l" else "rouge" + metric[-1]
    scorer = rouge_scorer.RougeScorer([key], use_stemmer=False)
    return lambda a, b: scorer.score(b, a)[key].fmeasure


def bench_metrics(rows: list[dict[str, Any]]) -> None:
    for metric in similarity.LIBRARY_METRICS:
        criterion = {**SIM, "name": metric, "evaluation_metric": metric, "pass_threshold": 0.5}
        names = [{"item": r["item"], "sample": r["sample"]} for r in rows]
        ours_s, ours = cpu(lambda c=criterion, n=names: [graders.grade(c, x, "").score for x in n])
        fn = bare_metric(metric)
        pairs = [(r["sample"]["output_text"], r["item"]["answer"]) for r in rows]
        bare_s, theirs = cpu(lambda f=fn, p=pairs: [float(f(a, b)) for a, b in p])
        for mine, ref, pair in zip(ours, theirs, pairs, strict=True):
            if mine != ref:
                raise SystemExit(f"MISMATCH {metric}: ours {mine!r} library {ref!r} on {pair!r}")
        print(
            f"  {metric:<12} ours {ours_s:6.2f} s  library {bare_s:6.2f} s CPU  "
            f"ratio {ours_s / bare_s:5.2f}x  equal: yes  mean {sum(ours) / len(ours):.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--skip-run", action="store_true", help="no HTTP run")
    parser.add_argument("--model-rows", type=int, default=2000, help="0: skip")
    parser.add_argument("--python-calls", type=int, default=20, help="0: skip")
    args = parser.parse_args()
    rows = rows_of(args.rows, args.seed)
    # Warm the libraries (imports, rouge tokenizer, nltk) before any clock starts.
    for metric in similarity.LIBRARY_METRICS:
        similarity.scorer(metric)("a b", "a c")
        bare_metric(metric)("a b", "a c")
    if not args.skip_run:
        bench_run(rows)
    bench_grade_rows(rows)
    print(f"per metric, {len(rows)} pairs through the grader vs the bare library call:")
    bench_metrics(rows)
    if args.model_rows:
        bench_model_graders(rows_of(args.model_rows, args.seed + 1))
    if args.python_calls:
        bench_python_calls(args.python_calls)


if __name__ == "__main__":
    main()
