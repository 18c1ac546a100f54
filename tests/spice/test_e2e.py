"""The Spice surface over real HTTP (``evaldock serve`` processes): restart survival of
runs, results and run-time specs, and a run cut off by SIGKILL resumed after restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import toml_from_flags
from tests.serverproc import ServerProcess

from .helpers import TEXT, write_pod


def _server(tmp_path: Path, **flags: Any) -> ServerProcess:
    config = tmp_path / "evaldock.toml"
    config.write_text(toml_from_flags(flags))
    return ServerProcess(tmp_path / "data", config=config)


def _wait_completed(url: str, name: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = httpx.get(f"{url}/v1/evals/{name}/runs/{run_id}").json()[0]
        if run["status"] in ("Completed", "Failed") or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def test_runs_results_and_specs_survive_a_restart(tmp_path: Path) -> None:
    pod = write_pod(tmp_path / "pod", 50)
    server = _server(tmp_path, **{"spice.spicepod": str(pod)})
    with server:
        run = httpx.post(f"{server.url}/v1/evals/exact", json={"model": "replay"}).json()[0]
        assert run["status"] == "Completed"
        put = httpx.put(
            f"{server.url}/v1/evals/added",
            json={
                "dataset": "up",
                "scorers": ["match"],
                "data": [{"input": "q", "ideal": "a", "output": "a"}],
            },
        )
        assert put.status_code == 200
    with server:
        names = [s["name"] for s in httpx.get(f"{server.url}/v1/evals").json()]
        assert "added" in names and "exact" in names
        again = httpx.get(f"{server.url}/v1/evals/exact/runs/{run['id']}").json()[0]
        assert again == run
        rows = httpx.post(
            f"{server.url}/v1/sql",
            content="SELECT count(*) AS n FROM eval.results",
            headers=TEXT,
        ).json()
        assert rows == [{"n": 100}]
        added = httpx.post(f"{server.url}/v1/evals/added", json={"model": "replay"}).json()[0]
        assert added["metrics"] == {"match/mean": 1.0}


def test_a_run_cut_off_by_sigkill_is_redone_after_restart(tmp_path: Path) -> None:
    pod = write_pod(tmp_path / "pod", 20)
    server = _server(
        tmp_path,
        **{
            "spice.spicepod": str(pod),
            "spice.run_timeout": 0,
            "spice.concurrency": 1,
            "engines.judge.delay_ms": 150,
        },
    )
    server.start()
    try:
        run = httpx.post(f"{server.url}/v1/evals/exact", json={"model": "chat"}).json()[0]
        assert run["status"] in ("Queued", "Running")
        time.sleep(1.0)  # a few of the 20 model calls (150 ms each) are done
        server.kill()
        server.start()
        final = _wait_completed(server.url, "exact", run["id"])
        assert final["status"] == "Completed", final
        rows = httpx.post(
            f"{server.url}/v1/sql",
            content=f"SELECT count(*) AS n FROM eval.results WHERE run_id = '{run['id']}'",
            headers=TEXT,
        ).json()
        assert rows == [{"n": 40}]  # 20 cases x 2 scorers, once
    finally:
        server.stop()


def test_serve_spicepod_flag(tmp_path: Path) -> None:
    """`evaldock serve --spicepod PATH` serves that pod (the flag beats [spice] spicepod)."""
    pod = write_pod(tmp_path / "pod", 5)
    config = tmp_path / "evaldock.toml"
    config.write_text(toml_from_flags({"spice.spicepod": str(tmp_path / "absent.yaml")}))
    server = ServerProcess(tmp_path / "data", config=config, extra_args=["--spicepod", str(pod)])
    with server:
        names = [s["name"] for s in httpx.get(f"{server.url}/v1/evals").json()]
        assert names == ["exact", "fuzzy", "semantic", "judged", "broken"]
        run = httpx.post(f"{server.url}/v1/evals/exact", json={"model": "replay"}).json()[0]
        assert run["metrics"] == {"match/mean": 0.4, "includes/mean": 0.6}
    missing = ServerProcess(
        tmp_path / "data2", extra_args=["--spicepod", str(tmp_path / "nope.yaml")]
    )
    with pytest.raises(RuntimeError, match=r"cannot read the spicepod .*nope\.yaml"):
        missing.start(timeout=30)
