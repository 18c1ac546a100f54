from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def clients_python() -> str:
    """The interpreter of the official vendor clients' own environment.

    The clients pin libraries the server does not (objective-sdk needs httpx<0.28), so
    they live in a separate virtual environment; `.ci/run` builds it and sets
    EVALDOCK_CLIENTS_PYTHON.
    """
    python = os.environ.get("EVALDOCK_CLIENTS_PYTHON")
    if not python:
        local = HERE.parents[1] / ".venv-clients" / "bin" / "python"
        python = str(local) if local.exists() else ""
    if not python:
        pytest.skip("set EVALDOCK_CLIENTS_PYTHON to a Python with the official vendor clients")
    return python


def run_client(python: str, script: str, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [python, str(HERE / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout
