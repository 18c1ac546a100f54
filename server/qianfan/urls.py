"""Signed capability URLs for result downloads: the SDK fetches ``downloadUrl`` with a
plain GET and no signature (as it would a BOS presigned URL), so the URL carries its
own ``expires`` and ``signature`` (HMAC-SHA256 over purpose, export id and expiry with a
secret kept in the core ``secrets`` table: URLs survive restarts)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlencode

from ..db import Database, utcnow

SECRET_NAME = "qianfan.url-signing"
_MAX_EXPIRES_DIGITS = 12  # Unix seconds are 10 digits until 2286
_MAX_SIGNATURE_LENGTH = 128  # hex SHA-256 is 64


async def load_secret(db: Database) -> bytes:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT OR IGNORE INTO secrets (name, value, created_at) VALUES (?, ?, ?)",
            (SECRET_NAME, secrets.token_bytes(32), utcnow()),
        )
    row = await db.fetchone("SELECT value FROM secrets WHERE name = ?", (SECRET_NAME,))
    assert row is not None
    return bytes(row["value"])


class UrlSigner:
    def __init__(self, secret: bytes, ttl: int) -> None:
        self.secret = secret
        self.ttl = ttl

    def _mac(self, resource_id: str, expires: int) -> str:
        message = f"export\n{resource_id}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def sign(self, url: str, resource_id: str) -> str:
        expires = int(time.time()) + self.ttl
        return (
            f"{url}?{urlencode({'expires': expires, 'signature': self._mac(resource_id, expires)})}"
        )

    def valid(self, resource_id: str, expires: str | None, signature: str | None) -> bool:
        """Checked ASCII and bounded before int() and compare_digest see the values."""
        if (
            not expires
            or not signature
            or len(expires) > _MAX_EXPIRES_DIGITS
            or len(signature) > _MAX_SIGNATURE_LENGTH
            or not expires.isascii()
            or not expires.isdigit()
            or not signature.isascii()
        ):
            return False
        if int(expires) < time.time():
            return False
        return hmac.compare_digest(self._mac(resource_id, int(expires)), signature.lower())
