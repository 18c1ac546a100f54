"""A ``spicepod.yaml``: its evals, datasets, models and embeddings components.

Only what evals use is read (crates/spicepod/src/component/{eval,dataset,model}.rs):

- ``evals: [{name, description, dataset, scorers}]``;
- ``datasets: [{name, from}]`` where ``from`` is ``file:<path>`` (or a bare path) of a
  CSV, JSON Lines, JSON array or parquet file with ``input`` and ``ideal`` columns (and
  ``output``, which the built-in ``replay`` model answers with). Paths are relative to the
  spicepod's folder and must lie inside it or a folder of ``[spice] dataset_dirs``: a
  spicepod never reads an arbitrary server path;
- ``models: [{name, from}]``: routed through the judge engine; the served name is the
  component's name when the judge knows it (``[judge.models]``), else the model part of
  ``from`` (``openai:gpt-4o-mini`` -> ``gpt-4o-mini``);
- ``embeddings: [{name, from}]``: every one is the ``embedder`` engine (by default the
  embedded all-MiniLM-L6-v2), used as a scorer by its name.

Built-in models, so evals run with no language model: ``mock`` (deterministic text) and
``replay`` (the case's ``output`` column).

Dataset files are read within the bounds of :mod:`evaldock.server.tabular`: a CSV is
streamed through its quote scanner (an unterminated quote is an error naming the line it
opened on, not the rest of the file swallowed into one cell; cells up to 16 MiB), a
parquet file's footer is checked (row count, decoded sizes, compression ratio) before a
page is decoded, and JSON nested past Python's reader is an error naming the line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..names import name_problem
from ..tabular import CELL_LIMIT, JSON_ERRORS, CsvScanner, check_parquet, json_reason

BUILTIN_MODELS = ("mock", "replay")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
FORMATS[".parquet"] = "parquet"
# A CSV cell of a dataset may hold a whole chat transcript; the csv module's 128 KiB
# default is too small for some. The scanner refuses a cell past CELL_LIMIT (a runaway
# quote) first, naming the line; this is the csv module's own limit, one past it.
CSV_FIELD_LIMIT = CELL_LIMIT + 1


class SpicepodError(ValueError):
    """The spicepod (or a dataset it names) cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class EvalSpec:
    name: str
    dataset: str
    scorers: tuple[str, ...]
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out.update(dataset=self.dataset, scorers=list(self.scorers))
        return out


@dataclass(frozen=True)
class Component:
    name: str
    source: str  # the component's ``from``


@dataclass
class Spicepod:
    folder: Path
    evals: dict[str, EvalSpec] = field(default_factory=dict)
    datasets: dict[str, Component] = field(default_factory=dict)
    models: dict[str, Component] = field(default_factory=dict)
    embeddings: dict[str, Component] = field(default_factory=dict)


def example_path() -> Path:
    """The spicepod shipped in the package (loaded when ``[spice] spicepod`` is empty)."""
    return Path(str(resources.files("evaldock.server.spice") / "example" / "spicepod.yaml"))


def _components(doc: dict[str, Any], key: str) -> dict[str, Component]:
    out: dict[str, Component] = {}
    for i, item in enumerate(doc.get(key) or []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SpicepodError(f"{key}[{i}] needs a name")
        _check_name(item["name"], f"{key}[{i}]")
        out[item["name"]] = Component(item["name"], str(item.get("from") or ""))
    return out


def _check_name(name: str, where: str) -> None:
    """A spicepod entry's name is shown in listings, logs and eval.runs: refused as the
    API refuses one (control and direction-override characters, path-like names)."""
    problem = name_problem(name, f"the name of {where}")
    if problem is not None:
        raise SpicepodError(f"spicepod: {problem}")


def load(path: Path) -> Spicepod:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise SpicepodError(
            f"cannot read the spicepod {path}: {exc.strerror}; fix [spice] spicepod"
        ) from None
    except yaml.YAMLError as exc:
        raise SpicepodError(f"the spicepod {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise SpicepodError(f"the spicepod {path} must be a YAML mapping")
    pod = Spicepod(
        folder=path.resolve().parent,
        datasets=_components(doc, "datasets"),
        models=_components(doc, "models"),
        embeddings=_components(doc, "embeddings"),
    )
    for i, item in enumerate(doc.get("evals") or []):
        if not isinstance(item, dict):
            raise SpicepodError(f"evals[{i}] must be a mapping")
        name, dataset, scorers = item.get("name"), item.get("dataset"), item.get("scorers")
        if not isinstance(name, str) or not isinstance(dataset, str):
            raise SpicepodError(f"evals[{i}] needs a name and a dataset")
        _check_name(name, f"evals[{i}]")
        if not isinstance(scorers, list) or not all(isinstance(s, str) for s in scorers):
            raise SpicepodError(f"eval '{name}' needs scorers: a list of names")
        description = item.get("description")
        pod.evals[name] = EvalSpec(
            name, dataset, tuple(scorers), str(description) if description is not None else None
        )
    return pod


# -- dataset files ----------------------------------------------------------------------
def resolve_file(source: str, roots: Sequence[Path], base: Path) -> Path:
    """``file:<path>`` (or a bare path), relative to ``base``, as a file inside one of
    ``roots``. An unlisted path and an absent one get the same message, so a caller cannot
    probe which files exist."""
    raw = source.removeprefix("file://").removeprefix("file:")
    refused = SpicepodError(
        f"dataset file '{raw}' is not a readable file under the spicepod's folder or "
        "[spice] dataset_dirs"
    )
    if not raw or "\0" in raw:
        raise refused
    try:
        path = (base / raw).resolve()
    except (OSError, RuntimeError):
        raise refused from None
    if not any(path.is_relative_to(r.resolve()) for r in roots) or not path.is_file():
        raise refused
    if path.suffix.lower() not in FORMATS:
        raise SpicepodError(
            f"dataset file '{raw}' must end in {', '.join(sorted(FORMATS))} (its format)"
        )
    return path


def read_rows(path: Path, max_cases: int) -> list[dict[str, Any]]:
    """The rows of a dataset file: ``input``, ``ideal`` and (when present) ``output``."""
    kind = FORMATS[path.suffix.lower()]
    try:
        if kind == "parquet":
            rows = _parquet(path, max_cases)
        elif kind == "csv":
            # As read_text decodes it (universal newlines), but a line at a time.
            with path.open(encoding="utf-8") as stream:
                rows = _csv(CsvScanner(",").lines(stream), max_cases)
        else:
            rows = _json(path.read_text(encoding="utf-8"), max_cases)
    except SpicepodError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise SpicepodError(f"cannot read dataset file {path.name}: {exc}") from None
    return check_rows(rows, path.name, max_cases)


def check_rows(rows: list[Any], where: str, max_cases: int) -> list[dict[str, Any]]:
    if len(rows) > max_cases:
        raise SpicepodError(f"{where} has more than {max_cases} cases (setting [spice] max_cases)")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SpicepodError(f"{where}: row {i} is not an object")
        for column in ("input", "ideal"):
            if column not in row:
                raise SpicepodError(
                    f"{where}: row {i} has no '{column}' column (it has: "
                    f"{', '.join(sorted(map(str, row))) or 'none'}); a dataset needs input "
                    "and ideal"
                )
        out.append({k: row.get(k) for k in ("input", "ideal", "output")})
    return out


def _csv(lines: Iterable[str], max_cases: int) -> list[dict[str, Any]]:
    """Rows of CSV lines (from :meth:`CsvScanner.lines`), at most one past ``max_cases``."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.DictReader(lines)
    rows: list[dict[str, Any]] = []
    for row in reader:
        rows.append(dict(row))
        if len(rows) > max_cases:
            break
    return rows


def _json(text: str, max_cases: int) -> list[Any]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except RecursionError as exc:
            raise SpicepodError(f"the JSON array is not readable: {json_reason(exc)}") from None
        if not isinstance(value, list):
            raise SpicepodError("a JSON dataset must be an array of objects")
        return value
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except JSON_ERRORS as exc:
            raise SpicepodError(f"line {number} is not JSON: {json_reason(exc)}") from None
        if len(rows) > max_cases:
            break
    return rows


def _parquet(path: Path, max_cases: int) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    # The footer first: the row count, the columns and what they decode to, before any
    # page is (a 13 kB file may hold a 400 MiB cell).
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if parquet.metadata.num_rows > max_cases:
        raise SpicepodError(
            f"{path.name} has more than {max_cases} cases (setting [spice] max_cases)"
        )
    if "ideal" not in names or "input" not in names:
        raise SpicepodError(
            f"{path.name} needs input and ideal columns (it has {', '.join(names)})"
        )
    columns = [c for c in ("input", "ideal", "output") if c in names]
    check_parquet(parquet.metadata, columns=columns)
    rows: list[dict[str, Any]] = parquet.read(columns=columns).to_pylist()
    return rows
