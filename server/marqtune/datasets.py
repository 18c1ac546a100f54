"""Dataset files: checked against their ``dataSchema`` and parsed into one normal form.

Pure functions (no database, no server); every failure is a :class:`DatasetInvalid`
whose message names the row, column or file to fix. Two evaluation forms (see the spec's
description for the user-facing version):

- CSV: one row per (query, document) judgement. Without a ``doc_id`` column a document
  is identified by its result-column values (:func:`derived_doc_id`).
- tar: ``queries.csv`` (query columns, the ``doc_id`` column, score columns) and
  ``documents.jsonl`` (the ``doc_id`` column and result columns, one object a line).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec

TEXT, IMAGE, SCORE, DOC_ID = "text", "image_pointer", "score", "doc_id"
FIELD_TYPES = (TEXT, IMAGE)
QUERIES_FILE, DOCUMENTS_FILE = "queries.csv", "documents.jsonl"
# Kept in URLs by normalisation: reserved characters and existing escapes.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


class DatasetInvalid(ValueError):
    """The file does not fit the dataset's schema; the message says what to fix."""


class ParsedDataset(msgspec.Struct):
    """An evaluation dataset in normal form (stored as JSON beside the upload).

    Judgement row ``i`` is ``queries[i]`` (query-column values) judged against document
    ``doc_ids[i]`` with ``scores[column][i]``; the corpus is ``documents`` (ids) with
    ``fields`` (result-column values), which may hold documents no query row names.
    """

    format: str
    query_columns: list[str]
    result_columns: list[str]
    kinds: dict[str, str]  # field column -> "text" | "image" (the ranker's kinds)
    queries: list[dict[str, str]]
    doc_ids: list[str]
    scores: dict[str, list[float]]
    documents: list[str]
    fields: list[dict[str, str]]

    def stats(self) -> dict[str, int]:
        distinct = {tuple(q[c] for c in self.query_columns) for q in self.queries}
        return {
            "rowCount": len(self.doc_ids),
            "queryCount": len(distinct),
            "documentCount": len(self.documents),
        }


@dataclass(frozen=True)
class Schema:
    dataset_type: str
    columns: dict[str, str]
    query_columns: list[str]
    result_columns: list[str]
    normalize_urls: bool = True

    @property
    def doc_id_column(self) -> str | None:
        found = [c for c, t in self.columns.items() if t == DOC_ID]
        return found[0] if found else None

    @property
    def score_columns(self) -> list[str]:
        return [c for c, t in self.columns.items() if t == SCORE]

    @property
    def kinds(self) -> dict[str, str]:
        return {
            c: "image" if t == IMAGE else "text"
            for c, t in self.columns.items()
            if t in FIELD_TYPES
        }


def check_schema(schema: Schema) -> None:
    """What ``POST /datasets`` rejects with a 400 (raises ValueError with the message)."""
    doc_ids = [c for c, t in schema.columns.items() if t == DOC_ID]
    if len(doc_ids) > 1:
        raise ValueError(
            f"dataSchema may have one doc_id column, not {len(doc_ids)}: " + ", ".join(doc_ids)
        )
    if schema.dataset_type != "evaluation":
        return
    if not schema.query_columns or not schema.result_columns:
        raise ValueError("queryColumns and resultColumns are required for evaluation datasets")
    for name, columns in (
        ("queryColumns", schema.query_columns),
        ("resultColumns", schema.result_columns),
    ):
        unknown = [c for c in columns if c not in schema.columns]
        if unknown:
            raise ValueError(f"{name} names columns missing from dataSchema: {', '.join(unknown)}")
        wrong = [c for c in columns if schema.columns[c] not in FIELD_TYPES]
        if wrong:
            raise ValueError(
                f"{name} must be text or image_pointer columns; "
                + ", ".join(f"{c} is {schema.columns[c]}" for c in wrong)
            )
    both = sorted(set(schema.query_columns) & set(schema.result_columns))
    if both:
        raise ValueError(f"columns cannot be both query and result columns: {', '.join(both)}")


def derived_doc_id(values: Sequence[str]) -> str:
    """A document's id when the schema has no doc_id column: its result values, hashed.

    Prefixed so it never equals a query id (GCL drops a retrieved document whose id equals
    the query's).
    """
    digest = hashlib.sha256(json.dumps(list(values), ensure_ascii=False).encode()).hexdigest()
    return "doc-" + digest[:16]


def normalise_url(value: str) -> str:
    value = value.strip()
    if value.lower().startswith(("http://", "https://")):
        return quote(value, safe=_URL_SAFE)
    return value


def parse(data: bytes, schema: Schema) -> tuple[str, ParsedDataset | None, dict[str, int]]:
    """(file format, parsed evaluation dataset or None for training, stats)."""
    if not data.strip():
        raise DatasetInvalid("The uploaded file is empty")
    if _is_tar(data):
        if schema.dataset_type != "evaluation":
            raise DatasetInvalid(
                "Training datasets must be a CSV file; the upload is a tar archive"
            )
        parsed = _parse_tar(data, schema)
        return "tar", parsed, parsed.stats()
    rows = _read_csv(data, "The file", list(schema.columns))
    if schema.dataset_type != "evaluation":
        for line, row in rows:
            _scores(row, schema.score_columns, line, "The file")
        return "csv", None, {"rowCount": len(rows)}
    parsed = _parse_csv_rows(rows, schema)
    return "csv", parsed, parsed.stats()


def _is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*"):
            return True
    except (tarfile.TarError, EOFError, OSError):
        return False


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetInvalid(
            f"{where} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV"
        ) from None


def _read_csv(data: bytes, where: str, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    text = _decode(data, where)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetInvalid(f"{where} is empty") from None
    except csv.Error as exc:
        raise DatasetInvalid(f"{where} is not valid CSV: {exc}") from None
    header = [h.strip() for h in header]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DatasetInvalid(f"{where} repeats header columns: {', '.join(dupes)}")
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetInvalid(
            f"{where} lacks columns named in dataSchema: {', '.join(missing)} "
            f"(its header has: {', '.join(header)})"
        )
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank lines, as pandas skips them
            line = reader.line_num
            if len(values) != len(header):
                raise DatasetInvalid(
                    f"{where} line {line} has {len(values)} fields; the header has {len(header)}"
                )
            rows.append((line, dict(zip(header, values, strict=True))))
    except csv.Error as exc:
        raise DatasetInvalid(
            f"{where} is not valid CSV near line {reader.line_num}: {exc}"
        ) from None
    if not rows:
        raise DatasetInvalid(f"{where} has a header but no rows")
    return rows


def _scores(row: Mapping[str, str], columns: Sequence[str], line: int, where: str) -> list[float]:
    out = []
    for c in columns:
        raw = (row.get(c) or "").strip()
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            shown = f"'{raw}'" if raw else "empty"
            raise DatasetInvalid(
                f"{where} line {line}: score column '{c}' is {shown}; it must be a number"
            )
        out.append(value)
    return out


def _field_values(row: Mapping[str, Any], columns: Sequence[str], schema: Schema) -> dict[str, str]:
    out = {}
    for c in columns:
        value = row.get(c)
        text = "" if value is None else (value if isinstance(value, str) else str(value))
        if schema.columns[c] == IMAGE:
            text = normalise_url(text) if schema.normalize_urls else text.strip()
        out[c] = text
    return out


def _parse_csv_rows(rows: list[tuple[int, dict[str, str]]], schema: Schema) -> ParsedDataset:
    doc_col = schema.doc_id_column
    queries: list[dict[str, str]] = []
    doc_ids: list[str] = []
    scores: dict[str, list[float]] = {c: [] for c in schema.score_columns}
    index: dict[str, int] = {}
    documents: list[str] = []
    fields: list[dict[str, str]] = []
    for line, row in rows:
        query = _field_values(row, schema.query_columns, schema)
        if not any(query.values()):
            raise DatasetInvalid(
                f"The file line {line} has no value in any query column "
                f"({', '.join(schema.query_columns)})"
            )
        doc = _field_values(row, schema.result_columns, schema)
        if not any(doc.values()):
            raise DatasetInvalid(
                f"The file line {line} has no value in any result column "
                f"({', '.join(schema.result_columns)})"
            )
        if doc_col:
            doc_id = row[doc_col].strip()
            if not doc_id:
                raise DatasetInvalid(f"The file line {line}: doc_id column '{doc_col}' is empty")
        else:
            doc_id = derived_doc_id([doc[c] for c in schema.result_columns])
        for c, v in zip(scores, _scores(row, schema.score_columns, line, "The file"), strict=True):
            scores[c].append(v)
        if doc_id not in index:  # a repeated doc_id keeps its first row's values
            index[doc_id] = len(documents)
            documents.append(doc_id)
            fields.append(doc)
        queries.append(query)
        doc_ids.append(doc_id)
    return ParsedDataset(
        format="csv",
        query_columns=list(schema.query_columns),
        result_columns=list(schema.result_columns),
        kinds=schema.kinds,
        queries=queries,
        doc_ids=doc_ids,
        scores=scores,
        documents=documents,
        fields=fields,
    )


def _members(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            if not member.isfile() or name.rpartition("/")[2].startswith("._"):
                continue  # directories and macOS resource forks
            handle = tar.extractfile(member)
            out[name] = handle.read() if handle else b""
    return out


def _parse_tar(data: bytes, schema: Schema) -> ParsedDataset:
    doc_col = schema.doc_id_column
    if doc_col is None:
        raise DatasetInvalid(
            "A tar dataset links queries.csv rows to documents.jsonl through a doc_id column; "
            "add one column of type doc_id to dataSchema"
        )
    members = _members(data)
    missing = [n for n in (QUERIES_FILE, DOCUMENTS_FILE) if n not in members]
    if missing:
        raise DatasetInvalid(
            f"The tar archive must hold {QUERIES_FILE} and {DOCUMENTS_FILE} at its top level; "
            f"missing {', '.join(missing)} (found: {', '.join(sorted(members)) or 'nothing'})"
        )
    documents: list[str] = []
    fields: list[dict[str, str]] = []
    index: dict[str, int] = {}
    seen_columns: set[str] = set()
    text = _decode(members[DOCUMENTS_FILE], DOCUMENTS_FILE)
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetInvalid(f"{DOCUMENTS_FILE} line {number} is not JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise DatasetInvalid(f"{DOCUMENTS_FILE} line {number} is not a JSON object")
        raw_id = obj.get(doc_col)
        if raw_id is None or not str(raw_id).strip():
            raise DatasetInvalid(f"{DOCUMENTS_FILE} line {number} has no '{doc_col}' (doc_id)")
        doc_id = str(raw_id).strip()
        if doc_id in index:
            raise DatasetInvalid(f"{DOCUMENTS_FILE} line {number} repeats doc_id '{doc_id}'")
        seen_columns.update(k for k in obj if obj[k] is not None)
        index[doc_id] = len(documents)
        documents.append(doc_id)
        fields.append(_field_values(obj, schema.result_columns, schema))
    if not documents:
        raise DatasetInvalid(f"{DOCUMENTS_FILE} has no documents")
    absent = [c for c in schema.result_columns if c not in seen_columns]
    if absent:
        raise DatasetInvalid(
            f"No document in {DOCUMENTS_FILE} has the result columns {', '.join(absent)}"
        )
    required = [*schema.query_columns, doc_col, *schema.score_columns]
    rows = _read_csv(members[QUERIES_FILE], QUERIES_FILE, required)
    queries: list[dict[str, str]] = []
    doc_ids: list[str] = []
    scores: dict[str, list[float]] = {c: [] for c in schema.score_columns}
    for line, row in rows:
        query = _field_values(row, schema.query_columns, schema)
        if not any(query.values()):
            raise DatasetInvalid(f"{QUERIES_FILE} line {line} has no value in any query column")
        doc_id = row[doc_col].strip()
        if doc_id not in index:
            raise DatasetInvalid(
                f"{QUERIES_FILE} line {line}: doc_id '{doc_id}' is not in {DOCUMENTS_FILE}"
            )
        for c, v in zip(
            scores, _scores(row, schema.score_columns, line, QUERIES_FILE), strict=True
        ):
            scores[c].append(v)
        queries.append(query)
        doc_ids.append(doc_id)
    return ParsedDataset(
        format="tar",
        query_columns=list(schema.query_columns),
        result_columns=list(schema.result_columns),
        kinds=schema.kinds,
        queries=queries,
        doc_ids=doc_ids,
        scores=scores,
        documents=documents,
        fields=fields,
    )


def iter_columns(parsed: ParsedDataset, columns: Sequence[str]) -> Iterator[list[str]]:
    """Per query column, its value on every judgement row."""
    for c in columns:
        yield [q.get(c, "") for q in parsed.queries]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ParsedDataset)


def dump(parsed: ParsedDataset) -> bytes:
    return _encoder.encode(parsed)


def load(data: bytes) -> ParsedDataset:
    return _decoder.decode(data)
