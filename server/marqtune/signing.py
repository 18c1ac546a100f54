"""Capability URLs: the client PUTs uploads and GETs downloads without its API key.

A URL carries ``expires`` (Unix seconds) and ``signature`` = HMAC-SHA256 over the
purpose (``upload``, ``logs``, ``checkpoint:epoch_2`` ...), the resource id and the
expiry. The path itself is not signed, so a URL works under the root mount and under
``/marqtune`` alike. The secret is a row of the core ``secrets`` table: URLs handed out
before a restart keep working after it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

from ..db import Database, utcnow
from .errors import forbidden

SECRET_NAME = "marqtune.url-signing"
DEFAULT_TTL = 3600
# Unix seconds stay 10 digits until the year 2286; 12 allow anything datetime can show.
_MAX_EXPIRES_DIGITS = 12
_MAX_SIGNATURE_LENGTH = 128  # hex SHA-256 is 64


async def load_secret(db: Database) -> bytes:
    """The signing secret, created on first use."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO secrets (name, value, created_at) VALUES (?, ?, ?)",
            (SECRET_NAME, secrets.token_bytes(32), utcnow()),
        )
    row = await db.fetchone("SELECT value FROM secrets WHERE name = ?", (SECRET_NAME,))
    assert row is not None
    return bytes(row["value"])


class UrlSigner:
    def __init__(self, secret: bytes, ttl: int = DEFAULT_TTL) -> None:
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

    def verify(
        self,
        purpose: str,
        resource_id: str,
        expires: str | None,
        signature: str | None,
        now: float | None = None,
    ) -> None:
        """Raise 403 unless the signature matches and has not expired.

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
            raise forbidden(
                "This URL has no valid signature; ask the API for a new upload or download URL"
            )
        expected = self._mac(purpose, resource_id, int(expires))
        if not hmac.compare_digest(expected, signature):
            raise forbidden(
                "This URL's signature does not match; ask the API for a new upload or download URL"
            )
        if int(expires) < (now if now is not None else time.time()):
            when = datetime.fromtimestamp(int(expires), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise forbidden(
                f"This URL expired at {when}; ask the API for a new upload or download URL"
            )
