"""Rendered answers of finished resources, kept in memory for the next poll.

Clients poll: a completed evaluation is often read many times (the last polls of a
loop, a dashboard, a second client), and its answer cannot change any more. Rebuilding
it costs two queries and a render each time (about a quarter of a poll's CPU for a
5-pair Objective evaluation, more for larger ones); a hit here costs a dict lookup.

Only what a surface declares final goes in (a terminal job state), per tenant and per
rendered variant (JSON, CSV, text table). The control plane's reset drops a tenant's
entries; a surface that deletes a resource drops its variants with
``forget(tenant, match=resource_id)``. Bounded by bytes, least recently used out
first; nothing here is state: a restart starts empty and answers are rebuilt from
SQLite.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from starlette.responses import Response

# The default of ``[server] answer_cache_mb``.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class _Stored(Response):
    """A response rebuilt from a stored answer (its header list copied: hooks add to it)."""

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = list(headers)


class AnswerCache:
    """Final answers by ``(tenant, key)``; ``key`` names the resource and the variant."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[tuple[str, Hashable], tuple[int, bytes, list]] = OrderedDict()

    def get(self, tenant: str, key: Hashable) -> Response | None:
        entry = self._entries.get((tenant, key))
        if entry is None:
            return None
        self._entries.move_to_end((tenant, key))
        status, body, headers = entry
        return _Stored(status, body, headers)

    def put(self, tenant: str, key: Hashable, response: Response) -> None:
        """Keep ``response`` (a plain, fully rendered one; streams are not kept)."""
        body = getattr(response, "body", None)
        if self.max_bytes <= 0 or not isinstance(body, bytes) or len(body) > self.max_bytes // 4:
            return  # a stream, or one answer that would crowd out the rest
        self.forget_key(tenant, key)
        self._entries[(tenant, key)] = (response.status_code, body, list(response.raw_headers))
        self.size += len(body)
        while self.size > self.max_bytes and self._entries:
            _, (_, old, _) = self._entries.popitem(last=False)
            self.size -= len(old)

    def forget_key(self, tenant: str, key: Hashable) -> None:
        entry = self._entries.pop((tenant, key), None)
        if entry is not None:
            self.size -= len(entry[1])

    def forget(self, tenant: str | None = None, match: object = None) -> None:
        """Drop one tenant's answers (all of them with ``tenant=None``); with ``match``,
        only keys whose first part equals it (every variant of one resource)."""
        for tenant_key in list(self._entries):
            t, key = tenant_key
            if tenant is not None and t != tenant:
                continue
            if match is not None and (key[0] if isinstance(key, tuple) else key) != match:
                continue
            self.size -= len(self._entries.pop(tenant_key)[1])
