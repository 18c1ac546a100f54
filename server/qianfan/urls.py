"""Signed capability URLs for result downloads: the SDK fetches ``downloadUrl`` with a
plain GET and no signature (as it would a BOS presigned URL), so the URL carries its
own ``expires`` and ``signature`` (HMAC-SHA256 over purpose, export id and expiry with a
secret kept in the core ``secrets`` table: URLs survive restarts)."""

from __future__ import annotations

from ..capability import CapabilitySigner
from ..capability import load_secret as _load_secret
from ..db import Database

SECRET_NAME = "qianfan.url-signing"
PURPOSE = "export"


async def load_secret(db: Database) -> bytes:
    return await _load_secret(db, SECRET_NAME)


class UrlSigner(CapabilitySigner):
    def sign_export(self, url: str, resource_id: str) -> str:
        return self.sign(url, PURPOSE, resource_id)

    def valid(self, resource_id: str, expires: str | None, signature: str | None) -> bool:
        return self.check(PURPOSE, resource_id, expires, signature) is None
