"""Task functions for tests/server/test_compute.py: module-level, so a worker imports them."""

from __future__ import annotations

import os
import time
from typing import Any

from evaldock.server.compute import TaskContext


class Refused(ValueError):
    """An error whose __init__ takes other arguments than its message (as the project's do)."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(f"{name} is over {limit}")
        self.name = name
        self.limit = limit


def add(ctx: TaskContext, a: int, b: int) -> int:
    ctx.say(f"adding {a} and {b}")
    ctx.progress(1, 2)
    ctx.progress(2, 2)
    return a + b


def pid(ctx: TaskContext) -> int:
    return os.getpid()


def spin(ctx: TaskContext, seconds: float) -> int:
    """Burn CPU (the GIL held) for ``seconds`` of wall time; answer the worker's pid."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return os.getpid()


def spin_forever(ctx: TaskContext) -> None:
    while True:
        pass


def hold_memory(ctx: TaskContext, megabytes: int) -> None:
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
        block[i] = 1
    time.sleep(60)


def sleep(ctx: TaskContext, seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def refuse(ctx: TaskContext) -> None:
    raise Refused("cell", 16)


def crash(ctx: TaskContext) -> None:
    import ctypes

    ctypes.string_at(0)  # SIGSEGV


def engine_name(ctx: TaskContext, kind: str) -> Any:
    from evaldock.engines.protocols import Engine

    engine = ctx.engine(kind, Engine)
    return engine.name, id(engine), os.getpid()


class Wrapped(ValueError):
    def __init__(self, cause: Refused) -> None:
        super().__init__(f"outer: {cause}")
        self.cause = cause


def wrap(ctx: TaskContext) -> None:
    raise Wrapped(Refused("cell", 16))
