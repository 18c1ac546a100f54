"""Request body validation: the Python ``jsonschema`` path against the compiled one.

    .venv/bin/python scripts/bench_validation.py [--quick] [--repeat 3]

Builds bodies the way clients send them (a Spice ``PUT /v1/evals/{name}`` of ~10 and
~45 MB and one of the spec's 100,000 cases, short ones; an Objective
``POST /v1/evaluations`` of 10,000 pairs, ~12 MB) and, for each, one
invalid copy whose only error is deep near the end (the worst case for finding it). Both
paths are timed in the same run on the same bytes:

- old: msgspec decode, the Python depth walk, ``jsonschema`` over the whole value and the
  first error by path (what ``validation.check`` did before);
- new: ``validation.decode_json`` (msgspec, the depth bounded by a compiled check) and
  ``validation.check`` (jsonschema-rs; on an error, the search that gives the old message).

Prints MB/s of decode+depth+validate for both, their ratio, and the new path's
milliseconds of event loop per MB; checks that both give the same message. The old path
runs once per body (it takes ~0.5 s per MB); the new one, best of ``--repeat``.
``--quick`` leaves the 45 MB body out of the old path.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from evaldock.server import jsonio, validation
from evaldock.server.spec import Operation, load_spec


def _operation(surface: str, operation_id: str) -> Operation:
    return next(
        o for o in load_spec(f"{surface}.yaml").operations if o.operation_id == operation_id
    )


def spice_body(megabytes: float) -> bytes:
    """A Spice eval with cases inline (~560 bytes each, so 45 MB stays under the spec's
    100,000 cases): chat-style inputs, short ideals, some outputs."""
    cases: list[dict[str, Any]] = []
    size, i = 0, 0
    while size < megabytes * 1e6:
        case: dict[str, Any] = {
            "input": f"Question {i}: what is the capital of country number {i}? Answer briefly."
            + " Context: "
            + "lorem ipsum dolor sit amet " * 18,
            "ideal": f"City {i}",
        }
        if i % 3 == 0:
            case["output"] = f"The capital is City {i}."
        if i % 7 == 0:
            case["input"] = [
                {"role": "system", "content": "You answer geography questions."},
                {"role": "user", "content": f"Capital of country {i}?"},
            ]
        cases.append(case)
        size += len(jsonio.encode(case)) + 1
        i += 1
    return jsonio.encode({"dataset": "capitals", "scorers": ["match", "includes"], "data": cases})


def spice_short_cases(cases: int = 100_000) -> bytes:
    """The spec's most cases, each short: the most nodes a Spice eval has per MB."""
    data = [{"input": f"q{i}", "ideal": f"a{i}", "output": f"a{i}"} for i in range(cases)]
    return jsonio.encode({"dataset": "d", "scorers": ["match"], "data": data})


def objective_body(pairs: int = 10_000) -> bytes:
    """Objective pairs: a query and the search result it judges (a product record)."""
    data = [
        {
            "query": f"waterproof hiking boots size {i % 15}",
            "object_id": i,
            "object": {
                "title": f"TrailMaster {i} waterproof boot",
                "description": "Full-grain leather, sealed seams, Vibram sole. " * 18,
                "price": 89.0 + i % 50,
                "tags": ["outdoor", "boots", "waterproof", f"size-{i % 15}"],
                "attributes": {"color": "brown", "weight_g": 540 + i % 90, "stock": i % 7},
            },
        }
        for i in range(pairs)
    ]
    return jsonio.encode({"configuration": {"eval_name": "bench"}, "data": data})


def broken(raw: bytes, key: str, field: str) -> bytes:
    """The body with ``field`` removed from the item 97% of the way through ``key``."""
    value = jsonio.decode(raw)
    items = value[key]
    del items[len(items) * 97 // 100][field]
    return jsonio.encode(value)


def old_path(op: Operation, raw: bytes) -> str | None:
    value = jsonio.decode(raw)
    if validation.depth(value) > validation.MAX_JSON_DEPTH:
        return "too deep"
    assert op.body_schema is not None
    return validation.python_message(op.body_schema, value)


def new_path(op: Operation, raw: bytes) -> str | None:
    try:
        validation.body(op, raw, "application/json")
    except validation.RequestInvalid as exc:
        return exc.message
    return None


# CPU seconds of this process: what a request costs the event loop, and steadier than the
# wall clock on a shared machine.
clock = time.process_time


def timed(fn: Callable[[], str | None], repeat: int) -> tuple[float, str | None]:
    best, answer = float("inf"), None
    for _ in range(repeat):
        start = clock()
        answer = fn()
        best = min(best, clock() - start)
    return best, answer


def parts(raw: bytes, op: Operation) -> str:
    """Where the new path's time goes, valid bodies: decode, depth bound, validate."""
    start = clock()
    value = validation.decode(raw)
    decoded = clock()
    validation.too_deep(value)
    nested = clock()
    assert op.body_schema is not None
    validation.check(op.body_schema, value)
    done = clock()
    mb = len(raw) / 1e6
    return (
        f"decode {mb / (decoded - start):,.0f} MB/s, depth {mb / (nested - decoded):,.0f} MB/s,"
        f" validate {mb / (done - nested):,.0f} MB/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="no old path on the 45 MB body")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    put_eval = _operation("spice", "put_eval")
    create = _operation("objective", "create_evaluation")
    spice10, spice45, objective = spice_body(10), spice_body(45), objective_body()
    short = spice_short_cases()
    bodies = [
        ("spice PUT eval 10 MB", put_eval, spice10, True),
        ("spice PUT eval 10 MB, invalid", put_eval, broken(spice10, "data", "ideal"), True),
        ("spice PUT eval 45 MB", put_eval, spice45, not args.quick),
        ("spice PUT eval 45 MB, invalid", put_eval, broken(spice45, "data", "ideal"), False),
        ("spice PUT eval 100,000 short cases", put_eval, short, True),
        ("spice short cases, invalid", put_eval, broken(short, "data", "ideal"), True),
        ("objective POST 10,000 pairs", create, objective, True),
        ("objective POST, invalid", create, broken(objective, "data", "query"), True),
    ]
    print(
        f"{'body':36} {'MB':>6} {'old MB/s':>9} {'new MB/s':>9} {'ratio':>7} {'ms/MB':>6}  answer"
    )
    for name, op, raw, run_old in bodies:
        mb = len(raw) / 1e6
        new_s, new_answer = timed(lambda op=op, raw=raw: new_path(op, raw), args.repeat)
        if run_old:
            old_s, old_answer = timed(lambda op=op, raw=raw: old_path(op, raw), 1)
            same = "same message" if old_answer == new_answer else "DIFFERENT MESSAGES"
            old_cell, ratio = f"{mb / old_s:9.1f}", f"{old_s / new_s:6.0f}x"
        else:
            old_cell, ratio, same = f"{'-':>9}", f"{'-':>7}", "(old path not run)"
        answer = "valid" if new_answer is None else new_answer[:60]
        print(
            f"{name:36} {mb:6.1f} {old_cell} {mb / new_s:9.1f} {ratio} {new_s * 1e3 / mb:6.1f}"
            f"  {answer} [{same}]"
        )
    print()
    for name, op, raw, _ in bodies[::2]:
        print(f"{name:36} {parts(raw, op)}")


if __name__ == "__main__":
    main()
