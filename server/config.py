"""Configuration: built-in defaults < TOML file < ``EVALDOCK_*`` environment < CLI flags
(read by :func:`evaldock.server.load.load_settings`, which adds the surfaces' defaults).

Settings stay a nested mapping (surfaces and engines each read their own table), with
typed accessors for what the core needs. Environment variables address any key with
double underscores: ``EVALDOCK_JOBS__CONCURRENCY=8`` sets ``[jobs] concurrency``.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec


class JobsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[jobs]``: the job queue and the worker processes that do the jobs' work."""

    # Jobs in flight at once (their I/O: model calls, commits); their CPU work waits for a
    # worker process.
    concurrency: int = 4
    # A job found running at start-up is resumed this many times, then failed.
    max_attempts: int = 3
    # Threads for the little blocking work left in the API process (file moves); 0 =
    # concurrency.
    threads: int = 0
    # Worker processes for job work (parsing, scoring, metrics, encoding); 0 = one per
    # core. Two CPU-heavy jobs on 2 cores run side by side instead of sharing one GIL.
    workers: int = 0
    # More worker processes for bounded work a request waits for (a SQL query, a page of
    # a data file), so a request never queues behind a long evaluation.
    request_workers: int = 2
    # Limits of every task in a worker; over one, the task is killed, its worker
    # replaced, its job failed with the reason. 4 GiB x (2 + 2) workers leaves 8 GiB of
    # the 24 GiB machine to the API process and the page cache.
    task_wall_seconds: float = 3600.0
    task_cpu_seconds: float = 3600.0
    task_memory_mb: int = 4096
    # Wall and CPU seconds of a task a request waits for (a SQL query, a page of a data
    # file, hashing an upload): its client is waiting, and most clients give up sooner.
    request_task_seconds: float = 120.0
    # A worker still holding more than this after a task is replaced by a fresh one (a
    # task that decoded a large file leaves nothing behind); a loaded CLIP ViT-B-32 with
    # torch is ~1 GB.
    worker_recycle_mb: int = 2048


class TaskResources(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What one task (or one engine actor) asks of a Ray cluster."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


class ComputeSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[compute]``: where the tasks of jobs run (server/compute)."""

    # local: the worker processes of [jobs]; ray: a Ray cluster (`pip install
    # 'evaldock[ray]'`). Work a request waits for stays on the local workers either way.
    backend: str = "local"
    # ray: "auto" (the cluster this machine is a node of), "ray://<head>:10001", or empty:
    # start a Ray of this machine inside the server (tests, a trial).
    ray_address: str = ""
    # Resources per task kind: "task" (parsing, scoring, metrics; default 1 CPU) and
    # each engine kind ("embedder", "ranker"), whose tasks run on actors that keep the
    # engine loaded (default: no CPU held, as Ray's actors; a GPU: num_gpus = 1).
    resources: dict[str, TaskResources] = {}
    # Actors per engine kind (each loads the model once, runs one task at a time).
    actors: int = 1
    # Input files (a dataset) to the nodes through Ray's object store, once per file and
    # node: "always", "never", or "auto" (when ray_address names a cluster to join).
    ship_inputs: str = "auto"
    # An engine actor idle this long is killed (its CPUs, GPUs and model memory freed);
    # the next task that needs one starts another. 0: never.
    actor_idle_seconds: float = 300.0
    # Times a task is sent again when its Ray worker, actor or node died under it
    # (not a limit, a cancel or the task's own error).
    retries: int = 1


T = TypeVar("T", bound=msgspec.Struct)


def typed_table(name: str, table: Mapping[str, Any], cls: type[T]) -> T:
    """A core table as its typed settings; a wrong or unknown key is a ConfigError naming
    the table and the key (values from the environment arrive as text: converted)."""
    try:
        return msgspec.convert(dict(table), cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"[{name}]: {exc}") from None


MODES = ("mock", "real")
DEV_KEY = "test"  # LocalStack-style development credential, documented in README


class ServerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[server]``: where and how the API process serves."""

    host: str = "127.0.0.1"
    port: int = 8700
    data: str = "./evaldock-data"
    mode: str = "real"
    log_level: str = "info"
    # Largest request body accepted, in bytes; larger ones get the vendor's 413.
    max_body_bytes: int = 64 * 1024 * 1024
    # Largest body read into memory (a JSON body, or the text one an operation takes)
    # unless its operation declares x-max-body-bytes in its spec; uploads stream to a
    # file under max_body_bytes. It is decoded and validated on the event loop: 1.5-15
    # ms a MB (the most for many tiny objects), so 8 MiB holds it 120 ms at worst. The
    # largest body the surfaces' tests and client walks send is 3.9 MB; the operations
    # that carry a dataset inline declare 32 MiB.
    max_json_body_bytes: int = 8 * 1024 * 1024
    # Which surfaces to serve (empty: all). Real mode builds only their engines.
    surfaces: list[str] | str = []
    # The URL clients reach this server by, for the URLs it hands out (upload,
    # results, downloads); empty: the request's Host when well formed.
    public_url: str = ""
    # Reader threads beside the one writer, for reads too long for the event loop
    # (polls' point lookups run on the loop itself: a thread hop cost more than them).
    db_readers: int = 4
    # Memory for rendered answers of finished resources (a completed evaluation is
    # polled again and again and cannot change); 0 turns the cache off.
    answer_cache_mb: float = 64.0
    # GET/HEAD requests started per event-loop turn (0: no limit). Hundreds of tight
    # polling loops would otherwise fill every turn, and each step of a write or a
    # job would wait behind all of them.
    reads_per_turn: int = 16
    # A request's headers must arrive within header_timeout seconds of its start and
    # its body within body_timeout (slow clients otherwise hold connections forever);
    # past max_connections new connections get a 503 (keep it >= 1,000: 200 keep-alive
    # pollers must never see one).
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 2000
    # The HTTP/1.1 parser (both keep the timeouts and the cap above): "httptools" (C),
    # "h11" (pure Python, ~150 us more CPU a poll), "auto" (httptools if installed).
    http: str = "auto"


class ControlSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[control]``: the control plane (server/control), guarded by a key in
    ``<data>/control.key``."""

    enabled: bool = True
    # Open: no key asked (a throwaway test server); key: a fixed key instead of the file's.
    open: bool = False
    key: str = ""
    # Requests kept by the journal, and bytes of each body it keeps.
    journal_size: int = 1000
    journal_body_bytes: int = 64 * 1024
    journal_file: str = ""
    access_log_json: bool = False
    # Job timing per surface/kind (``{"objective": "hold"}``): free-form, read by timing.py.
    timing: dict[str, Any] = {}


DEFAULTS: dict[str, Any] = {
    # The core's tables: their defaults are their typed settings' (one default, one place).
    "server": msgspec.to_builtins(ServerSettings()),
    "jobs": msgspec.to_builtins(JobsSettings()),
    "compute": msgspec.to_builtins(ComputeSettings()),
    # Per-surface credentials; a surface whose vendor has no auth may set enabled = false.
    "auth": {},
    # [engines.<kind>] impl = "<name>" plus options for that implementation.
    "engines": {},
    "control": msgspec.to_builtins(ControlSettings()),
    # Each surface's own table ([objective], [marqtune], …) takes its defaults from the
    # surface's declaration (server/<vendor>/__init__.py), merged in by load_settings.
}

# Short environment names for the settings people set most.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "EVALDOCK_HOST": ("server", "host"),
    "EVALDOCK_PORT": ("server", "port"),
    "EVALDOCK_DATA": ("server", "data"),
    "EVALDOCK_MODE": ("server", "mode"),
    "EVALDOCK_LOG_LEVEL": ("server", "log_level"),
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


def merge_tables(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_tables(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def set_dotted(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"setting {'.'.join(path)} crosses a non-table value")
    node[path[-1]] = value


def _parse_env_value(raw: str) -> Any:
    """Environment values are TOML literals when they parse as one, else plain strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if name in ENV_ALIASES:
            set_dotted(tree, ENV_ALIASES[name], _parse_env_value(raw))
        elif name.startswith("EVALDOCK_") and "__" in name:
            path = tuple(p.lower() for p in name[len("EVALDOCK_") :].split("__"))
            set_dotted(tree, path, _parse_env_value(raw))
    return tree


@dataclass
class Settings:
    tree: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    config_file: Path | None = None
    # The environment the settings were read from (engines read their own variables).
    environ: Mapping[str, str] = field(default_factory=dict)

    # -- core accessors -------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self.tree["server"]["host"])

    @property
    def port(self) -> int:
        return int(self.tree["server"]["port"])

    @property
    def data_dir(self) -> Path:
        return Path(self.tree["server"]["data"]).expanduser()

    @property
    def mode(self) -> str:
        return str(self.tree["server"]["mode"])

    @property
    def max_body_bytes(self) -> int:
        return int(self.tree["server"]["max_body_bytes"])

    @property
    def max_json_body_bytes(self) -> int:
        return int(self.tree["server"]["max_json_body_bytes"])

    @property
    def surfaces(self) -> list[str]:
        value = self.tree["server"].get("surfaces") or []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return [str(v) for v in value]

    @property
    def db_readers(self) -> int:
        return int(self.tree["server"]["db_readers"])

    @property
    def server(self) -> ServerSettings:
        return typed_table("server", self.section("server"), ServerSettings)

    @property
    def jobs(self) -> JobsSettings:
        return typed_table("jobs", self.section("jobs"), JobsSettings)

    @property
    def compute(self) -> ComputeSettings:
        return typed_table("compute", self.section("compute"), ComputeSettings)

    @property
    def control(self) -> ControlSettings:
        return typed_table("control", self.section("control"), ControlSettings)

    def section(self, *path: str) -> dict[str, Any]:
        node: Any = self.tree
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}

    def auth_for(self, surface: str) -> tuple[bool, list[str]]:
        """(enabled, keys) of a surface; ``test`` is the key when none is configured."""
        table = self.section("auth", surface)
        keys = table.get("keys", [DEV_KEY])
        if isinstance(keys, str):
            keys = [k.strip() for k in keys.split(",") if k.strip()]
        return bool(table.get("enabled", True)), [str(k) for k in keys]

    def engine_choice(self, kind: str) -> tuple[str, dict[str, Any]]:
        """(implementation name, options) for an engine kind under the current mode."""
        from evaldock.engines.registry import real_default

        if kind == "judge":
            from evaldock.engines.judge.config import judge_choice

            # [judge] is the documented table; [engines.judge] works like every other kind.
            table = {**self.section("engines", "judge"), **self.section("judge")}
            return judge_choice(self.mode, table, self.environ)
        table = dict(self.section("engines", kind))
        options = {k: v for k, v in table.items() if k != "impl"}
        if self.mode == "mock":
            return "mock", options
        return str(table.get("impl", real_default(kind))), options

    def validate(self) -> None:
        self.server  # noqa: B018 - typed: a wrong or unknown key stops here
        self.control  # noqa: B018
        if self.compute.backend not in ("local", "ray"):
            raise ConfigError(f"compute.backend must be local or ray, not {self.compute.backend!r}")
        if self.mode not in MODES:
            raise ConfigError(f"server.mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"server.port must be 1-65535, not {self.port}")
        jobs = self.jobs
        if jobs.concurrency < 1:
            raise ConfigError("jobs.concurrency must be at least 1")
        if jobs.workers < 0 or jobs.request_workers < 1:
            raise ConfigError("jobs.workers must be >= 0 (0: one per core), request_workers >= 1")
