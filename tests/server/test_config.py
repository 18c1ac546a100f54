from pathlib import Path

import pytest

from evaldock.server.config import ConfigError
from evaldock.server.load import load_settings


def test_defaults() -> None:
    s = load_settings(None, {}, environ={})
    assert (s.host, s.port, s.mode) == ("127.0.0.1", 8700, "real")
    assert s.data_dir == Path("./evaldock-data")
    assert s.auth_for("objective") == (True, ["test"])


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "evaldock.toml"
    cfg.write_text(
        '[server]\nport = 9001\nmode = "mock"\nhost = "0.0.0.0"\n'
        '[jobs]\nconcurrency = 2\n[auth.objective]\nkeys = ["file-key"]\n'
    )
    env = {"EVALDOCK_PORT": "9002", "EVALDOCK_JOBS__CONCURRENCY": "7"}
    s = load_settings(cfg, {}, environ=env)
    assert s.port == 9002  # env beats file
    assert s.host == "0.0.0.0"  # file beats default
    assert s.tree["jobs"]["concurrency"] == 7
    assert s.auth_for("objective") == (True, ["file-key"])
    s = load_settings(cfg, {"server.port": 9003}, environ=env)
    assert s.port == 9003  # flag beats env


def test_env_config_file_and_comma_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[objective]\nmax_items = 5\n")
    s = load_settings(
        None, {}, environ={"EVALDOCK_CONFIG": str(cfg), "EVALDOCK_AUTH__OBJECTIVE__KEYS": "a,b"}
    )
    assert s.section("objective")["max_items"] == 5
    assert s.auth_for("objective") == (True, ["a", "b"])


def test_mock_mode_forces_mock_engines() -> None:
    s = load_settings(None, {"server.mode": "mock"}, environ={})
    assert s.engine_choice("judge")[0] == "mock"


@pytest.mark.parametrize(
    ("flags", "message"),
    [({"server.mode": "fast"}, "server.mode"), ({"server.port": 0}, "server.port")],
)
def test_invalid_settings_name_the_setting(flags: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, flags, environ={})


def test_bad_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", {}, environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, {}, environ={})


def test_jobs_settings_are_typed_with_one_default_each() -> None:
    from evaldock.server.config import JobsSettings

    s = load_settings(None, {}, environ={"EVALDOCK_JOBS__TASK_MEMORY_MB": "512"})
    assert s.jobs == JobsSettings(task_memory_mb=512)
    assert s.tree["jobs"]["workers"] == 0  # `evaldock config` shows the defaults
    with pytest.raises(ConfigError, match="workerz"):
        load_settings(None, {"jobs.workerz": 3}, environ={})
    with pytest.raises(ConfigError, match=r"\[jobs\]"):
        load_settings(None, {"jobs.task_cpu_seconds": "lots"}, environ={})
    with pytest.raises(ConfigError, match="request_workers"):
        load_settings(None, {"jobs.request_workers": 0}, environ={})


def test_server_and_control_tables_are_typed() -> None:
    s = load_settings(
        None, {"server.reads_per_turn": 4}, environ={"EVALDOCK_CONTROL__OPEN": "true"}
    )
    assert s.server.reads_per_turn == 4 and s.control.open is True
    assert s.control.journal_size == 1000  # the default lives in ControlSettings alone
    with pytest.raises(ConfigError, match=r"\[server\].*max_conections"):
        load_settings(None, {"server.max_conections": 5}, environ={})
    with pytest.raises(ConfigError, match=r"\[control\]"):
        load_settings(None, {"control.journal_size": "many"}, environ={})
