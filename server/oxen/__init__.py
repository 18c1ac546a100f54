"""Oxen.ai's surface: versioned data repositories (the ``oxenai`` client's repository API)
and Oxen Hub's prompt-over-rows evaluations (text generation and embeddings)."""

from ..surface import JobKind, SurfaceDeclaration
from .evaluations import EVALUATION_JOB, EVALUATION_STATUSES
from .provider import OxenProvider
from .settings import OxenSettings

SURFACE = SurfaceDeclaration(
    name="oxen",
    provider=OxenProvider,
    settings=OxenSettings,
    engines=("judge", "embedder"),
    jobs={EVALUATION_JOB: JobKind("run_evaluation", EVALUATION_STATUSES)},
    cli=None,
)
