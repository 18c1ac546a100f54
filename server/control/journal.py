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
    def __init__(self, size: int, file: Path | None = None) -> None:
        self.entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.file = file
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def record(self, call: Call, response: Response) -> None:
        request = call.request
        body = bytes(call.body_preview)
        entry = {
            "id": str(next(self._ids)),
            "time": datetime.fromtimestamp(call.started, UTC).isoformat(timespec="milliseconds"),
            "surface": call.surface,
            "operation": call.operation_id,
            "method": request.method,
            "path": request.url.path,
            "query": mask_query(request.url.query),
            "headers": mask_headers(dict(request.headers)),
            "body": body.decode("utf-8", "replace") if body else None,
            "body_truncated": call.body_truncated,
            "status": response.status_code,
            "duration_ms": round(call.elapsed_ms, 3),
            "tenant": call.tenant,
        }
        with self._lock:
            self.entries.append(entry)
            if self.file is not None:
                with self.file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")

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
        out = [
            e
            for e in entries
            if (surface is None or e["surface"] == surface)
            and (operation is None or e["operation"] == operation)
            and (method is None or e["method"] == method.upper())
            and (path is None or fnmatch.fnmatchcase(e["path"], path))
        ]
        return out[-limit:]

    def clear(self) -> int:
        with self._lock:
            n = len(self.entries)
            self.entries.clear()
        return n


class JournalHook:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def before(self, call: Call, errors: VendorErrors) -> Response | None:
        return None

    def after(self, call: Call, response: Response) -> Response | None:
        self.journal.record(call, response)
        return None
