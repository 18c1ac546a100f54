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


def _run_env(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVALDOCK_")}
    return subprocess.run(
        [sys.executable, "-m", "evaldock.server", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={**clean, **env},
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--data", "{d}", "qianfan", "list-datasets"],
        ["qianfan", "--data", "{d}", "list-datasets"],
        ["qianfan", "list-datasets", "--data", "{d}"],
    ],
)
def test_common_options_on_either_side_of_the_subcommand(tmp_path: Path, argv: list[str]) -> None:
    data = tmp_path / "state"
    out = _run(*[a.format(d=data) for a in argv], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (data / "evaldock.sqlite3").exists() and not (tmp_path / "evaldock-data").exists()


def test_config_takes_mode_and_data_and_shows_the_judge_from_the_environment(
    tmp_path: Path,
) -> None:
    env = {
        "EVALDOCK_JUDGE_URLS": "http://127.0.0.1:9/v1",
        "EVALDOCK_JUDGE_MODEL": "smollm2",
        "EVALDOCK_JUDGE_API_KEY": "sk-judge-secret-0123",
    }
    out = _run_env("config", "--mode", "real", "--data", str(tmp_path / "d"), cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["server"]["mode"] == "real" and shown["server"]["data"] == str(tmp_path / "d")
    judge = shown["judge"]
    assert judge["impl"] == "openai" and judge["urls"] == ["http://127.0.0.1:9/v1"]
    assert judge["model"] == "smollm2" and "sk-judge-secret-0123" not in out.stdout
    mock = json.loads(_run_env("config", "--mode", "mock", cwd=tmp_path, env=env).stdout)
    assert mock["judge"]["impl"] == "mock"


def test_banner_shows_the_development_key_and_the_judge(settings_factory) -> None:
    from types import SimpleNamespace

    from evaldock.server.cli import banner
    from evaldock.server.surface import shown_key

    settings = settings_factory()
    text = banner(settings, SimpleNamespace(runtimes=[], control=None))
    assert "judge      mock (deterministic)" in text
    assert shown_key("test").startswith("'test' (the development default")
    assert shown_key("prod-key-0123456789") == "'pr****89'"


def test_start_up_refusal_prints_the_fix_without_a_traceback(tmp_path: Path) -> None:
    # A judge URL nobody serves: the start-up check refuses with its fix line.
    env = {"EVALDOCK_JUDGE_URLS": "http://127.0.0.1:9/v1"}
    from tests.serverproc import free_port

    args = ["serve", "--mode", "real", "--surfaces", "objective", "--port", str(free_port())]
    out = _run_env(*args, "--data", str(tmp_path / "d"), cwd=tmp_path, env=env)
    assert out.returncode != 0
    assert "fix: start it" in out.stderr and "Traceback" not in out.stderr
    debug = _run_env(
        *args, "--data", str(tmp_path / "d"), "--log-level", "debug", cwd=tmp_path, env=env
    )
    assert "Traceback" in debug.stderr
