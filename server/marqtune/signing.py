"""Capability URLs: the client PUTs uploads and GETs downloads without its API key.

A URL carries ``expires`` (Unix seconds) and ``signature`` = HMAC-SHA256 over the
purpose (``upload``, ``logs``, ``checkpoint:epoch_2`` ...), the resource id and the
expiry. The path itself is not signed, so a URL works under the root mount and under
``/marqtune`` alike. The secret is the core's ``marqtune.url-signing`` row of the
``secrets`` table, loaded before any request (``BackendContext.secret``): URLs handed out
before a restart keep working after it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..capability import CapabilitySigner, Refusal
from .errors import forbidden

DEFAULT_TTL = 3600  # seconds; [marqtune] url_expiry_seconds sets the server's


class UrlSigner(CapabilitySigner):
    def __init__(self, secret: bytes, ttl: int = DEFAULT_TTL) -> None:
        super().__init__(secret, ttl)

    def verify(
        self,
        purpose: str,
        resource_id: str,
        expires: str | None,
        signature: str | None,
        now: float | None = None,
    ) -> None:
        """Raise 403 unless the signature matches and has not expired."""
        refusal = self.check(purpose, resource_id, expires, signature, now)
        if refusal is Refusal.MALFORMED:
            raise forbidden(
                "This URL has no valid signature; ask the API for a new upload or download URL"
            )
        if refusal is Refusal.MISMATCH:
            raise forbidden(
                "This URL's signature does not match; ask the API for a new upload or download URL"
            )
        if refusal is Refusal.EXPIRED:
            when = datetime.fromtimestamp(int(expires or 0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise forbidden(
                f"This URL expired at {when}; ask the API for a new upload or download URL"
            )
