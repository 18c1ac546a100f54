# ruff: noqa: RUF001 - full-width punctuation is the test data
"""Qianfan's backend and its worker tasks (in-process): rule metrics over their limits fail
the task naming the setting, cancelling a task kills its metrics task, a dataset parse
over its limits is the console's error, the judge signature keeps evaldock's version
last, inference and judging commit through one batched flush, and the CLI goes through
``open_backend``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaldock.engines.signature import Signature, evaldock_version
from evaldock.server.app import create_app
from evaldock.server.qianfan import cli

from .helpers import DATASET, EVAL, add_dataset, call, create_eval, ok, wait_state

pytestmark = pytest.mark.inprocess


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def _cases(n: int, words: int = 3) -> list[dict[str, str]]:
    vocab = ["北京", "中国", "the", "answer", "is", "hello", "world", "首都", "模型", "评估"]

    def text(i: int, salt: int) -> str:
        return " ".join(vocab[(i * 7 + j * salt) % len(vocab)] for j in range(words))

    return [
        {"prompt": f"q{i}", "reference": text(i, 3), "prediction": text(i, 5)} for i in range(n)
    ]


def test_metrics_over_the_cpu_limit_fail_the_task_naming_the_setting(settings_factory) -> None:
    # The dataset is registered under the default limits (its parse is a task too).
    with TestClient(create_app(settings_factory())) as client:
        dataset_id = add_dataset(client, _cases(200))
    tiny = settings_factory(**{"jobs.task_cpu_seconds": 0.05})
    with TestClient(create_app(tiny)) as client:
        created = create_eval(client, dataset_id)
        detail = wait_state(client, created["evalIdStr"])
        assert detail["state"] == "Failed", detail
        assert "CPU-time limit" in detail["errMsg"]
        assert "raise [jobs] task_cpu_seconds" in detail["errMsg"]
        # Inference had committed every case; only the metrics were stopped.
        assert detail["progress"] == {"processed": 200, "total": 200}
        r = call(client, f"{EVAL}/report", {"id": created["evalIdStr"]}).json()
        assert r["error_code"] == 500001 and "its state is Failed" in r["error_msg"]
        # The server carries on: the next request is answered.
        assert ok(client, f"{DATASET}/list", {})["items"]


def test_cancelling_a_task_kills_its_running_metrics_task(client: Any) -> None:
    # ~1,000-character pairs: one chunk of metrics takes seconds in its worker.
    dataset_id = add_dataset(client, _cases(600, words=200))
    created = create_eval(client, dataset_id)
    pool = client.app.state.ctx.pool
    deadline = time.monotonic() + 60
    busy: list[int] = []
    while time.monotonic() < deadline and not busy:
        detail = ok(client, f"{EVAL}/detail", {"id": created["evalIdStr"]})
        if detail["progress"]["processed"] == 600:  # inference done: the metrics run
            busy = [w.pid for w in pool._busy]
        time.sleep(0.05)
    assert busy, "the metrics task never started"
    assert ok(client, f"{EVAL}/cancel", {"id": created["evalIdStr"]})["result"] is True
    assert wait_state(client, created["evalIdStr"])["state"] == "Stopped"
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and any(_alive(p) for p in busy):
        time.sleep(0.05)
    assert not any(_alive(p) for p in busy)
    # The pool replaced the worker: the next task runs.
    assert add_dataset(client, _cases(3))


def test_a_dataset_parse_over_its_limit_is_the_consoles_error(settings_factory) -> None:
    tiny = settings_factory(**{"jobs.task_wall_seconds": 0.05})
    with TestClient(create_app(tiny)) as client:
        r = call(client, f"{DATASET}/create", {"name": "big", "cases": _cases(50_000)})
        assert r.status_code == 200
        body = r.json()
        assert body["error_code"] == 500001
        assert body["error_msg"].startswith("param invalid: dataset could not be read: stopped")
        assert "raise [jobs] task_wall_seconds" in body["error_msg"]
        assert ok(client, f"{DATASET}/list", {})["items"] == []


def test_a_bad_line_is_named_by_the_worker(client: Any) -> None:
    path = f"{DATASET}/create?name=d"
    from .helpers import host_of, signed_headers

    headers = signed_headers("POST", path, host_of(client), content_type="text/plain")
    lines = '{"prompt": "a", "reference": "b"}\n{not json\n'
    r = client.post(path, content=lines.encode(), headers=headers).json()
    assert r["error_code"] == 500001 and r["error_msg"].startswith("param invalid: line 2 is not")


def test_judge_signature_keeps_the_version_last(client: Any) -> None:
    dataset_id = add_dataset(client, _cases(2))
    prompt = {"templateContent": "Rate {prediction} against {reference}", "maxScore": 4}
    created = create_eval(client, dataset_id, evalMode="model", prompt=prompt)
    wait_state(client, created["evalIdStr"])
    (entry,) = ok(client, f"{EVAL}/report", {"id": created["evalIdStr"]})
    signature = Signature.parse(entry["judgeSignature"])
    assert signature.fields[-1] == ("evaldock", evaldock_version())
    assert signature.kind == "judge"
    referee = signature.get("referee")
    assert referee is not None and len(referee) == 12
    # Another referee prompt, another signature; the judge's own fields stay in front.
    other = create_eval(client, dataset_id, evalMode="model", prompt={**prompt, "maxScore": 5})
    wait_state(client, other["evalIdStr"])
    (again,) = ok(client, f"{EVAL}/report", {"id": other["evalIdStr"]})
    changed = Signature.parse(again["judgeSignature"])
    assert changed.get("referee") != referee
    assert changed.without("referee") == signature.without("referee")


def _cli(settings: Any, *argv: str) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_subcommand(parser.add_subparsers(dest="command"))
    return cli.run(parser.parse_args(["qianfan", *argv]), settings)


def test_the_cli_registers_and_lists_through_open_backend(
    settings_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    settings = settings_factory()
    opened: list[str] = []
    real = cli.open_backend

    def counting(decl: Any, s: Any) -> Any:
        opened.append(decl.name)
        return real(decl, s)

    monkeypatch.setattr(cli, "open_backend", counting)
    good = tmp_path / "cases.jsonl"
    good.write_text('{"prompt": "中国的首都？", "reference": "北京", "prediction": "北京。"}\n')
    assert _cli(settings, "add-dataset", str(good), "--name", "demo", "--id", "ds-cli") == 0
    assert "registered dataset ds-cli (demo): 1 cases" in capsys.readouterr().out
    assert _cli(settings, "list-datasets") == 0
    assert "ds-cli  demo  cases=1  (shared)" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "reference": "b"}\n{"prompt": 3, "reference": "b"}\n')
    assert _cli(settings, "add-dataset", str(bad)) == 2
    assert "line 2.prompt must be a string" in capsys.readouterr().err
    assert _cli(settings, "add-dataset", str(tmp_path / "missing.jsonl")) == 2
    assert opened == ["qianfan"] * 4
    # A server on the same data folder evaluates it.
    with TestClient(create_app(settings)) as client:
        detail = wait_state(client, create_eval(client, "ds-cli")["evalIdStr"])
        assert detail["state"] == "Done"
    assert os.stat(settings.data_dir / "qianfan").st_mode & 0o777 == 0o700
