"""Credentials per surface. Each key is a tenant: it sees only what it created.

The scheme comes from the spec's ``securitySchemes`` (HTTP bearer, or an API key in a
header); a surface with its own signature scheme supplies its own authenticator.
Keys are compared in constant time, and only a digest of the key is stored as tenant.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, Protocol

from starlette.requests import Request


class AuthFailed(Exception):
    """No or wrong credentials; the surface answers with its vendor's 401 (``kind`` lets
    a vendor tell "unknown credential" from "bad signature", as Baidu's IAM does)."""

    def __init__(self, reason: str = "", kind: str = "unauthorized") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class Authenticator(Protocol):
    @property
    def open(self) -> bool:
        """True when every request is the one shared tenant ("public"): the control
        plane's reset by key then resets that tenant instead of hashing the key."""
        ...

    async def authenticate(self, request: Request) -> str:
        """The tenant of the request, from its headers and URL alone (the body is not
        read yet: nothing unauthenticated is buffered); raises :class:`AuthFailed`."""
        ...


def tenant_of(surface: str, key: str) -> str:
    return hashlib.sha256(f"{surface}\0{key}".encode()).hexdigest()[:24]


class KeyAuthenticator:
    """A static key from a header: ``Authorization: Bearer KEY`` or ``x-api-key: KEY``."""

    open = False

    def __init__(self, surface: str, keys: Sequence[str], header: str, bearer: bool) -> None:
        self.surface = surface
        self.keys = [k.encode() for k in keys]
        self.header = header.lower()
        self.bearer = bearer

    def _presented(self, request: Request) -> str | None:
        value = request.headers.get(self.header)
        if value is None:
            return None
        if self.bearer:
            scheme, _, token = value.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
        return value.strip() or None

    async def authenticate(self, request: Request) -> str:
        key = self._presented(request)
        if key is None:
            raise AuthFailed("missing credentials")
        presented = key.encode()
        # Compare against every key so timing does not reveal which one nearly matched.
        ok = False
        for candidate in self.keys:
            ok |= hmac.compare_digest(presented, candidate)
        if not ok:
            raise AuthFailed("invalid credentials")
        return tenant_of(self.surface, key)


class OpenAuthenticator:
    """For surfaces whose vendor runs without auth: one shared tenant."""

    open = True

    async def authenticate(self, request: Request) -> str:
        return "public"


def from_spec(surface: str, doc: dict[str, Any], keys: Sequence[str]) -> Authenticator:
    schemes = doc.get("components", {}).get("securitySchemes", {})
    for scheme in schemes.values():
        if scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "bearer":
            return KeyAuthenticator(surface, keys, "authorization", bearer=True)
        if scheme.get("type") == "apiKey" and scheme.get("in") == "header":
            return KeyAuthenticator(surface, keys, scheme["name"], bearer=False)
    return OpenAuthenticator()
