"""The built wheel carries the specs and migrations: install it into a fresh virtual
environment, start the server from there (outside the checkout) and use it."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_serves(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    wheel = next(dist.glob("evaldock-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True, cwd=tmp_path)
    # Run from a folder without the checkout, so only the installed package can answer.
    probe = subprocess.run(
        [python, "-c", "import evaldock.server, sys; print(evaldock.server.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert str(env_dir) in probe.stdout

    with ServerProcess(tmp_path / "data", python=python) as server:
        assert httpx.get(server.url + "/objective/openapi.yaml").status_code == 200
        r = httpx.post(
            server.url + "/v1/evaluations",
            json={"data": [{"query": "q", "object": {"t": "q"}}]},
            headers={"Authorization": "Bearer test"},
        )
        assert r.status_code == 200, r.text
        # The dashboard's templates, stylesheet and script travel in the wheel too.
        login = httpx.get(server.url + "/_evaldock/ui/login")
        assert login.status_code == 200 and "Control key" in login.text
        for asset in ("dashboard.css", "live.js"):
            assert httpx.get(f"{server.url}/_evaldock/ui/static/{asset}").status_code == 200

    # Real mode without the [models] extra stops at start-up with the command to run.
    out = subprocess.run(
        [python, "-m", "evaldock.server", "serve", "--mode", "real", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 2
    assert "pip install 'evaldock[models]'" in out.stderr
