"""Capability URLs: a client fetches or uploads without its credentials (Marqtune's
upload and download URLs, Qianfan's export downloads), as it would a presigned URL.

A URL carries ``expires`` (Unix seconds) and ``signature`` = HMAC-SHA256 over the
purpose (``upload``, ``logs``, ``export`` ...), the resource id and the expiry. The path
is not signed, so a URL works under the root mount and under the surface's prefix
alike. Each surface's secret is a row of the core ``secrets`` table: URLs handed out
before a restart keep working after it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from enum import Enum
from urllib.parse import urlencode

from .db import Database, utcnow

# Unix seconds stay 10 digits until the year 2286; 12 allow anything datetime can show.
_MAX_EXPIRES_DIGITS = 12
_MAX_SIGNATURE_LENGTH = 128  # hex SHA-256 is 64


class Refusal(Enum):
    MALFORMED = "malformed"  # missing, non-ASCII, too long, not digits
    MISMATCH = "mismatch"
    EXPIRED = "expired"


async def load_secret(db: Database, name: str) -> bytes:
    """The signing secret called ``name``, created on first use."""
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT OR IGNORE INTO secrets (name, value, created_at) VALUES (?, ?, ?)",
            (name, secrets.token_bytes(32), utcnow()),
        )
    row = await db.fetchone("SELECT value FROM secrets WHERE name = ?", (name,))
    if row is None:  # the INSERT above committed: only a vanished database gets here
        raise RuntimeError(f"signing secret {name!r} could not be stored")
    return bytes(row["value"])


class CapabilitySigner:
    def __init__(self, secret: bytes, ttl: int) -> None:
        self.secret = secret
        self.ttl = ttl

    def _mac(self, purpose: str, resource_id: str, expires: int) -> str:
        message = f"{purpose}\n{resource_id}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def sign(self, url: str, purpose: str, resource_id: str, now: float | None = None) -> str:
        expires = int(now if now is not None else time.time()) + self.ttl
        query = urlencode(
            {"expires": expires, "signature": self._mac(purpose, resource_id, expires)}
        )
        return f"{url}?{query}"

    def check(
        self,
        purpose: str,
        resource_id: str,
        expires: str | None,
        signature: str | None,
        now: float | None = None,
    ) -> Refusal | None:
        """None when the URL is valid, else why not.

        Both values come from the query string as the client wrote them: checked to be
        ASCII and bounded before ``int()`` and ``compare_digest`` see them (``expires=²``
        is ``isdigit()`` but not ``int()``-able, a 5,000-digit one exceeds ``int()``'s
        limit, and ``compare_digest`` rejects non-ASCII text with a TypeError).
        """
        if (
            not expires
            or not signature
            or len(expires) > _MAX_EXPIRES_DIGITS
            or len(signature) > _MAX_SIGNATURE_LENGTH
            or not expires.isascii()
            or not expires.isdigit()
            or not signature.isascii()
        ):
            return Refusal.MALFORMED
        if not hmac.compare_digest(self._mac(purpose, resource_id, int(expires)), signature):
            return Refusal.MISMATCH
        if int(expires) < (now if now is not None else time.time()):
            return Refusal.EXPIRED
        return None
