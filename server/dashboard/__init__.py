"""The dashboard at ``/_evaldock/ui/``: every surface's runs, their metrics as charts,
case by case, live; read through each surface's read model (``views.py``); the control
plane's levers (control.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from .control import ControlPages
from .pages import ROOT, Dashboard

if TYPE_CHECKING:
    from ..control import ControlPlane
    from ..surface import AppContext


def dashboard_routes(ctx: AppContext, plane: ControlPlane) -> list[BaseRoute]:
    """Every page: the runs' (pages.py) and the control plane's (control.py)."""
    dash = Dashboard(ctx, plane)
    return dash.routes(ControlPages(dash).routes)


__all__ = ["ROOT", "Dashboard", "dashboard_routes"]
