from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from evaldock.server.app import create_app
from evaldock.server.config import load_settings
from tests.serverproc import ServerProcess


@pytest.fixture
def settings_factory(tmp_path: Path):
    def make(**flags: object):
        base = {"server.data": str(tmp_path / "data"), "server.mode": "mock"}
        base.update(flags)
        return load_settings(None, base, environ={})

    return make


@pytest.fixture
def client(settings_factory) -> Iterator[TestClient]:
    """The app in-process (lifespan on), mock engines, dev key ``test``."""
    app = create_app(settings_factory())
    with TestClient(app) as c:
        yield c


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real ``evaldock serve`` process in mock mode on a free loopback port."""
    proc = ServerProcess(tmp_path / "data")
    with proc:
        yield proc
