"""The OpenAI surface's tasks: plain functions of picklable inputs, run in worker processes
under the task limits (:mod:`evaldock.server.compute`), never in the API process.

- :func:`store_upload`: a ``files.create`` body parsed into its file (and, for
  ``purpose=evals``, each line checked to be a JSON object);
- :func:`prepare_rows`: a run's rows (inline ``file_content`` or a stored file) checked
  against the eval's ``item_schema``, written as the run's own JSON Lines file;
- :func:`render_inputs`: a ``completions``/``responses`` run's ``input_messages``
  rendered per row (the API process reads them back a chunk at a time and generates);
- :func:`render_grader_inputs`: the messages of each ``score_model``/``label_model``
  criterion per row (the API process asks the judge);
- :func:`python_grades`: one ``python`` criterion over every row, under its own limits;
- :func:`grade_rows`: every testing criterion over every row (the model and python
  graders' outcomes read from their files), the output items written as JSON Lines for
  the API process to commit;
- :func:`run_grader`: one ``graders.run`` call.

Every step grows with the input (a 512 MB upload, 200,000 rows, a 1 MB sample scored by
METEOR), so none of them runs on the event loop.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaldock.engines.errors import EngineError
from evaldock.engines.protocols import Embedder
from evaldock.engines.text_metrics import similarity

from .. import jsonio
from ..compute import TaskContext
from ..compute.pool import retire_worker
from . import formula, graders, pygrade, sampling
from .uploads import UploadInvalid, parse_upload

# Rows per progress report while grading.
PROGRESS_EVERY = 2000
# One row of an evals file: 16 MB is far past a real row (a long document and its
# answer), and bounds what one line may make a worker hold.
MAX_LINE_BYTES = 16 * 1024 * 1024
# Pairs per embedder call of a cosine criterion: bounded memory, one call per chunk.
COSINE_CHUNK = 4096
ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0}


class RowsInvalid(ValueError):
    """A row the run cannot take; the message names it and says what is off."""


# -- files ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredFile:
    filename: str
    size: int
    fields: dict[str, str]


def store_upload(ctx: TaskContext, body: str, content_type: str, target: str) -> StoredFile:
    """Parse the upload in ``body``; its file goes to ``target``. A ``purpose=evals``
    file must be JSON Lines of objects (UploadInvalid names the first line that is not)."""
    upload = parse_upload(Path(body), content_type, Path(target))
    if upload.fields.get("purpose") == "evals":
        try:
            for _ in _json_lines(Path(target)):
                pass
        except RowsInvalid as exc:
            Path(target).unlink(missing_ok=True)
            raise UploadInvalid(f"a purpose=evals file must be JSON Lines: {exc}") from None
    return StoredFile(upload.filename or "upload", upload.size, upload.fields)


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; a line is read up to
    :data:`MAX_LINE_BYTES` (memory stays bounded whatever the file holds)."""
    with path.open("rb") as fh:
        number = 0
        while True:
            line = fh.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_BYTES:
                raise RowsInvalid(
                    f"line {number} is over {MAX_LINE_BYTES // (1024 * 1024)} MB; a row of an "
                    "evals file is one JSON object a line, each under that"
                )
            if not line.strip():
                continue
            try:
                value = jsonio.decode(line)
            except ValueError:
                raise RowsInvalid(f"line {number} is not JSON") from None
            except RecursionError:
                raise RowsInvalid(
                    f"line {number} nests deeper than the JSON decoder allows; flatten it"
                ) from None
            if not isinstance(value, dict):
                raise RowsInvalid(f"line {number} is not a JSON object")
            yield number, value


# -- a run's rows -----------------------------------------------------------------------------
def prepare_rows(
    ctx: TaskContext,
    content: list[Any] | None,
    file_path: str | None,
    file_id: str,
    item_schema: dict[str, Any],
    target: str,
    max_rows: int,
) -> int:
    """Check the run's rows (``content``, or the JSON Lines at ``file_path``) and write
    them to ``target``, one ``{"item", "sample"?}`` a line; the number of rows."""
    import jsonschema

    validator = jsonschema.validators.validator_for(item_schema)(item_schema)
    if content is not None:
        rows: Iterator[tuple[str, Any]] = ((f"row {i}", r) for i, r in enumerate(content))
    else:
        assert file_path is not None
        rows = (
            (f"row {i} (line {n} of {file_id})", r)
            for i, (n, r) in enumerate(_json_lines(Path(file_path)))
        )
    part = Path(target + ".part")
    count = 0
    with part.open("wb") as out:
        for where, row in rows:
            if count >= max_rows:
                part.unlink(missing_ok=True)
                raise RowsInvalid(
                    f"the data source has more than {max_rows} rows (setting [openai] "
                    "max_rows); split it into several runs"
                )
            out.write(jsonio.encode(_checked_row(where, row, validator)) + b"\n")
            count += 1
    if count == 0:
        part.unlink(missing_ok=True)
        raise RowsInvalid('the data source has no rows; give at least one {"item": {...}}')
    os.replace(part, target)
    return count


def _checked_row(where: str, row: Any, validator: Any) -> dict[str, Any]:
    if not isinstance(row, dict) or not isinstance(row.get("item"), dict):
        raise RowsInvalid(
            f'{where} has no "item" object: each row is {{"item": {{...}}, "sample": {{...}}}}'
            " (sample optional)"
        )
    extra = sorted(set(row) - {"item", "sample"})
    if extra:
        raise RowsInvalid(f'{where} has keys besides "item" and "sample": {", ".join(extra)}')
    sample = row.get("sample")
    if sample is not None and not isinstance(sample, dict):
        raise RowsInvalid(f'{where}: "sample" must be an object (e.g. {{"output_text": "..."}})')
    try:
        error = next(iter(validator.iter_errors(row["item"])), None)
    except RecursionError:
        raise RowsInvalid(
            f"{where}: item nests too deeply to check against the item_schema"
        ) from None
    if error is not None:
        at = "item" + "".join(f"[{p!r}]" for p in error.absolute_path)
        raise RowsInvalid(
            f"{where}: {at} does not match the eval's item_schema: {error.message[:300]}"
        )
    out: dict[str, Any] = {"item": row["item"]}
    if sample is not None:
        out["sample"] = sample
    return out


def read_rows(path: str) -> list[dict[str, Any]]:
    with open(path, "rb") as fh:
        return [jsonio.decode(line) for line in fh if line.strip()]


def _lines(path: str | None) -> Iterator[Any]:
    """Each JSON line of ``path``; None forever when there is no file."""
    if path is None:
        while True:
            yield None
    with open(path, "rb") as fh:
        for line in fh:
            yield jsonio.decode(line)
    while True:  # a file cut short (a killed python grader): the rest is missing
        yield None


@dataclass(frozen=True)
class RowSample:
    """A row and the sample graders read: the row's own, or the generated one."""

    row: dict[str, Any]
    namespace: dict[str, Any] | None  # {{sample.*}}
    item_sample: dict[str, Any] | None  # the output item's sample
    error: str | None  # why no sample could be generated


def row_samples(rows_path: str, samples_path: str | None) -> Iterator[RowSample]:
    with open(rows_path, "rb") as fh:
        for row_line, generated in zip(fh, _lines(samples_path), strict=False):
            row = jsonio.decode(row_line)
            if samples_path is None:
                yield RowSample(row, row.get("sample"), output_sample(row.get("sample")), None)
            else:
                yield RowSample(row, generated["ns"], generated["sample"], generated["error"])


# -- generation and model graders: prompts out, answers back -------------------------------
def render_inputs(ctx: TaskContext, rows_path: str, spec: dict[str, Any], out_path: str) -> int:
    """Each row's messages for the model, ``{"messages": [...]}`` or ``{"error": why}``
    a line; the number of rows."""
    count = 0
    with open(rows_path, "rb") as rows, open(out_path, "wb") as out:
        for line in rows:
            item = jsonio.decode(line)["item"]
            try:
                answer: dict[str, Any] = {"messages": sampling.render_input(spec, item)}
            except graders.MissingVariable as exc:
                answer = {"error": f"the row has no {exc.args[0]} (named by input_messages)"}
            except ValueError as exc:
                answer = {"error": f"input_messages: {exc}"}
            out.write(jsonio.encode(answer) + b"\n")
            count += 1
    return count


def render_grader_inputs(
    ctx: TaskContext,
    rows_path: str,
    samples_path: str | None,
    criteria: list[dict[str, Any]],
    out_path: str,
) -> int:
    """Per row, per model criterion: ``{"messages", "output"}`` to ask the judge, or
    ``{"error"}`` (a variable the row lacks, no sample); one JSON object a line."""
    count = 0
    with open(out_path, "wb") as out:
        for found in row_samples(rows_path, samples_path):
            line: dict[str, Any] = {}
            names = {"item": found.row["item"], "sample": found.namespace}
            for criterion in criteria:
                if found.error is not None:
                    line[criterion["id"]] = {"error": f"no sample to grade: {found.error}"}
                    continue
                try:
                    messages = graders.render_messages(criterion["input"], names)
                except graders.MissingVariable as exc:
                    line[criterion["id"]] = {
                        "error": f"the row has no {exc.args[0]} (named by a template)"
                    }
                    continue
                output = graders.text_of((found.namespace or {}).get("output_text") or "")
                line[criterion["id"]] = {"messages": messages, "output": output}
            out.write(jsonio.encode(line) + b"\n")
            count += 1
    return count


# User code runs in a worker no later task shares: the pool retires it afterwards.
@retire_worker
def python_grades(
    ctx: TaskContext,
    rows_path: str,
    samples_path: str | None,
    criterion: dict[str, Any],
    out_path: str,
) -> int:
    """One python criterion over every row (see :mod:`.pygrade`); the rows graded."""
    rows = (
        (f.row["item"], None if f.error is not None else f.namespace)
        for f in row_samples(rows_path, samples_path)
    )
    with open(out_path, "wb") as out:
        return pygrade.grade_all(criterion, rows, out, criterion["id"])


def read_chunk(fh: Any, size: int) -> list[Any]:
    """Up to ``size`` JSON lines from an open file (the API process's chunks)."""
    out = []
    for _ in range(size):
        line = fh.readline()
        if not line:
            break
        out.append(jsonio.decode(line))
    return out


def write_lines(fh: Any, lines: list[Any]) -> None:
    fh.write(b"".join(jsonio.encode(x) + b"\n" for x in lines))
    fh.flush()


# -- grading ---------------------------------------------------------------------------------
@dataclass
class Graded:
    """What :func:`grade_rows` answers; the items themselves are in its output file."""

    total: int
    passed: int
    failed: int
    errored: int
    per_criteria: dict[str, list[int]] = field(default_factory=dict)  # id -> [passed, failed]
    signatures: dict[str, str] = field(default_factory=dict)  # id -> signature


def output_sample(sample: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An output item's ``sample`` from a row's supplied sample (nothing was generated, so
    the sampling fields are null where the row gives none)."""
    if sample is None:
        return None
    output = sample.get("output")
    if not isinstance(output, list):
        text = sample.get("output_text")
        choices = sample.get("choices")
        if text is None and isinstance(choices, list) and choices:
            message = choices[0].get("message") if isinstance(choices[0], dict) else None
            text = message.get("content") if isinstance(message, dict) else None
        output = [{"role": "assistant", "content": graders.text_of(text or "")}]
    return {
        "input": sample.get("input") if isinstance(sample.get("input"), list) else [],
        "output": output,
        "finish_reason": sample.get("finish_reason", ""),
        "model": sample.get("model", ""),
        "usage": sample.get("usage") if isinstance(sample.get("usage"), dict) else ZERO_USAGE,
        "error": None,
        "temperature": sample.get("temperature"),
        "max_completion_tokens": sample.get("max_completion_tokens"),
        "top_p": sample.get("top_p"),
        "seed": sample.get("seed"),
    }


def _namespaces(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"item": row["item"], "sample": row.get("sample")}


def _cosine(
    ctx: TaskContext, criterion: Mapping[str, Any], rows: list[dict[str, Any]]
) -> tuple[list[graders.Outcome], str]:
    pairs: list[tuple[str, str] | None] = []
    for row in rows:
        try:
            pairs.append(graders.pair(criterion, _namespaces(row)))
        except graders.MissingVariable:
            pairs.append(None)
    embedder = ctx.engine("embedder", Embedder)
    scored = [(i, p) for i, p in enumerate(pairs) if p is not None]
    scores: dict[int, float] = {}
    for start in range(0, len(scored), COSINE_CHUNK):
        chunk = scored[start : start + COSINE_CHUNK]
        values = similarity.cosine_scores(
            embedder, [p[0] for _, p in chunk], [p[1] for _, p in chunk]
        )
        scores.update((i, v) for (i, _), v in zip(chunk, values, strict=True))
    out = [
        graders.Outcome(scores[i], graders.passed(criterion, scores[i]))
        if i in scores
        else graders.Outcome(0.0, False, "a template names a variable the row does not have")
        for i in range(len(rows))
    ]
    return out, str(embedder.signature)


def _outcome_dict(outcome: graders.Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {"score": outcome.score, "passed": outcome.passed}
    if outcome.error is not None:
        out["error"] = outcome.error
    return out


def _computed_elsewhere(
    criteria: list[dict[str, Any]],
    total: int,
    outcomes_paths: list[str],
    missing: Mapping[str, str],
) -> dict[str, list[dict[str, Any]]]:
    """The outcomes of the model and python criteria, read from their row-aligned files
    (``{criterion id: outcome}`` a line); a row a file lacks is errored with
    ``missing[criterion id]`` (the limit that stopped a python grader)."""
    ids = [c["id"] for c in criteria if c["type"] in (*graders.MODEL_GRADERS, "python")]
    out: dict[str, list[dict[str, Any]]] = {cid: [] for cid in ids}
    readers = [_lines(p) for p in outcomes_paths]
    for _ in range(total):
        line: dict[str, Any] = {}
        for reader in readers:
            line.update(next(reader) or {})
        for cid in ids:
            reason = missing.get(cid, "not graded")
            out[cid].append(line.get(cid) or {"score": 0.0, "passed": False, "error": reason})
    return out


def grade_rows(
    ctx: TaskContext,
    rows_path: str,
    criteria: list[dict[str, Any]],
    wordnet_dir: str,
    out_path: str,
    samples_path: str | None = None,
    outcomes_paths: list[str] | None = None,
    missing: dict[str, str] | None = None,
    signatures: dict[str, str] | None = None,
) -> Graded:
    """Every criterion over every row; the output items go to ``out_path`` as JSON Lines
    of ``{idx, id, status, item, results, sample}``. ``samples_path``: the generated
    samples (a completions/responses run); ``outcomes_paths``: the model and python
    criteria's outcomes, computed before. An engine failure (the embedder of a cosine
    criterion) is a RowsInvalid naming the criterion."""
    found_rows = list(row_samples(rows_path, samples_path))
    rows = [{"item": f.row["item"], "sample": f.namespace} for f in found_rows]
    total = len(rows)
    elsewhere = _computed_elsewhere(criteria, total, outcomes_paths or [], missing or {})
    outcomes: list[list[dict[str, Any]]] = []
    signed: dict[str, str] = {}
    for number, criterion in enumerate(criteria):
        cid = criterion["id"]
        if cid in elsewhere:
            found = elsewhere[cid]
            signed[cid] = graders.signature(criterion, wordnet_dir, (signatures or {}).get(cid, ""))
        elif criterion.get("evaluation_metric") == "cosine":
            try:
                cosine, embedder = _cosine(ctx, criterion, rows)
            except (EngineError, LookupError, ValueError) as exc:
                raise RowsInvalid(f"criterion {cid!r} (cosine): {exc}") from None
            found = [_outcome_dict(o) for o in cosine]
            signed[cid] = graders.signature(criterion, wordnet_dir, embedder)
        else:
            found = []
            for i, row in enumerate(rows):
                found.append(_outcome_dict(graders.grade(criterion, row, wordnet_dir)))
                if (i + 1) % PROGRESS_EVERY == 0:
                    ctx.progress((number * total + i + 1) // len(criteria), total)
            signed[cid] = graders.signature(criterion, wordnet_dir)
        outcomes.append(found)
    graded = Graded(total, 0, 0, 0, {c["id"]: [0, 0] for c in criteria}, signed)
    now = int(time.time())
    part = Path(out_path + ".part")
    with part.open("wb") as out:
        for idx, row_found in enumerate(found_rows):
            results = []
            errored = False
            for criterion, found in zip(criteria, outcomes, strict=True):
                outcome = found[idx]
                if row_found.error is not None:
                    outcome = {
                        "score": 0.0,
                        "passed": False,
                        "error": f"no sample to grade: {row_found.error}",
                    }
                result: dict[str, Any] = {
                    "name": criterion["id"],
                    "type": criterion["type"],
                    "score": outcome["score"],
                    "passed": outcome["passed"],
                    "sample": outcome.get("sample"),
                }
                result.update(
                    (k, v) for k, v in outcome.items() if k not in ("score", "passed", "sample")
                )
                if "error" in outcome:
                    errored = True
                graded.per_criteria[criterion["id"]][0 if outcome["passed"] else 1] += 1
                results.append(result)
            ok = all(r["passed"] for r in results)
            if errored:
                graded.errored += 1
            elif ok:
                graded.passed += 1
            else:
                graded.failed += 1
            item = {
                "idx": idx,
                "id": "outputitem_" + secrets.token_hex(16),
                "status": "pass" if ok else "fail",
                "item": row_found.row["item"],
                "results": results,
                "sample": row_found.item_sample,
                "created_at": now,
            }
            out.write(jsonio.encode(item) + b"\n")
    os.replace(part, out_path)
    ctx.progress(total, total)
    return graded


def read_items(path: str, chunk: int) -> Iterator[list[dict[str, Any]]]:
    """The graded items ``chunk`` at a time (the API process commits them)."""
    batch: list[dict[str, Any]] = []
    with open(path, "rb") as fh:
        for line in fh:
            batch.append(jsonio.decode(line))
            if len(batch) >= chunk:
                yield batch
                batch = []
    if batch:
        yield batch


# -- graders.run ------------------------------------------------------------------------------
ERROR_FLAGS = (
    "formula_parse_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
    "invalid_variable_error",
    "other_error",
    "python_grader_server_error",
    "python_grader_runtime_error",
    "model_grader_server_error",
    "model_grader_refusal_error",
    "model_grader_parse_error",
)


def graders_run_sample(model_sample: str) -> dict[str, Any]:
    """``graders.run``'s sample namespace: ``output_text``, and ``output_json`` when the
    sample is JSON."""
    sample: dict[str, Any] = {"output_text": model_sample}
    with contextlib.suppress(ValueError):
        sample["output_json"] = json.loads(model_sample)
    return sample


def run_grader(
    ctx: TaskContext,
    grader: dict[str, Any],
    model_sample: str,
    item: Any,
    wordnet_dir: str,
    computed: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``graders.run``: the reward of ``grader`` on ``model_sample`` with ``item``.
    ``computed``: the outcomes of model and python graders, by multi key ("" for the
    grader itself), computed before (the judge lives in the API process; python code in
    a task of its own)."""
    started = time.perf_counter()
    namespaces = {
        "item": item if item is not None else {},
        "sample": graders_run_sample(model_sample),
    }
    errors: dict[str, Any] = dict.fromkeys(ERROR_FLAGS, False)
    errors.update(python_grader_server_error_type=None, python_grader_runtime_error_details=None)
    errors.update(model_grader_server_error_details=None)
    computed = computed or {}

    def one(key: str, sub: Mapping[str, Any]) -> float:
        found = computed.get(key)
        if found is None:
            outcome = graders.grade(sub, namespaces, wordnet_dir)
            if outcome.error is not None:
                errors["invalid_variable_error"] = True
            return outcome.score
        error = found.get("error")
        if error:
            if sub["type"] == "python":
                errors["python_grader_runtime_error"] = True
                errors["python_grader_runtime_error_details"] = error
            elif "has no" in error:
                errors["invalid_variable_error"] = True
            else:
                errors["model_grader_parse_error"] = True
                errors["model_grader_server_error_details"] = error
        return float(found["score"])

    sub_rewards: dict[str, float] = {}
    if grader["type"] == "multi":
        for key, sub in graders.sub_graders(grader).items():
            sub_rewards[key] = one(key, sub)
        try:
            reward = formula.evaluate(
                formula.parse(grader["calculate_output"], set(sub_rewards)), sub_rewards
            )
        except formula.FormulaError as exc:
            errors["other_error"] = True
            errors["other_error_details"] = str(exc)
            reward = 0.0
        scores: dict[str, float] = dict(sub_rewards)
    else:
        reward = one("", grader)
        scores = {}
    return {
        "reward": reward,
        "metadata": {
            "name": grader.get("name", ""),
            "type": grader["type"],
            "errors": errors,
            "execution_time": time.perf_counter() - started,
            "scores": scores,
            "token_usage": None,
            "sampled_model_name": None,
        },
        "sub_rewards": sub_rewards,
        "model_grader_token_usage_per_model": {},
    }


@retire_worker
def python_grade_one(
    ctx: TaskContext, criterion: dict[str, Any], sample: dict[str, Any], item: Any
) -> dict[str, Any]:
    """``graders.run`` of a python grader (a task of its own, under the python limits)."""
    buffer = io.BytesIO()
    pygrade.grade_all(criterion, [(item if item is not None else {}, sample)], buffer)
    return dict(jsonio.decode(buffer.getvalue()))
