"""``python`` graders: the grader's ``grade(sample, item) -> float`` over a run's rows, in
a worker task of its own (:func:`evaldock.server.openai.jobs.python_grades`) under the
hosted limits (``[openai] python_grader_seconds`` 120 s wall and ``python_grader_memory_mb``
2,048 MB for the criterion's whole run: the pool kills the worker past either).

Only with ``[openai] python_graders = true``: the source runs as the server's user, with
its file system and network. The worker that ran it is retired when the task ends
(:func:`evaldock.server.compute.pool.retire_worker`): module globals it set, threads it
left running or patches it made never reach a later task (another criterion, another
run, another tenant's request). Each row's result is written (and flushed) as it is
computed, so when the limit kills the worker the rows before it keep their scores and the
API process errors the rest with the reason.

Pinned (OpenAI's graders guide): ``sample`` holds ``output_text``, ``output_json``,
``output_tools``, ``choices`` (and ``output_audio`` null); ``item`` the row's item; any
exception, or a value that is not a finite number, scores 0 and errors the row with the
error's text; each call gets its own copies of both.
"""

from __future__ import annotations

import contextlib
import io
import math
import traceback
from collections.abc import Iterable, Mapping
from typing import IO, Any

from .. import jsonio
from . import graders

# What a result keeps of an exception: its type, message and the grader's own frames.
MAX_ERROR = 2000


def _error_text(exc: BaseException) -> str:
    frames = [
        f"line {f.lineno} in {f.name}"
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename == "<grader>"
    ]
    where = f" ({', '.join(frames[-3:])})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"[:MAX_ERROR]


def _sample_for_code(sample: Mapping[str, Any] | None) -> dict[str, Any]:
    sample = dict(sample or {})
    return {
        "output_text": sample.get("output_text", ""),
        "output_json": sample.get("output_json"),
        "output_tools": sample.get("output_tools", []),
        "choices": sample.get("choices", []),
        "output_audio": sample.get("output_audio"),
        **{k: v for k, v in sample.items() if k not in ("output_text",)},
    }


def compile_grader(source: str) -> Any:
    """The ``grade`` function of ``source`` (raises what defining it raised)."""
    namespace: dict[str, Any] = {"__name__": "grader"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(source, "<grader>", "exec"), namespace)
    grade = namespace.get("grade")
    if not callable(grade):
        raise TypeError("the source defines no callable grade(sample, item)")
    return grade


def call(grade: Any, criterion: Mapping[str, Any], sample: Any, item: Any) -> dict[str, Any]:
    """One row: ``{score, passed, error?}``; the arguments are fresh copies (JSON)."""
    sample_copy = jsonio.decode(jsonio.encode(_sample_for_code(sample)))
    item_copy = jsonio.decode(jsonio.encode(item))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            value = grade(sample_copy, item_copy)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"grade() returned {type(value).__name__}, not a float")
        score = float(value)
        if not math.isfinite(score):
            raise ValueError(f"grade() returned {score}, not a finite number")
    except BaseException as exc:
        return {"score": 0.0, "passed": False, "error": _error_text(exc)}
    return {"score": score, "passed": graders.passed(criterion, score)}


def grade_all(
    criterion: Mapping[str, Any],
    rows: Iterable[tuple[Any, Mapping[str, Any] | None]],
    out: IO[bytes],
    key: str | None = None,
) -> int:
    """Grade every (item, sample namespace); one JSON line per row into ``out``
    (``{key: outcome}`` with a key), flushed each time (a killed worker leaves the rows
    done). The rows graded."""
    try:
        grade = compile_grader(criterion["source"])
        problem = None
    except BaseException as exc:
        grade, problem = None, f"the source failed to load: {_error_text(exc)}"
    count = 0
    for item, sample in rows:
        if grade is None:
            line: dict[str, Any] = {"score": 0.0, "passed": False, "error": problem}
        else:
            line = call(grade, criterion, sample, item)
        out.write(jsonio.encode(line if key is None else {key: line}) + b"\n")
        out.flush()
        count += 1
    return count
