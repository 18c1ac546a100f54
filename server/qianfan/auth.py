"""bce-auth-v1 as the pipeline's authenticator: AK/SK pairs from ``[auth.qianfan] keys``.

``keys = ["AK:SK", ...]`` (or ``EVALDOCK_AUTH__QIANFAN__KEYS=AK:SK,AK2:SK2``); an entry
without a colon is a pair of equal halves, so the core's development key ``test`` is
the pair ``test``/``test``. Each access key is a tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from starlette.requests import Request

from ..auth import AuthFailed, tenant_of
from .signing import MAX_EXPIRATION_SECONDS, SignatureError, verify

SURFACE = "qianfan"


def key_pairs(keys: Sequence[str]) -> dict[str, str]:
    """``["AK:SK", "test"]`` -> ``{"AK": "SK", "test": "test"}``."""
    pairs: dict[str, str] = {}
    for entry in keys:
        ak, sep, sk = entry.strip().partition(":")
        if ak:
            pairs[ak] = sk if sep else ak
    return pairs


class BceAuthenticator:
    """Verifies each request's signature over method, route (mount prefix removed),
    query and signed headers; the body is not signed (see signing.py)."""

    open = False

    def __init__(
        self,
        keys: Sequence[str],
        mount_prefix: str,
        max_skew_seconds: int,
        max_expiration_seconds: int = MAX_EXPIRATION_SECONDS,
    ) -> None:
        self.keys = key_pairs(keys)
        self.mount_prefix = mount_prefix
        self.max_skew_seconds = max_skew_seconds
        self.max_expiration_seconds = max_expiration_seconds

    async def authenticate(self, request: Request) -> str:
        try:
            access_key = verify(
                request.method,
                request.scope["path"],
                request.query_params.multi_items(),
                request.headers,
                self.keys,
                now=datetime.now(UTC),
                max_skew_seconds=self.max_skew_seconds,
                max_expiration_seconds=self.max_expiration_seconds,
                mount_prefix=self.mount_prefix,
            )
        except SignatureError as exc:
            raise AuthFailed(exc.reason, kind=exc.kind.value) from None
        return tenant_of(SURFACE, access_key)
