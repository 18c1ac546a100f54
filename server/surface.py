"""What a vendor surface is made of, and how it declares itself to the core.

A surface is one package, ``server/<vendor>/``, whose ``__init__.py`` exports ``SURFACE``,
a :class:`SurfaceDeclaration`: its spec, its provider class (handlers named after the
spec's operationIds), typed settings with their defaults, the engines it needs, its job
kinds with their ordered status maps, optional CLI commands. The core reads the
declaration for defaults, routes, migrations, jobs, CLI and the control plane's reset;
adding a surface touches no core file.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec
from starlette.requests import Request

from .answers import AnswerCache
from .auth import Authenticator, OpenAuthenticator, from_spec
from .backend import Backend, BackendContext
from .compute import WorkerPool
from .config import DEV_KEY, Settings
from .datadir import private_dir
from .db import Database
from .errors import VendorErrors
from .jobs import Job, JobRunner, StatusMap
from .spec import Operation, Spec

if TYPE_CHECKING:
    import argparse

    from .readmodel import RunsView


class SurfaceCli(Protocol):
    """Optional ``evaldock <vendor> …`` commands of a surface."""

    def add_subcommand(self, sub: argparse._SubParsersAction[Any]) -> None: ...

    def run(self, args: argparse.Namespace, settings: Settings) -> int: ...


@dataclass(frozen=True)
class JobKind:
    """A kind of background job: the backend method that runs it (``XBackend.run_eval``,
    called as ``run(backend, job)``; a string names a provider method, the older form),
    and the surface's words for each core job state, in the order a job moves through."""

    handler: str | Callable[[Any, Job], Coroutine[Any, Any, None]]
    statuses: StatusMap


@dataclass(frozen=True)
class ServeFlag:
    """An ``evaldock serve`` option a surface adds, setting one of its settings
    (``ServeFlag("--spicepod", "spice.spicepod", "the spicepod.yaml to serve")``)."""

    flag: str
    setting: str
    help: str


class NoSettings(msgspec.Struct, kw_only=True):
    pass


@dataclass(frozen=True)
class SurfaceDeclaration:
    name: str
    provider: type[Provider]
    # The surface's rules and state (server/backend.py), built by the core; the
    # provider reaches it as ``self.backend``.
    backend: type[Backend[Any]] | None = None
    # Typed settings: a msgspec Struct whose field defaults are *the* defaults of the
    # surface's ``[<name>]`` table (one default, one place).
    settings: type[msgspec.Struct] = NoSettings
    engines: tuple[str, ...] = ()
    jobs: Mapping[str, JobKind] = field(default_factory=dict)
    cli: SurfaceCli | ModuleType | None = None
    serve_flags: tuple[ServeFlag, ...] = ()
    # Where the spec lives: ``openapi/<name>.yaml`` of the package unless given.
    spec_file: Path | None = None
    # Package holding ``migrations/``: the declaring package unless given.
    package: str = ""
    # The dashboard's read model of the surface's runs (server/readmodel.py),
    # built with no arguments; None leaves the surface out of the dashboard's tables.
    views: Callable[[], RunsView] | None = None

    def defaults(self) -> dict[str, Any]:
        return dict(msgspec.to_builtins(self.settings()))


@dataclass
class AppContext:
    """Shared by every surface: settings, state, the job runner and the engines."""

    settings: Settings
    db: Database
    runner: JobRunner
    engines: dict[str, Any] = field(default_factory=dict)
    pool: WorkerPool | None = None


@dataclass
class ApiRequest:
    """A request that passed auth and validation, as a handler sees it."""

    request: Request
    operation: Operation
    path: dict[str, Any]
    query: dict[str, Any]
    headers: dict[str, Any]
    body: Any
    raw_body: bytes
    # The caller's tenant on secured operations; "" on open ones (signed URLs, health).
    tenant: str
    base_url: str  # where the client reached this surface, without a trailing slash
    # Uploads (non-JSON bodies the spec streams) arrive in a temporary file that the
    # handler moves into place or leaves to be removed after the response.
    body_file: Path | None = None
    body_size: int = 0

    @property
    def accept(self) -> str | None:
        return self.request.headers.get("accept")

    @property
    def content_type(self) -> str:
        return self.request.headers.get("content-type", "").split(";")[0].strip().lower()

    def url_for(self, path: str) -> str:
        return self.base_url + path


class Provider:
    """Base class of a surface's handlers (LocalStack-style provider)."""

    errors: ClassVar[VendorErrors] = VendorErrors()

    def __init__(self, ctx: AppContext, spec: Spec, declaration: SurfaceDeclaration) -> None:
        self.ctx = ctx
        self.spec = spec
        self.declaration = declaration
        # Set by the core when the surface declares a backend (server/backend.py).
        self.backend: Any = None
        section = ctx.settings.section(declaration.name)
        # Environment values arrive as TOML literals or strings: convert leniently.
        self.options: Any = msgspec.convert(
            {**declaration.defaults(), **section}, declaration.settings, strict=False
        )
        # Finished resources' rendered answers (server/answers.py); the core drops a
        # tenant's on reset, a surface that deletes a resource drops the resource's.
        megabytes = ctx.settings.server.answer_cache_mb
        self.answers = AnswerCache(int(megabytes * 1024 * 1024))

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def runner(self) -> JobRunner:
        return self.ctx.runner

    def max_body_bytes(self, operation: Operation) -> int:
        """Largest request body ``operation`` accepts; file uploads may allow more."""
        return self.settings.max_body_bytes

    def authenticator(self) -> Authenticator:
        enabled, keys = self.settings.auth_for(self.spec.surface)
        if not enabled:
            return OpenAuthenticator()
        return from_spec(self.spec.surface, self.spec.doc, keys)

    async def authorize(self, operation: Operation, request: Request) -> str | None:
        """Checks of an open operation from its headers and URL alone (a signed capability
        URL, a key a vendor only sometimes requires), before any byte of its body is read;
        raise the vendor's ApiError to refuse. A tenant returned becomes ``req.tenant``."""
        return None

    async def startup(self) -> None:
        """Load what the surface needs once its migrations ran (secrets, config tables)."""

    async def reset(self, tenant: str | None) -> None:
        """Delete this surface's rows and files (one tenant's, or all): the control
        plane's reset. Caches and signing secrets stay. The backend's by default."""
        if self.backend is not None:
            await self.backend.reset(tenant)

    def tenant_for_key(self, key: str) -> str:
        """The tenant a credential maps to (the control plane's reset by key); a surface
        whose credentials are not plain keys (Qianfan's AK:SK) overrides it."""
        from .auth import tenant_of

        if self.authenticator().open:
            return "public"
        return tenant_of(self.spec.surface, key)

    def credentials_hint(self) -> str:
        _, keys = self.settings.auth_for(self.spec.surface)
        return f"key {shown_key(keys[0])}" if keys else "no keys configured"


def shown_key(key: str) -> str:
    """A key as the banner shows it: the public development default as it is (the one
    value a newcomer needs), any other key masked."""
    from .masking import mask_key

    if key == DEV_KEY:
        return f"{key!r} (the development default; set real keys in [auth.<surface>] keys)"
    return repr(mask_key(key))


# -- discovery ----------------------------------------------------------------------------


def declaration_of(name: str) -> SurfaceDeclaration:
    """``SURFACE`` of ``evaldock.server.<name>``."""
    module = importlib.import_module(f"evaldock.server.{name}")
    decl: SurfaceDeclaration = module.SURFACE
    if not decl.package:
        decl = _with_package(decl, module.__name__)
    return decl


def _with_package(decl: SurfaceDeclaration, package: str) -> SurfaceDeclaration:
    import dataclasses

    return dataclasses.replace(decl, package=package)


def builtin_names() -> list[str]:
    """Surfaces shipped in the package: one per ``openapi/<name>.yaml`` (and
    ``evaldock.yaml``, the control plane's own spec, is not a vendor)."""
    from .spec import spec_files

    return [f.removesuffix(".yaml") for f in spec_files() if f != "evaldock.yaml"]


def declarations(
    enabled: Sequence[str] | None = None, extra: Sequence[SurfaceDeclaration] = ()
) -> list[SurfaceDeclaration]:
    names = builtin_names()
    if enabled:
        unknown = sorted(set(enabled) - set(names) - {d.name for d in extra})
        if unknown:
            from .config import ConfigError

            raise ConfigError(
                f"unknown surface(s) {', '.join(unknown)} in [server] surfaces / --surfaces; "
                f"choose from {', '.join(names)}"
            )
        names = [n for n in names if n in enabled]
    found = [declaration_of(n) for n in names]
    return found + [
        d if d.package else _with_package(d, d.provider.__module__.rpartition(".")[0])
        for d in extra
        if not enabled or d.name in enabled
    ]


def all_defaults(enabled: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The enabled (default: every) built-in surface's settings defaults, by table name.
    Unknown names are left to create_app, which says which surfaces exist."""
    known = set(builtin_names())
    names = [n for n in enabled if n in known] or ([] if enabled else sorted(known))
    return {d.name: d.defaults() for d in map(declaration_of, names)}


# -- backends -----------------------------------------------------------------------------


def backend_context(
    decl: SurfaceDeclaration,
    settings: Settings,
    db: Database,
    runner: JobRunner,
    pool: WorkerPool | None,
    engines: Mapping[str, Any],
) -> BackendContext[Any]:
    options = msgspec.convert(
        {**decl.defaults(), **settings.section(decl.name)}, decl.settings, strict=False
    )
    folder = settings.data_dir / decl.name
    return BackendContext(
        name=decl.name,
        options=options,
        settings=settings,
        db=db,
        runner=runner,
        pool=pool,
        data_dir=folder,
        engines={k: engines[k] for k in decl.engines if k in engines},
    )


async def prepare(ctx: BackendContext[Any]) -> None:
    """Before any request: the surface's data folder (0700) and signing secret."""
    from .capability import load_secret

    private_dir(ctx.data_dir)
    ctx.secret = await load_secret(ctx.db, f"{ctx.name}.url-signing")


@contextlib.asynccontextmanager
async def open_backend(decl: SurfaceDeclaration, settings: Settings) -> AsyncIterator[Any]:
    """The surface's backend over the server's data folder, for a CLI command: the
    database opened and migrated, no jobs run, no worker processes (tasks run inline)."""
    if decl.backend is None:
        raise TypeError(f"surface {decl.name!r} declares no backend")
    db = Database(settings.data_dir / "evaldock.sqlite3", readers=1)
    await db.open()
    try:
        await db.migrate("core", "evaldock.server")
        await db.migrate(decl.name, decl.package)
        runner = JobRunner(db)
        ctx = backend_context(decl, settings, db, runner, None, {})
        await prepare(ctx)
        backend = decl.backend(ctx)
        await backend.startup()
        yield backend
    finally:
        await db.close()
