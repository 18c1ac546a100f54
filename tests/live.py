"""Run the API suites against a live ``evaldock serve`` process (moto's server mode).

With ``EVALDOCK_TEST_SERVER=1`` the ``client`` and ``make_client`` fixtures hand out an
httpx client bound to a real server on a free loopback port instead of Starlette's
in-process TestClient, so every ``tests/<vendor>/test_api.py`` also runs over real HTTP.
Tests that reach into the process (monkeypatching a provider, the in-process host name)
are marked ``inprocess`` and skipped there. Servers are pooled per set of flags and reset
between tests through the control plane (``LivePool``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.serverproc import ServerProcess

LIVE = os.environ.get("EVALDOCK_TEST_SERVER", "") == "1"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_from_flags(flags: Mapping[str, Any]) -> str:
    """``{"marqtune.max_upload_bytes": 10}`` as a TOML file (dotted keys, quoted parts)."""
    lines = []
    for dotted, value in flags.items():
        key = ".".join(f'"{part}"' for part in dotted.split("."))
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


class LiveClient(httpx.Client):
    """An httpx client on a live server, shaped like Starlette's TestClient."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(base_url=server.url, timeout=60)
        self.server = server


def shareable(flags: Mapping[str, Any]) -> bool:
    """Whether a server with these flags may serve the next test after a reset. Not with
    ``control.*`` flags: the reset needs the control key from ``control.key`` (a
    configured key is not written there) and it unpins job timing the file pinned."""
    return not any(name.split(".", 1)[0] == "control" for name in flags)


class LivePool:
    """Live servers kept between tests, one per set of flags, reset through the control
    plane before each test (as moto's server mode is): a server start costs 1.5-2.5 s on
    a 2-core box, and most live tests ask for one of a few sets of flags (none; Qianfan's
    mock model), so the six API suites start about 25 servers, not 160.

    The reset drops every surface's rows, files and jobs, faults, timing pins and the
    journal; caches and signing secrets stay (docs/control-plane.md). A test leases a
    server and gives it back at teardown; a second lease of the same flags within one
    test starts a server of its own. A failed test's servers, and dead ones, are not
    reused: the next test starts a fresh one.
    """

    def __init__(self, root: Path, keep: int = 3) -> None:
        self.root = root
        # Idle servers kept, the least recently used out first: 3 lets two one-off sets
        # of flags (a test's own tmp_path in them) pass without pushing out the common one.
        self.keep = keep
        self.idle: OrderedDict[str, ServerProcess] = OrderedDict()
        self.started = 0

    def start(self, flags: Mapping[str, Any], mode: str) -> ServerProcess:
        n, self.started = self.started, self.started + 1
        config = None
        if flags:
            config = self.root / f"live-{n}.toml"
            config.write_text(toml_from_flags(flags))
        return ServerProcess(self.root / f"live-data-{n}", config=config, mode=mode).start()

    def lease(self, key: str) -> ServerProcess | None:
        """An idle server started with these flags, its state reset; None if none."""
        server = self.idle.pop(key, None)
        if server is None:
            return None
        if server.proc is None or server.proc.poll() is not None:
            server.stop()
            return None
        control = {"X-Evaldock-Control-Key": (server.data_dir / "control.key").read_text().strip()}
        r = httpx.post(server.url + "/_evaldock/reset", headers=control, timeout=60)
        assert r.status_code == 200, f"reset of a shared live server: {r.text}"
        return server

    def give_back(self, key: str, server: ServerProcess, reusable: bool) -> None:
        if not reusable or key in self.idle:
            server.stop()
            return
        self.idle[key] = server
        while len(self.idle) > self.keep:
            self.idle.popitem(last=False)[1].stop()

    def close(self) -> None:
        while self.idle:
            self.idle.popitem()[1].stop()


def live_clients(
    tmp_path: Path, pool: LivePool | None = None, failed: Callable[[], bool] = lambda: False
) -> Iterator[Any]:
    """A factory of live clients: a pooled server reset for this test where the flags
    allow (``shareable``), else one of its own; ``failed()`` at teardown keeps a failed
    test's servers out of the pool."""
    own = pool or LivePool(tmp_path)
    leased: list[tuple[str | None, ServerProcess, LiveClient]] = []

    def make(**flags: Any) -> LiveClient:
        # The command line's --mode beats the file's: a real-mode test ran on mock engines.
        mode = str(flags.get("server.mode", "mock"))
        key = None
        if pool is not None and shareable(flags):
            key = toml_from_flags(dict(sorted(flags.items())))
        server = own.lease(key) if key is not None else None
        if server is None:
            server = own.start(flags, mode)
        client = LiveClient(server)
        leased.append((key, server, client))
        return client

    try:
        yield make
    finally:
        reusable = not failed()
        for key, server, client in leased:
            client.close()
            if key is None:
                server.stop()
            else:
                own.give_back(key, server, reusable)
