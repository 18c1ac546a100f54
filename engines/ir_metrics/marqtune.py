"""Renamed to :mod:`.gcl` (what it is: GCL's evaluation). This alias goes once
server/marqtune imports ``evaldock.engines.ir_metrics.gcl``."""

from .gcl import *  # noqa: F403
from .gcl import __all__  # noqa: F401
