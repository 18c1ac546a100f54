"""Baidu Qianfan's model-evaluation console API (v1), bce-auth-v1 signed: tasks over
locally registered datasets, rule metrics (engines/text_metrics), report and export."""

from ..surface import JobKind, SurfaceDeclaration
from . import cli
from .backend import QianfanBackend
from .provider import QianfanProvider
from .settings import QianfanSettings
from .store import EVAL_JOB, EVAL_STATUSES, EXPORT_JOB, EXPORT_STATUSES
from .views import QianfanRunsView

SURFACE = SurfaceDeclaration(
    name="qianfan",
    provider=QianfanProvider,
    backend=QianfanBackend,
    settings=QianfanSettings,
    engines=("judge",),
    jobs={
        EVAL_JOB: JobKind(QianfanBackend.run_eval, EVAL_STATUSES),
        EXPORT_JOB: JobKind(QianfanBackend.run_export, EXPORT_STATUSES),
    },
    cli=cli,
    views=QianfanRunsView,
)
