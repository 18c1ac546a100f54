"""The ``evaldock`` command: configuration output and clear start-up failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evaldock.engines import registry
from evaldock.engines.errors import EngineUnavailable, require


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evaldock.server", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_config_prints_effective_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nport = 9100\n")
    out = _run("config", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["server"]["port"] == 9100


def test_bad_config_exits_2_with_message(tmp_path: Path) -> None:
    out = _run("serve", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert out.returncode == 2
    assert "config file not found" in out.stderr


def test_unknown_engine_stops_start_up_with_the_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[engines.judge]\nimpl = "gpt-99"\n')
    out = _run(
        "serve", "--mode", "real", "--config", str(cfg), "--data", str(tmp_path), cwd=tmp_path
    )
    assert out.returncode == 2
    assert "unknown judge engine 'gpt-99'" in out.stderr
    assert "choose one of" in out.stderr and "--mode mock" in out.stderr


def test_missing_library_names_the_install_command() -> None:
    with pytest.raises(EngineUnavailable) as info:
        require("evaldock_no_such_module", purpose="the test engine")
    assert info.value.hint == "pip install 'evaldock[models]'"
    assert "evaldock_no_such_module" in str(info.value)
    with pytest.raises(EngineUnavailable):
        registry.create("no-such-kind", "mock")
