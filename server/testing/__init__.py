"""Helpers for users' own contract tests: a control-plane client and a pytest plugin."""

from .client import ControlClient, EvaldockServer

__all__ = ["ControlClient", "EvaldockServer"]
