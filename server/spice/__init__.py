"""The Spice.ai runtime's evals surface (v1.x): spicepod evals, exact scorers, runs and
results as ``eval.runs`` / ``eval.results`` over read-only SQL."""

from ..surface import JobKind, ServeFlag, SurfaceDeclaration
from .backend import SpiceBackend
from .provider import SpiceProvider
from .settings import SpiceSettings
from .store import JOB_KIND, STATUSES
from .views import SpiceRunsView

SURFACE = SurfaceDeclaration(
    name="spice",
    provider=SpiceProvider,
    backend=SpiceBackend,
    settings=SpiceSettings,
    engines=("judge", "embedder"),
    jobs={JOB_KIND: JobKind(SpiceBackend.run_eval, STATUSES)},
    # `evaldock serve --spicepod ./spicepod.yaml`, as `spice run` serves the pod it finds.
    serve_flags=(ServeFlag("--spicepod", "spice.spicepod", "the spicepod.yaml to serve"),),
    views=SpiceRunsView,
)
