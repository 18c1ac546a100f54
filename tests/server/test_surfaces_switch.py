"""`[server] surfaces` / `--surfaces`: serve a subset, build only its engines."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from evaldock.server.app import create_app
from evaldock.server.config import ConfigError


def test_only_the_enabled_surfaces_are_served(settings_factory) -> None:
    app = create_app(settings_factory(**{"server.surfaces": ["objective"]}))
    assert [rt.spec.surface for rt in app.state.runtimes] == ["objective"]
    # Real mode would build only these engines: Marqtune's ranker is not among them.
    assert set(app.state.ctx.engines) == {"judge"}
    with TestClient(app) as client:
        assert (
            client.get("/v1/evaluations", headers={"Authorization": "Bearer test"}).status_code
            == 200
        )
        assert client.get("/datasets", headers={"x-api-key": "test"}).status_code == 404


def test_surfaces_from_a_comma_separated_environment_value(settings_factory) -> None:
    app = create_app(settings_factory(**{"server.surfaces": "marqtune"}))
    assert [rt.spec.surface for rt in app.state.runtimes] == ["marqtune"]


def test_an_unknown_surface_names_the_choices(settings_factory) -> None:
    with pytest.raises(ConfigError, match="choose from"):
        create_app(settings_factory(**{"server.surfaces": ["nope"]}))
