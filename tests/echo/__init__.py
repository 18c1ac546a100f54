"""Echo: a tiny test-only surface with no vendor quirks (the core's tests run against it).

It is also the template ``scripts/new_surface.py`` copies for a new surface.
"""

from pathlib import Path

from evaldock.server.surface import JobKind, SurfaceDeclaration

from .backend import JOB_KIND, STATUSES, EchoBackend, EchoSettings
from .provider import EchoProvider

SURFACE = SurfaceDeclaration(
    name="echo",
    provider=EchoProvider,
    backend=EchoBackend,
    settings=EchoSettings,
    jobs={JOB_KIND: JobKind(EchoBackend.run_job, STATUSES)},
    spec_file=Path(__file__).parent / "echo.yaml",
    package="tests.echo",
)
