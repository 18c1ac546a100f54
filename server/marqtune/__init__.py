"""Marqo's Marqtune surface: datasets, models and ranking evaluations (CLIP + IR metrics)."""

from ..surface import JobKind, SurfaceDeclaration
from . import cli
from .backend import MarqtuneBackend
from .provider import MarqtuneProvider
from .settings import MarqtuneSettings
from .store import DATASET_JOB, DATASET_STATUSES, EVALUATION_JOB, EVALUATION_STATUSES
from .views import MarqtuneRunsView

SURFACE = SurfaceDeclaration(
    name="marqtune",
    provider=MarqtuneProvider,
    backend=MarqtuneBackend,
    settings=MarqtuneSettings,
    # Used only inside the workers that run evaluations (jobs.evaluate), never by the API
    # process.
    engines=("ranker",),
    jobs={
        DATASET_JOB: JobKind(MarqtuneBackend.run_validate_dataset, DATASET_STATUSES),
        EVALUATION_JOB: JobKind(MarqtuneBackend.run_evaluation, EVALUATION_STATUSES),
    },
    cli=cli,
    views=MarqtuneRunsView,
)
