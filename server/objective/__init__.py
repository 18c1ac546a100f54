"""Objective's evaluations surface (LLM-as-a-judge relevance, 0/1/2)."""

from ..surface import JobKind, SurfaceDeclaration
from .provider import STATUSES, ObjectiveProvider, ObjectiveSettings
from .store import JOB_KIND

SURFACE = SurfaceDeclaration(
    name="objective",
    provider=ObjectiveProvider,
    settings=ObjectiveSettings,
    engines=("judge",),
    jobs={JOB_KIND: JobKind("run_evaluation", STATUSES)},
)
