"""OpenAI's Evals API (``client.evals``, ``client.files``, ``client.fine_tuning.alpha.
graders``) after the hosted service closed, served under ``/openai/v1``."""

from ..surface import JobKind, SurfaceDeclaration
from .backend import OpenAIBackend
from .provider import OpenAIProvider
from .settings import OpenAISettings
from .store import JOB_KIND, STATUSES
from .views import OpenAIRunsView

SURFACE = SurfaceDeclaration(
    name="openai",
    provider=OpenAIProvider,
    backend=OpenAIBackend,
    settings=OpenAISettings,
    engines=("judge", "embedder"),
    jobs={JOB_KIND: JobKind(OpenAIBackend.run_eval, STATUSES)},
    views=OpenAIRunsView,
)
