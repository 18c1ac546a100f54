"""Evaluation datasets: JSON Lines of ``prompt`` / ``reference`` (optionally ``prediction``).

Qianfan evaluates a dataset of the platform; evaldock has no dataset API of Baidu's, so a
dataset is registered locally (the extension endpoint or ``evaldock qianfan add-dataset``)
and referred to by its ``ds-...`` id in ``eval/create``. A case with a ``prediction``
needs no model: rule metrics run on it as given (Qianfan's "inference result set").
Every field is bounded (``[qianfan] max_field_chars``, 4,000 by default) and so is the
case count (``[qianfan] max_cases``).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

import msgspec

from ..db import Transaction, utcnow
from ..names import name_problem
from ..tabular import JSON_ERRORS, json_reason

_ID_ALPHABET = string.ascii_lowercase + string.digits
# Aliases the platform's own exports use for the same fields.
_PROMPT_KEYS = ("prompt", "input", "query")
_REFERENCE_KEYS = ("reference", "response", "completion", "expected_output")


class DatasetInvalid(Exception):
    """A dataset line that cannot be used; ``field`` and ``why`` make the 500001 text."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field} {why}")
        self.field = field
        self.why = why


@dataclass(frozen=True, slots=True)
class Case:
    prompt: str
    reference: str
    prediction: str | None


def new_id(prefix: str, length: int = 12) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _text(row: dict[str, Any], keys: tuple[str, ...], where: str, max_chars: int) -> str | None:
    for key in keys:
        if key in row and row[key] is not None:
            value = row[key]
            if not isinstance(value, str):
                raise DatasetInvalid(f"{where}.{key}", "must be a string")
            if len(value) > max_chars:
                raise DatasetInvalid(
                    f"{where}.{key}",
                    f"is longer than {max_chars} characters (setting [qianfan] max_field_chars)",
                )
            return value
    return None


def case_of(row: Any, where: str, max_chars: int) -> Case:
    if not isinstance(row, dict):
        raise DatasetInvalid(where, "must be a JSON object with prompt and reference")
    prompt = _text(row, _PROMPT_KEYS, where, max_chars)
    if prompt is None:
        raise DatasetInvalid(f"{where}.prompt", "is required")
    reference = _text(row, _REFERENCE_KEYS, where, max_chars)
    if reference is None:
        raise DatasetInvalid(f"{where}.reference", "is required")
    prediction = _text(row, ("prediction",), where, max_chars)
    return Case(prompt, reference, prediction)


def parse_cases(rows: list[Any], max_chars: int, max_cases: int) -> list[Case]:
    if not rows:
        raise DatasetInvalid("cases", "must contain at least 1 case")
    if len(rows) > max_cases:
        raise DatasetInvalid(
            "cases", f"has {len(rows)} cases; at most {max_cases} (setting [qianfan] max_cases)"
        )
    return [case_of(row, f"cases[{i}]", max_chars) for i, row in enumerate(rows)]


def decode_json(data: bytes, where: str) -> Any:
    """One JSON text, or :class:`DatasetInvalid` naming ``where``: a syntax error, and
    nesting past the reader's depth (msgspec raises ``RecursionError`` at about 1,000
    levels, which answered 500)."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise DatasetInvalid(where, f"is not JSON ({exc})") from None
    except JSON_ERRORS as exc:
        raise DatasetInvalid(where, f"is not JSON ({json_reason(exc)})") from None


def parse_jsonl(data: bytes, max_chars: int, max_cases: int) -> list[Case]:
    """One JSON object per non-blank line; errors name the 1-based line of the file
    (blank lines counted)."""
    rows: list[tuple[int, Any]] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        if len(rows) >= max_cases:
            raise DatasetInvalid(
                "cases", f"has more than {max_cases} cases (setting [qianfan] max_cases)"
            )
        rows.append((number, decode_json(line, f"line {number}")))
    cases = [case_of(row, f"line {number}", max_chars) for number, row in rows]
    if not cases:
        raise DatasetInvalid("cases", "must contain at least 1 case")
    return cases


def check_name(name: str, field: str = "name") -> None:
    """A dataset's name (or chosen id): present, printable, not path-like."""
    if not name:
        raise DatasetInvalid(field, "is required")
    problem = name_problem(name, field)
    if problem is not None:
        # name_problem's sentence starts with the field; DatasetInvalid puts it first.
        raise DatasetInvalid(field, problem.removeprefix(f"{field} "))


async def insert_dataset(
    tx: Transaction, tenant: str | None, name: str, cases: list[Case], dataset_id: str = ""
) -> dict[str, Any]:
    dataset_id = dataset_id or new_id("ds-")
    with_predictions = all(c.prediction is not None for c in cases)
    created_at = utcnow()
    await tx.execute(
        "INSERT INTO qianfan_datasets VALUES (?, ?, ?, ?, ?, ?)",
        (dataset_id, tenant, name, len(cases), int(with_predictions), created_at),
    )
    await tx.executemany(
        "INSERT INTO qianfan_dataset_cases VALUES (?, ?, ?, ?, ?)",
        [(dataset_id, i, c.prompt, c.reference, c.prediction) for i, c in enumerate(cases)],
    )
    return dataset_view(
        {
            "id": dataset_id,
            "name": name,
            "case_count": len(cases),
            "with_predictions": int(with_predictions),
            "created_at": created_at,
        }
    )


def dataset_view(row: Any) -> dict[str, Any]:
    return {
        "datasetId": row["id"],
        "name": row["name"],
        "caseCount": row["case_count"],
        "withPredictions": bool(row["with_predictions"]),
        "createTime": row["created_at"],
    }
