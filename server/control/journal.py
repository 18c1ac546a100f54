"""The request journal: what clients sent, for a contract test to assert on.

A bounded ring in memory ([control] journal_size entries, each body up to
journal_body_bytes), optionally appended to a JSON Lines file. Secrets are masked where
they are recorded: the whole value of credential headers, and the capability query
parameters of signed URLs.
"""

from __future__ import annotations

import collections
import fnmatch
import itertools
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.responses import Response

from ..errors import VendorErrors
from ..masking import mask_headers, mask_query
from ..pipeline import Call


class Journal:
    """Entries are kept raw (the request's header list, body bytes) and masked, decoded
    and shaped only when read: recording is on every request's path, reading is not."""

    def __init__(self, size: int, file: Path | None = None) -> None:
        self.entries: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=size)
        self.file = file
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def record(self, call: Call, response: Response) -> None:
        # From the scope, not request.url: building a URL object cost ~5 us a request
        # (a third of the control plane's cost on a poll).
        scope = call.request.scope
        raw = (
            next(self._ids),
            call.started,
            call.surface,
            call.operation_id,
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            scope["headers"],
            bytes(call.body_preview),
            call.body_truncated,
            response.status_code,
            call.elapsed_ms,
            call.tenant,
        )
        with self._lock:
            self.entries.append(raw)
        if self.file is not None:
            with self._lock, self.file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(_shape(raw)) + "\n")

    def find(
        self,
        *,
        surface: str | None = None,
        operation: str | None = None,
        path: str | None = None,
        method: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self.entries)
        picked = [
            e
            for e in entries
            if (surface is None or e[2] == surface)
            and (operation is None or e[3] == operation)
            and (method is None or e[4] == method.upper())
            and (path is None or fnmatch.fnmatchcase(e[5], path))
        ]
        return [_shape(e) for e in picked[-limit:]]

    def clear(self) -> int:
        with self._lock:
            n = len(self.entries)
            self.entries.clear()
        return n


def _shape(raw: tuple[Any, ...]) -> dict[str, Any]:
    (n, started, surface, operation, method, path, query, headers, body, truncated, status,
     elapsed, tenant) = raw  # fmt: skip
    return {
        "id": str(n),
        "time": datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds"),
        "surface": surface,
        "operation": operation,
        "method": method,
        "path": path,
        "query": mask_query(query),
        "headers": mask_headers({k.decode("latin-1"): v.decode("latin-1") for k, v in headers}),
        "body": body.decode("utf-8", "replace") if body else None,
        "body_truncated": truncated,
        "status": status,
        "duration_ms": round(elapsed, 3),
        "tenant": tenant,
    }


class JournalHook:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def before(self, call: Call, errors: VendorErrors) -> Response | None:
        return None

    def after(self, call: Call, response: Response) -> Response | None:
        self.journal.record(call, response)
        return None
