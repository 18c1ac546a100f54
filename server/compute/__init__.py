"""Job work in worker processes, with limits (see :mod:`.pool` for the why and the shape).

The API process does bounded work only; anything that grows with the input (parsing a
dataset, scoring, metrics, encoding, a SQL query) is a *task*: a module-level function
``fn(ctx: TaskContext, *args)`` run by :class:`WorkerPool` in a worker process under
:class:`TaskLimits`.
"""

from .limits import LimitExceeded, TaskFailed, TaskLimits, WorkerCrashed
from .marks import InputFile
from .pool import WorkerPool
from .worker import TaskContext, run_inline

__all__ = [
    "InputFile",
    "LimitExceeded",
    "TaskContext",
    "TaskFailed",
    "TaskLimits",
    "WorkerCrashed",
    "WorkerPool",
    "run_inline",
]
