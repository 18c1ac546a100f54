"""What every vendor surface is made of: a provider class whose methods are named after
the operationIds of its spec, a vendor error envelope, and the engines it needs.

A new vendor operation is a spec entry plus a method here-named; nothing else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from starlette.requests import Request

from .auth import Authenticator, from_spec
from .config import Settings
from .db import Database
from .errors import VendorErrors
from .jobs import JobRunner
from .spec import Operation, Spec


@dataclass
class AppContext:
    """Shared by every surface: settings, state, the job runner and the engines."""

    settings: Settings
    db: Database
    runner: JobRunner
    engines: dict[str, Any] = field(default_factory=dict)

    def engine(self, kind: str) -> Any:
        return self.engines[kind]


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
    tenant: str | None
    base_url: str  # where the client reached this surface, without a trailing slash

    @property
    def accept(self) -> str | None:
        return self.request.headers.get("accept")

    def url_for(self, path: str) -> str:
        return self.base_url + path


class Provider:
    """Base class of a surface's handlers (LocalStack-style provider)."""

    errors: ClassVar[VendorErrors] = VendorErrors()
    engines: ClassVar[tuple[str, ...]] = ()  # engine kinds the surface needs

    def __init__(self, ctx: AppContext, spec: Spec) -> None:
        self.ctx = ctx
        self.spec = spec

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def runner(self) -> JobRunner:
        return self.ctx.runner

    def config(self) -> dict[str, Any]:
        return self.settings.section(self.spec.surface)

    def max_body_bytes(self, operation: Operation) -> int:
        """Largest request body ``operation`` accepts; file uploads may allow more."""
        return self.settings.max_body_bytes

    def authenticator(self) -> Authenticator:
        enabled, keys = self.settings.auth_for(self.spec.surface)
        if not enabled:
            from .auth import OpenAuthenticator

            return OpenAuthenticator()
        return from_spec(self.spec.surface, self.spec.doc, keys)

    async def startup(self) -> None:
        """Apply this surface's migrations and register its job handlers."""
        await self.db.migrate(self.spec.surface, type(self).__module__.rpartition(".")[0])

    def credentials_hint(self) -> str:
        _, keys = self.settings.auth_for(self.spec.surface)
        return f"key {keys[0]!r}" if keys else "no keys configured"


def provider_class(spec: Spec) -> type[Provider]:
    """The provider of a spec: ``PROVIDER`` in the package ``server/<surface>/``."""
    module = importlib.import_module(f"{__package__}.{spec.surface}")
    return module.PROVIDER
