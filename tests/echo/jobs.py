"""Echo's task functions: plain functions of picklable inputs, run in worker processes."""

from __future__ import annotations

from evaldock.server.compute import TaskContext


def measure(ctx: TaskContext, body: str) -> int:
    """Characters of an item's body (stands for a surface's parse, score or encode)."""
    return len(body)
