"""Which pool runs the jobs' tasks: ``[compute] backend``.

``local`` is :class:`.pool.WorkerPool` (worker processes on this machine); ``ray`` is
:class:`.ray.RayPool`, the same interface with job tasks sent to a Ray cluster. Ray is
imported only when chosen: mock mode and the local backend never need it.
"""

from __future__ import annotations

from ..config import ConfigError, Settings
from .pool import WorkerPool

BACKENDS = ("local", "ray")


def pool_class(settings: Settings) -> type[WorkerPool]:
    """The pool class ``[compute] backend`` names; a missing Ray stops start-up with the
    command that installs it."""
    backend = settings.compute.backend
    if backend == "local":
        return WorkerPool
    if backend == "ray":
        from .ray import RayPool, import_ray

        import_ray()
        return RayPool
    raise ConfigError(f"[compute] backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
