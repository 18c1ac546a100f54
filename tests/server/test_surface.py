"""server/surface.py against the echo surface: declarations, typed options from
defaults/file/env/flags, job kinds, the reset hook."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from evaldock.server.config import ConfigError
from evaldock.server.surface import declarations
from tests.echo import SURFACE
from tests.echo.backend import EchoSettings
from tests.echo.helpers import AUTH, echo_client, echo_settings, poll_item
from tests.echo.provider import EchoProvider


def _provider(client) -> EchoProvider:
    (runtime,) = client.app.state.runtimes
    assert isinstance(runtime.provider, EchoProvider)
    return runtime.provider


def test_declaration_defaults() -> None:
    assert SURFACE.defaults() == {"something": 3, "greeting": "hello"}
    assert SURFACE.engines == ()
    assert SURFACE.package == "tests.echo"


def test_declarations_take_enabled_extras() -> None:
    assert [d.name for d in declarations(["echo"], [SURFACE])] == ["echo"]
    # Not enabled: left out.
    assert "echo" not in [d.name for d in declarations(["objective"], [SURFACE])]
    with pytest.raises(ConfigError, match="unknown surface"):
        declarations(["echo"])
    # Without package the provider's package is used.
    bare = dataclasses.replace(SURFACE, package="")
    (found,) = declarations(["echo"], [bare])
    assert found.package == "tests.echo"


def test_defaults_reach_options_typed(tmp_path: Path) -> None:
    with echo_client(echo_settings(tmp_path)) as c:
        options = _provider(c).options
        assert isinstance(options, EchoSettings)
        assert (options.something, options.greeting) == (3, "hello")
        assert c.get("/echo-v1/open").json()["something"] == 3


@pytest.mark.parametrize(
    ("flags", "environ"),
    [
        ({}, {"EVALDOCK_ECHO__SOMETHING": "5"}),
        ({"echo.something": "5"}, {}),  # a string from a flag converts leniently
        ({"echo.something": 5}, {"EVALDOCK_ECHO__SOMETHING": "1"}),  # flags beat env
    ],
)
def test_overrides_convert_to_the_declared_type(tmp_path: Path, flags: dict, environ: dict) -> None:
    with echo_client(echo_settings(tmp_path, flags, environ)) as c:
        options = _provider(c).options
        assert options.something == 5 and type(options.something) is int
        assert c.get("/echo-v1/open").json() == {
            "greeting": "hello",
            "something": 5,
            "tenant": "",
            "base_url": "http://testserver",
        }


def test_config_file_table(tmp_path: Path) -> None:
    from evaldock.server.load import load_settings

    cfg = tmp_path / "evaldock.toml"
    cfg.write_text('[echo]\ngreeting = "hi"\n')
    settings = load_settings(
        cfg,
        {"server.data": str(tmp_path / "data"), "server.mode": "mock", "server.surfaces": ["echo"]},
        environ={},
    )
    with echo_client(settings) as c:
        assert _provider(c).options.greeting == "hi"


def test_job_kinds_registered_and_status_words(tmp_path: Path) -> None:
    with echo_client(echo_settings(tmp_path)) as c:
        runner = c.app.state.ctx.runner
        assert "echo.job" in runner._handlers
        created = c.post("/echo-v1/items", json={"name": "j"}, headers=AUTH).json()
        final = poll_item(c, created["id"])
        assert final["status"] == "done"
        view = c.portal.call(runner.view, created["id"])
        assert view.kind == "echo.job" and view.status == "completed"
    statuses = SURFACE.jobs["echo.job"].statuses
    assert [s.value for s in statuses.path] == ["queued", "running", "completed"]
    assert statuses.word("cancelled") == "stopped"
    assert statuses.next("running") == "completed"


def test_reset_hook(tmp_path: Path) -> None:
    settings = echo_settings(tmp_path, {"auth.echo.keys": ["a", "b"]})
    with echo_client(settings) as c:
        ids = {}
        for key in ("a", "b"):
            r = c.post(
                "/echo-v1/items", json={"name": key}, headers={"Authorization": f"Bearer {key}"}
            )
            ids[key] = r.json()["id"]
            poll_item(c, ids[key], {"Authorization": f"Bearer {key}"})
        provider = _provider(c)
        from evaldock.server.auth import tenant_of

        c.portal.call(provider.reset, tenant_of("echo", "a"))
        assert provider.resets == [tenant_of("echo", "a")]
        assert c.get("/echo-v1/items", headers={"Authorization": "Bearer a"}).json() == {
            "items": []
        }
        assert (
            len(c.get("/echo-v1/items", headers={"Authorization": "Bearer b"}).json()["items"]) == 1
        )
        assert c.portal.call(c.app.state.ctx.runner.view, ids["a"]) is None
        c.portal.call(provider.reset, None)
        assert c.get("/echo-v1/items", headers={"Authorization": "Bearer b"}).json() == {
            "items": []
        }
