from __future__ import annotations

import subprocess
from pathlib import Path

HERE = Path(__file__).parent


def run_client(python: str, script: str, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [python, str(HERE / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout
