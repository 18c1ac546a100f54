"""The control plane for contract tests: reset, job timing, faults, journal, metrics.

Built by the app from the surfaces' declarations, so every surface gets it without code
of its own: the journal, faults, poll counting and metrics are request-pipeline hooks;
job timing is a pair of job-runner gates; reset calls each provider's ``reset(tenant)``.
Its operations are described in ``openapi/evaldock.yaml`` and served through the same
spec-driven pipeline (without the hooks: faults never apply to ``/_evaldock/*``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..config import Settings
from ..jobs import StatusMap
from ..pipeline import RequestHook, SurfaceRuntime
from ..surface import AppContext, SurfaceDeclaration
from .faults import FaultHook, Faults
from .journal import Journal, JournalHook
from .keys import control_key
from .metrics import Metrics, ObservabilityHook
from .timing import JobTiming, PollHook

log = logging.getLogger("evaldock.control")


class ControlPlane:
    def __init__(
        self, settings: Settings, ctx: AppContext, decls: Sequence[SurfaceDeclaration]
    ) -> None:
        table = settings.control
        self.enabled = table.enabled
        self.open = table.open
        self.key: str | None = None if self.open else control_key(settings.data_dir, table.key)
        self.kinds: dict[str, tuple[str, StatusMap]] = {
            kind: (d.name, job.statuses) for d in decls for kind, job in d.jobs.items()
        }
        self.kind_surfaces = {kind: surface for kind, (surface, _) in self.kinds.items()}
        self.surface_names = {d.name for d in decls}
        file = table.journal_file
        self.journal = Journal(table.journal_size, Path(file) if file else None)
        self.body_cap = table.journal_body_bytes
        self.faults = Faults()
        self.metrics = Metrics()
        self.timing = JobTiming(ctx.runner, self.kinds, table.timing)
        self.runtimes: list[SurfaceRuntime] = []
        self.json_log = table.access_log_json

    def hooks(self) -> list[RequestHook]:
        """The pipeline hooks of every vendor surface, in order (observability first so
        every answer, a fault's included, is counted and carries a request id)."""
        if not self.enabled:
            return []
        return [
            ObservabilityHook(self.metrics, json_log=self.json_log),
            JournalHook(self.journal),
            PollHook(self.timing),
            FaultHook(self.faults),
        ]

    def banner_lines(self) -> list[str]:
        if not self.enabled:
            return ["  control    disabled ([control] enabled = false)"]
        if self.open:
            return [
                "  control    WARNING: open ([control] open = true): anyone reaching this "
                "port can reset state and read every tenant's requests"
            ]
        return ["  control    /_evaldock/*  key in <data>/control.key (X-Evaldock-Control-Key)"]
