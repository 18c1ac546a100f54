"""Signed capability URLs for result downloads: the SDK fetches ``downloadUrl`` with a
plain GET and no signature (as it would a BOS presigned URL), so the URL carries its
own ``expires`` and ``signature`` (HMAC-SHA256 over purpose, export id and expiry with a
secret kept in the core ``secrets`` table: URLs survive restarts)."""

from __future__ import annotations

from ..capability import CapabilitySigner

# The core loads it before any request (server/backend.py: "<surface>.url-signing").
SECRET_NAME = "qianfan.url-signing"
PURPOSE = "export"


class UrlSigner(CapabilitySigner):
    def sign_export(self, url: str, resource_id: str) -> str:
        return self.sign(url, PURPOSE, resource_id)

    def valid(self, resource_id: str, expires: str | None, signature: str | None) -> bool:
        return self.check(PURPOSE, resource_id, expires, signature) is None
