"""Objective's evaluations surface (LLM-as-a-judge relevance, 0/1/2)."""

from ..surface import JobKind, SurfaceDeclaration
from .backend import ObjectiveBackend
from .provider import ObjectiveProvider
from .settings import ObjectiveSettings
from .store import JOB_KIND, STATUSES
from .views import ObjectiveRunsView

SURFACE = SurfaceDeclaration(
    name="objective",
    provider=ObjectiveProvider,
    backend=ObjectiveBackend,
    settings=ObjectiveSettings,
    engines=("judge",),
    jobs={JOB_KIND: JobKind(ObjectiveBackend.run_evaluation, STATUSES)},
    views=ObjectiveRunsView,
)
