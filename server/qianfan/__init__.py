"""Baidu Qianfan's model-evaluation console API (v1), bce-auth-v1 signed: tasks over
locally registered datasets, rule metrics (engines/text_metrics), report and export."""

from ..surface import JobKind, SurfaceDeclaration
from . import cli
from .provider import QianfanProvider, QianfanSettings
from .store import EVAL_JOB, EVAL_STATUSES, EXPORT_JOB, EXPORT_STATUSES

SURFACE = SurfaceDeclaration(
    name="qianfan",
    provider=QianfanProvider,
    settings=QianfanSettings,
    engines=("judge",),
    jobs={
        EVAL_JOB: JobKind("run_eval", EVAL_STATUSES),
        EXPORT_JOB: JobKind("run_export", EXPORT_STATUSES),
    },
    cli=cli,
)
