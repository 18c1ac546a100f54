"""Oxen.ai's surface: versioned data repositories (the ``oxenai`` client's repository API)
and Oxen Hub's prompt-over-rows evaluations (text generation and embeddings)."""

from ..surface import JobKind, SurfaceDeclaration
from .backend import OxenBackend
from .evaluations import EVALUATION_JOB, EVALUATION_STATUSES
from .provider import OxenProvider
from .settings import OxenSettings
from .views import OxenRunsView

SURFACE = SurfaceDeclaration(
    name="oxen",
    provider=OxenProvider,
    backend=OxenBackend,
    settings=OxenSettings,
    # The judge answers in the API process; the embedder is built in the workers
    # (server/oxen/jobs.py), never used here.
    engines=("judge", "embedder"),
    jobs={EVALUATION_JOB: JobKind(OxenBackend.run_evaluation, EVALUATION_STATUSES)},
    cli=None,
    views=OxenRunsView,
)
