"""Task functions the Marqtune tests put in place of ``jobs.evaluate``: module-level, so
the worker process that runs one imports it by name, as it imports the real task."""

from __future__ import annotations

import os
import time
from typing import Any
from unittest import mock

from evaldock.engines.errors import EngineError
from evaldock.engines.ranker.mock import MockRanker
from evaldock.server.compute import TaskContext
from evaldock.server.marqtune import jobs


def evaluate_with_a_broken_image(ctx: TaskContext, *args: Any) -> Any:
    """The real task, with a ranker that cannot decode an image (in the worker)."""

    def broken(self: MockRanker, *_: Any, **__: Any) -> Any:
        time.sleep(0.3)  # long enough to be seen Running
        raise EngineError("cannot decode image img/x.png: truncated file")

    with mock.patch.object(MockRanker, "embed_fields", broken):
        return jobs.evaluate(ctx, *args)


def evaluate_forever(ctx: TaskContext, *args: Any) -> Any:
    """Says which process it runs in, then never answers (until it is killed)."""
    ctx.say(f"worker pid {os.getpid()}")
    while True:
        time.sleep(1)


def parse_forever(ctx: TaskContext, *args: Any) -> Any:
    """In place of ``jobs.parse_dataset``: says where it runs, never answers."""
    return evaluate_forever(ctx, *args)
