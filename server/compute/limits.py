"""What one task may spend in a worker process, and the failures a pool reports.

Every task runs under three limits, checked by the pool from outside the worker (the
worker's own code cannot be trusted to stop: a quadratic scorer or a C extension decoding
a parquet bomb never reaches a Python check):

- ``wall_seconds``: from the task's start in the worker to its answer;
- ``cpu_seconds``: user + system CPU the worker process spent on the task (all threads);
- ``memory_mb``: the worker process's resident memory, engines it keeps loaded included.

A task over a limit is killed with its worker (SIGKILL), the worker is replaced, and the
caller gets :class:`LimitExceeded`, whose message names the limit and the setting that
raises it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The setting that raises each limit, named in the failure (a surface's tighter bound
# names its own setting instead, e.g. ``[spice] sql_timeout``).
SETTINGS = {
    "wall_seconds": "[jobs] task_wall_seconds",
    "cpu_seconds": "[jobs] task_cpu_seconds",
    "memory_mb": "[jobs] task_memory_mb",
}


@dataclass(frozen=True)
class TaskLimits:
    """Bounds of one task. Defaults fit the 2-core, 24 GB machine with one worker a core
    and two more for requests: four workers at 4 GiB each leave 8 GiB to the API process,
    the page cache and the model servers."""

    wall_seconds: float = 3600.0
    cpu_seconds: float = 3600.0
    memory_mb: int = 4096
    settings: Mapping[str, str] = field(default_factory=lambda: dict(SETTINGS))

    def tighter(self, setting: str, **bounds: float | None) -> TaskLimits:
        """These limits with some lowered to ``bounds`` (None or 0 keeps the current);
        a lowered limit names ``setting`` when it stops a task."""
        values: dict[str, Any] = {name: getattr(self, name) for name in SETTINGS}
        names = dict(self.settings)
        for name, value in bounds.items():
            if name not in SETTINGS:
                raise TypeError(f"unknown task limit {name!r}")
            if value is not None and 0 < value < values[name]:
                values[name] = value
                names[name] = setting
        return TaskLimits(
            wall_seconds=float(values["wall_seconds"]),
            cpu_seconds=float(values["cpu_seconds"]),
            memory_mb=int(values["memory_mb"]),
            settings=names,
        )


class TaskFailed(Exception):
    """The task did not answer: its worker crashed, or was killed over a limit. The
    message says what happened and, for a limit, which setting raises it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LimitExceeded(TaskFailed):
    """The task went over one of its limits and was killed."""

    def __init__(self, limit: str, used: str, bound: str, setting: str) -> None:
        super().__init__(
            f"stopped: the task went over its {limit} limit ({used} > {bound}); "
            f"raise {setting} if the input is meant to be this large"
        )
        self.limit = limit
        self.setting = setting


class WorkerCrashed(TaskFailed):
    """The worker process died on its own (a segfault, the kernel's OOM killer)."""
