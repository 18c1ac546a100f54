from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaldock.server.app import create_app
from evaldock.server.load import load_settings
from tests.live import LIVE, LivePool, live_clients
from tests.serverproc import ServerProcess


@pytest.fixture
def settings_factory(tmp_path: Path):
    def make(**flags: object):
        base = {"server.data": str(tmp_path / "data"), "server.mode": "mock"}
        base.update(flags)
        return load_settings(None, base, environ={})

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not LIVE:
        return
    skip = pytest.mark.skip(reason="reaches into the process: in-process runs only")
    for item in items:
        if "inprocess" in item.keywords:
            item.add_marker(skip)


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        item.stash[FAILED] = True  # its live servers are not reused (tests/live.py)
    return report


@pytest.fixture(scope="session")
def live_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePool]:
    """The live servers kept between tests with ``EVALDOCK_TEST_SERVER=1``."""
    pool = LivePool(tmp_path_factory.mktemp("live"))
    yield pool
    pool.close()


def _live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    pool: LivePool = request.getfixturevalue("live_pool")
    return live_clients(tmp_path, pool, lambda: request.node.stash.get(FAILED, False))


@pytest.fixture
def client(request: pytest.FixtureRequest, settings_factory, tmp_path: Path) -> Iterator[Any]:
    """The app in-process (lifespan on), mock engines, dev key ``test``; with
    ``EVALDOCK_TEST_SERVER=1``, a live server process instead (tests/live.py)."""
    if LIVE:
        for make in _live(request, tmp_path):
            yield make()
        return
    app = create_app(settings_factory())
    with TestClient(app) as c:
        yield c


@pytest.fixture
def make_client(
    request: pytest.FixtureRequest, settings_factory, tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """In-process app factory with extra settings (dotted flags), lifespan on; live
    servers with ``EVALDOCK_TEST_SERVER=1``."""
    if LIVE:
        yield from _live(request, tmp_path)
        return
    opened: list[TestClient] = []

    def make(**flags: Any) -> TestClient:
        client = TestClient(create_app(settings_factory(**flags)))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real ``evaldock serve`` process in mock mode on a free loopback port."""
    proc = ServerProcess(tmp_path / "data")
    with proc:
        yield proc


def clients_python_path() -> str:
    """The interpreter of the official vendor clients' own environment ("" if none).

    The clients pin libraries the server does not (objective-sdk needs httpx<0.28), so
    they live in a separate virtual environment; scripts/test.sh builds it and exports
    EVALDOCK_CLIENTS_PYTHON; locally the repository's .venv-clients is used if present.
    """
    python = os.environ.get("EVALDOCK_CLIENTS_PYTHON", "")
    if not python:
        local = Path(__file__).resolve().parents[1] / ".venv-clients" / "bin" / "python"
        python = str(local) if local.exists() else ""
    return python


@pytest.fixture(scope="session")
def clients_python() -> str:
    """One fixture for every surface's official-client walk."""
    python = clients_python_path()
    if not python:
        pytest.skip(
            "EVALDOCK_CLIENTS_PYTHON is unset: python3 -m venv .venv-clients && "
            ".venv-clients/bin/pip install -r tests/clients/requirements.txt"
        )
    return python
