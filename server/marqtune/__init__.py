"""Marqo's Marqtune surface: datasets, models and ranking evaluations (CLIP + IR metrics)."""

from ..surface import JobKind, SurfaceDeclaration
from . import cli
from .provider import MarqtuneProvider, MarqtuneSettings
from .store import DATASET_JOB, DATASET_STATUSES, EVALUATION_JOB, EVALUATION_STATUSES

SURFACE = SurfaceDeclaration(
    name="marqtune",
    provider=MarqtuneProvider,
    settings=MarqtuneSettings,
    engines=("ranker",),
    jobs={
        DATASET_JOB: JobKind("validate_dataset", DATASET_STATUSES),
        EVALUATION_JOB: JobKind("run_evaluation", EVALUATION_STATUSES),
    },
    cli=cli,
)
