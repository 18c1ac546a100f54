"""The dashboard at ``/_evaldock/ui/``: every surface's runs, their metrics as charts,
case by case, live; read through each surface's read model (``views.py``)."""

from .pages import ROOT, Dashboard

__all__ = ["ROOT", "Dashboard"]
