"""The OpenAI surface's rules and state: files, evals, runs (run as jobs), output items,
the Graders API and reset.

The provider parses and renders; this decides, stores (:mod:`.store`) and hands every
step that grows with the input to a worker process (:mod:`.jobs`): parsing an upload,
checking a run's rows against the eval's schema, rendering prompts, grading,
``graders.run``. What stays here is bounded: the checks of one eval's definition, the
judge's HTTP calls (generation for ``completions``/``responses`` runs and the model
graders, ``[openai] concurrency`` in flight, 512 rows a step) and the commit of
a run's items, a chunk at a time, in one transaction with the run's counts (a run cut off
by a restart is generated and graded again from its rows file; the judge's cache answers
what it already asked).

A run's job: (1) a ``completions``/``responses`` run renders its ``input_messages`` per
row (task) and generates each row's sample here; (2) the ``score_model``/``label_model``
criteria's messages are rendered (task) and judged here; (3) each ``python`` criterion
runs in a task of its own under the python limits; (4) one task grades every other
criterion and writes the output items with all outcomes; (5) the commit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.judge.base import UnknownModel
from evaldock.engines.protocols import Judge

from .. import jsonio
from ..backend import Backend, BackendContext, TaskFailed
from ..capability import CapabilitySigner
from ..compute import TaskLimits
from ..datadir import private_dir
from ..jobs import Job, JobFailed
from ..names import name_problem
from . import graders, jobs, modelgrade, sampling
from .errors import OpenAIError, bad_request, not_found
from .settings import OpenAISettings
from .store import JOB_KIND, OpenAIStore, Page, Run, criterion_id, new_file_id, new_id, now
from .uploads import UploadInvalid, boundary_of

log = logging.getLogger("evaldock.openai")

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# An item_schema is a JSON schema of one row's item: 256 KiB is far past any real one and
# keeps its check on the event loop bounded.
MAX_SCHEMA_BYTES = 256 * 1024
# Output items committed per chunk of a run's one transaction (reads go on between).
COMMIT_CHUNK = 2000
# Rows a run generates or judges per step: prompts read back, 512 answers awaited
# ([openai] concurrency in flight), written, progress committed.
CHUNK_ROWS = 512
EXPIRES_SECONDS = (3600, 2_592_000)  # OpenAI's expires_after bounds: 1 hour to 30 days
LOGS_ALTERNATIVE = (
    "evaldock holds no logs stored at OpenAI: export the logged items (and their outputs) "
    'to a JSON Lines file of {"item": {...}, "sample": {"output_text": "..."}} rows, '
    "upload it with files.create(purpose='evals'), and run a jsonl data source "
    '{"type": "jsonl", "source": {"type": "file_id", "id": "file-..."}} against an eval '
    'whose data_source_config is {"type": "custom", "item_schema": {...}}'
)


class OpenAIBackend(Backend[OpenAISettings]):
    def __init__(self, ctx: BackendContext[OpenAISettings]) -> None:
        super().__init__(ctx)
        self.store = OpenAIStore(self.db, self.runner)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def files_dir(self) -> Path:
        return self.ctx.data_dir / "files"

    @property
    def runs_dir(self) -> Path:
        """A run's rows and graded items wait here between its steps."""
        return self.ctx.data_dir / "runs"

    def _run_file(self, run_id: str, what: str) -> Path:
        """A run's file between its steps: rows, prompts, samples, judged, items, ..."""
        return self.runs_dir / f"{run_id}.{what}.jsonl"

    def _rows_file(self, run_id: str) -> Path:
        return self._run_file(run_id, "rows")

    def _items_file(self, run_id: str) -> Path:
        return self._run_file(run_id, "items")

    def _remove_run_files(self, run_id: str) -> None:
        for path in self.runs_dir.glob(f"{run_id}.*"):
            path.unlink(missing_ok=True)

    @property
    def signer(self) -> CapabilitySigner:
        """Signs and checks ``report_url`` (the secret is loaded before any request)."""
        return CapabilitySigner(self.ctx.secret, self.options.report_url_seconds)

    @property
    def judge(self) -> Judge:
        return self.ctx.engine("judge", Judge)

    def _model_problem(self, model: str | None) -> str | None:
        """Why the judge engine cannot generate for ``model`` (None: it can)."""
        try:
            self.judge.generation_signature(model)
        except UnknownModel as exc:
            return str(exc)
        except EngineError as exc:
            return f"no model can answer here: {exc}"
        return None

    def _python_limits(self, lane: str) -> TaskLimits:
        return (
            self.ctx.limits(lane)
            .tighter(
                "[openai] python_grader_seconds", wall_seconds=self.options.python_grader_seconds
            )
            .tighter(
                "[openai] python_grader_memory_mb", memory_mb=self.options.python_grader_memory_mb
            )
        )

    def _check(self, grader: Any, at: str, allowed: tuple[str, ...], *, evals: bool) -> None:
        graders.check(
            grader,
            at,
            allowed,
            evals=evals,
            python=self.options.python_graders,
            model=self._model_problem,
        )

    async def startup(self) -> None:
        private_dir(self.files_dir)
        private_dir(self.runs_dir)
        # Files of runs no job will go on with (deleted or finished while the server
        # was down): a resumed run keeps its rows.
        active = {v.id for v in await self.runner.views(JOB_KIND, active_only=True)}
        for path in self.runs_dir.iterdir():
            if path.name.split(".", 1)[0] not in active:
                path.unlink(missing_ok=True)

    async def reset(self, tenant: str | None) -> None:
        runs, files = await self.store.reset(tenant)
        for run_id in runs:
            self._remove_run_files(run_id)
        for path in files:
            Path(path).unlink(missing_ok=True)

    async def _task(self, fn: Any, *args: Any) -> Any:
        """``fn`` in a worker of the request lane; a refusal of the input or a limit it
        went over is the 400 of the client's call."""
        try:
            return await self.ctx.task(fn, *args)
        except (UploadInvalid, jobs.RowsInvalid) as exc:
            raise bad_request(str(exc)) from None
        except TaskFailed as exc:
            raise bad_request(f"the request could not be processed: {exc.message}") from None
        except RecursionError:
            raise bad_request("the input nests too deeply to be processed; flatten it") from None

    # -- files ----------------------------------------------------------------------------
    async def create_file(
        self, tenant: str, body: Path | None, content_type: str
    ) -> dict[str, Any]:
        if body is None:
            raise bad_request("send the file as multipart/form-data (file, purpose)")
        try:
            boundary_of(content_type)  # checked before a worker is spent on the body
        except UploadInvalid as exc:
            raise bad_request(str(exc)) from None
        file_id = new_file_id()
        target = self.files_dir / file_id
        stored: jobs.StoredFile = await self._task(
            jobs.store_upload, str(body), content_type, str(target)
        )
        try:
            purpose = stored.fields.get("purpose")
            if purpose not in PURPOSES:
                raise bad_request(
                    f"'{purpose}' is not one of {', '.join(PURPOSES)} - 'purpose'"
                    if purpose is not None
                    else "the form has no 'purpose' field: files.create(..., purpose='evals')",
                    "purpose",
                )
            problem = name_problem(stored.filename, "file name")
            if problem is not None:
                raise bad_request(problem, "file")
            expires_at = self._expires_at(stored.fields)
            return await self.store.add_file(
                tenant, file_id, stored.filename, purpose, stored.size, str(target), expires_at
            )
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def _expires_at(self, fields: dict[str, str]) -> int | None:
        anchor = fields.get("expires_after[anchor]")
        seconds = fields.get("expires_after[seconds]")
        if anchor is None and seconds is None:
            return None
        if anchor != "created_at":
            raise bad_request("expires_after[anchor] must be 'created_at'", "expires_after")
        low, high = EXPIRES_SECONDS
        if seconds is None or not seconds.isdigit() or not low <= int(seconds) <= high:
            raise bad_request(
                f"expires_after[seconds] must be a whole number from {low} to {high}",
                "expires_after",
            )
        return now() + int(seconds)

    async def file(self, tenant: str, file_id: str) -> dict[str, Any]:
        found = await self.store.file(tenant, file_id)
        if found is None:
            raise not_found("File", file_id, "id")
        return found

    async def files(
        self, tenant: str, after: str | None, limit: int, desc: bool, purpose: str | None
    ) -> Page:
        return await self.store.files(tenant, after, limit, desc, purpose)

    async def delete_file(self, tenant: str, file_id: str) -> None:
        path = await self.store.delete_file(tenant, file_id)
        if path is None:
            raise not_found("File", file_id, "id")
        Path(path).unlink(missing_ok=True)

    # -- evals ----------------------------------------------------------------------------
    async def create_eval(
        self, tenant: str, name: str, metadata: Any, config: dict[str, Any], criteria: list[Any]
    ) -> dict[str, Any]:
        self._check_name(name, "eval name", "name")
        self._check_metadata(metadata)
        answered = self._config(config)
        ids = []
        for i, criterion in enumerate(criteria):
            at = f"testing_criteria[{i}]"
            try:
                self._check(criterion, at, graders.EVAL_GRADERS, evals=True)
            except graders.GraderInvalid as exc:
                raise bad_request(exc.message, exc.param or at) from None
            self._check_name(criterion["name"], "testing criterion name", f"{at}.name")
            ids.append({**criterion, "id": criterion_id(criterion["name"])})
        eval_id = await self.store.add_eval(tenant, name, metadata, answered, ids)
        return await self.eval(tenant, eval_id)

    def _check_name(self, name: str, what: str, param: str) -> None:
        if name:
            problem = name_problem(name, what)
            if problem is not None:
                raise bad_request(problem, param)

    def _check_metadata(self, metadata: Any) -> None:
        for key in metadata or {}:
            if len(key) > 64:
                raise bad_request(
                    f"metadata key {key[:70]!r}... is over 64 characters; use a shorter key",
                    "metadata",
                )

    def _config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The data source config as the service answers it: ``schema`` built from the
        request's ``item_schema`` (echoing ``item_schema`` breaks the client)."""
        kind = config.get("type")
        if kind in ("logs", "stored_completions"):
            raise bad_request(
                f"data_source_config type '{kind}' reads logs stored at OpenAI. {LOGS_ALTERNATIVE}",
                "data_source_config.type",
            )
        item_schema = config.get("item_schema")
        if not isinstance(item_schema, dict):
            raise bad_request(
                "data_source_config.item_schema is required: the JSON schema of one row's "
                'item, e.g. {"type": "object", "properties": {"question": {"type": "string"}}}',
                "data_source_config.item_schema",
            )
        if len(jsonio.encode(item_schema)) > MAX_SCHEMA_BYTES:
            raise bad_request(
                f"data_source_config.item_schema is over {MAX_SCHEMA_BYTES} bytes of JSON",
                "data_source_config.item_schema",
            )
        import jsonschema

        try:
            jsonschema.validators.validator_for(item_schema).check_schema(item_schema)
        except jsonschema.SchemaError as exc:
            raise bad_request(
                f"data_source_config.item_schema is not a valid JSON schema: {exc.message[:300]}",
                "data_source_config.item_schema",
            ) from None
        except RecursionError:
            raise bad_request(
                "data_source_config.item_schema nests too deeply", "data_source_config.item_schema"
            ) from None
        properties: dict[str, Any] = {"item": item_schema}
        required = ["item"]
        if config.get("include_sample_schema"):
            properties["sample"] = {"type": "object"}
            required.append("sample")
        return {
            "type": "custom",
            "schema": {"type": "object", "properties": properties, "required": required},
        }

    async def eval(self, tenant: str, eval_id: str) -> dict[str, Any]:
        found = await self.store.eval(tenant, eval_id)
        if found is None:
            raise not_found("Eval", eval_id, "eval_id")
        return found

    async def evals(
        self, tenant: str, after: str | None, limit: int, desc: bool, order_by: str
    ) -> Page:
        return await self.store.evals(tenant, after, limit, desc, order_by)

    async def update_eval(
        self, tenant: str, eval_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        if changes.get("name") is not None:
            self._check_name(changes["name"], "eval name", "name")
        elif "name" in changes:
            del changes["name"]  # null: unchanged
        self._check_metadata(changes.get("metadata"))
        if not await self.store.update_eval(tenant, eval_id, changes):
            raise not_found("Eval", eval_id, "eval_id")
        return await self.eval(tenant, eval_id)

    async def delete_eval(self, tenant: str, eval_id: str) -> None:
        runs = await self.store.delete_eval(tenant, eval_id)
        if runs is None:
            raise not_found("Eval", eval_id, "eval_id")
        for run_id in runs:
            self._remove_run_files(run_id)

    # -- runs -----------------------------------------------------------------------------
    async def create_run(
        self,
        tenant: str,
        eval_id: str,
        name: str | None,
        metadata: Any,
        data_source: dict[str, Any],
    ) -> Run:
        found = await self.eval(tenant, eval_id)
        self._check_name(name or "", "run name", "name")
        self._check_metadata(metadata)
        kind = data_source["type"]
        source = data_source["source"]
        if source["type"] in ("stored_completions", "responses"):
            raise bad_request(
                f"a '{source['type']}' source reads logs stored at OpenAI. {LOGS_ALTERNATIVE}",
                "data_source.source.type",
            )
        model = ""
        if kind != "jsonl":
            sampling.check_input_messages(data_source.get("input_messages"))
            sampling.check_sampling(data_source.get("sampling_params"))
            named = data_source.get("model")
            if named is not None and (not isinstance(named, str) or not named):
                raise bad_request("data_source.model must be a model name", "data_source.model")
            problem = self._model_problem(named)
            if problem is not None:
                raise bad_request(f"data_source.model: {problem}", "data_source.model")
            model = named or ""
            # Echoed as the service did: sampling_params null when not given.
            data_source = {"sampling_params": None, **data_source}
        content, file_path, file_id = None, None, ""
        if source["type"] == "file_content":
            content = source.get("content")
            if not isinstance(content, list):
                raise bad_request(
                    'data_source.source.content must be a list of {"item": {...}} rows',
                    "data_source.source.content",
                )
        else:
            file_id = str(source.get("id") or "")
            stored = await self.store.file(tenant, file_id) if file_id else None
            if stored is None:
                raise bad_request(
                    f"data_source.source.id: no file {file_id!r} for this key; upload it "
                    "first with files.create(file=..., purpose='evals')",
                    "data_source.source.id",
                )
            file_path = stored["path"]
        run_id = new_id("evalrun_")
        rows: int = await self._task(
            jobs.prepare_rows,
            content,
            file_path,
            file_id,
            found["config"]["schema"]["properties"]["item"],
            str(self._rows_file(run_id)),
            self.options.max_rows,
        )
        try:
            await self.store.add_run(
                tenant,
                run_id,
                eval_id,
                name or f"{kind} run {run_id[-8:]}",
                model,
                data_source,
                metadata if metadata is not None else {},
                rows,
            )
        except BaseException:
            self._remove_run_files(run_id)
            raise
        run = await self.store.run(run_id)
        assert run is not None
        return run

    async def run(self, tenant: str, eval_id: str, run_id: str) -> Run:
        found = await self.store.run(run_id, tenant)
        if found is None or found.eval_id != eval_id:
            raise not_found("EvalRun", run_id, "run_id")
        return found

    async def runs(
        self, tenant: str, eval_id: str, after: str | None, limit: int, desc: bool, status: str
    ) -> Page:
        await self.eval(tenant, eval_id)
        return await self.store.runs(tenant, eval_id, after, limit, desc, status)

    async def cancel_run(self, tenant: str, eval_id: str, run_id: str) -> Run:
        """Cancel a queued or in-progress run; a finished one is a 400 (never a 409,
        which the client would retry twice)."""
        found = await self.run(tenant, eval_id, run_id)
        if found.done or not await self.runner.cancel(run_id):
            raise OpenAIError(
                400,
                f"Run {run_id} is already {found.status if found.done else 'finished'}; only "
                "a queued or in_progress run can be canceled",
                param="run_id",
            )
        # A running job ends when its task is stopped: wait for that (bounded).
        await self.runner.wait(run_id, 10.0)
        return await self.run(tenant, eval_id, run_id)

    async def delete_run(self, tenant: str, eval_id: str, run_id: str) -> None:
        if not await self.store.delete_run(tenant, eval_id, run_id):
            raise not_found("EvalRun", run_id, "run_id")
        self._remove_run_files(run_id)

    # -- output items ---------------------------------------------------------------------
    async def item(self, tenant: str, eval_id: str, run_id: str, item_id: str) -> dict[str, Any]:
        await self.run(tenant, eval_id, run_id)
        found = await self.store.item(run_id, item_id)
        if found is None:
            raise not_found("EvalRunOutputItem", item_id, "output_item_id")
        return found

    async def items(
        self,
        tenant: str,
        eval_id: str,
        run_id: str,
        after: str | None,
        limit: int,
        desc: bool,
        status: str,
    ) -> Page:
        await self.run(tenant, eval_id, run_id)
        return await self.store.items(run_id, after, limit, desc, status)

    # -- the run job ----------------------------------------------------------------------
    async def run_eval(self, job: Job) -> None:
        """The job behind ``runs.create``: grade every row in a worker, then commit the
        output items and the run's counts in one transaction."""
        run = await self.store.run(job.id)
        if run is None:  # deleted while queued
            return
        try:
            await self._run_eval(job, run)
        finally:
            self._remove_run_files(job.id)

    async def _run_eval(self, job: Job, run: Run) -> None:
        found = await self.store.eval(run.tenant, run.eval_id)
        if found is None:
            raise JobFailed("the eval was deleted")
        rows = self._rows_file(job.id)
        if not rows.is_file():
            raise JobFailed("the run's rows are gone (its files were removed); run it again")
        criteria = found["criteria"]
        usage: dict[str, list[int]] = {}  # model -> [calls, prompt tokens, completion tokens]
        samples: str | None = None
        if run.data_source["type"] in ("completions", "responses"):
            samples = str(self._run_file(job.id, "samples"))
            await self._generate(job, run, rows, samples, usage)
        outcomes: list[str] = []
        signatures: dict[str, str] = {}
        missing: dict[str, str] = {}
        judged = [c for c in criteria if c["type"] in graders.MODEL_GRADERS]
        if judged:
            path = str(self._run_file(job.id, "judged"))
            await self._judge_rows(job, run, rows, samples, judged, path, usage)
            outcomes.append(path)
            for c in judged:
                try:
                    signatures[c["id"]] = self.judge.generation_signature(c["model"])
                except EngineError:
                    signatures[c["id"]] = f"model:{c['model']}"
        for number, c in enumerate(x for x in criteria if x["type"] == "python"):
            path = str(self._run_file(job.id, f"python{number}"))
            missing[c["id"]] = await self._python_rows(job, rows, samples, c, path)
            outcomes.append(path)
        items = self._items_file(job.id)
        try:
            graded: jobs.Graded = await job.run_task(
                jobs.grade_rows,
                str(rows),
                criteria,
                self.options.wordnet_dir,
                str(items),
                samples,
                outcomes,
                missing,
                signatures,
            )
        except jobs.RowsInvalid as exc:
            raise JobFailed(str(exc)) from None
        async with self.db.transaction() as tx:
            await self.store.clear_items(tx, job.id)
            for chunk in jobs.read_items(str(items), COMMIT_CHUNK):
                await self.store.add_items(tx, job.id, run.tenant, chunk)
                await asyncio.sleep(0)  # reads go on between chunks of a large run
            await self.store.finish_run(
                tx,
                job.id,
                {
                    "total": graded.total,
                    "passed": graded.passed,
                    "failed": graded.failed,
                    "errored": graded.errored,
                },
                [
                    {"testing_criteria": cid, "passed": counts[0], "failed": counts[1]}
                    for cid, counts in graded.per_criteria.items()
                ],
                [
                    {
                        "model_name": name,
                        "invocation_count": calls,
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion,
                        "cached_tokens": 0,
                    }
                    for name, (calls, prompt, completion) in usage.items()
                ],
                graded.signatures,
            )
            await job.progress(graded.total, graded.total, conn=tx)

    async def _chunks(
        self,
        job: Job,
        source: str,
        target: str,
        answer: Any,
    ) -> None:
        """Read ``source`` (JSON Lines) :data:`CHUNK_ROWS` at a time, ``await answer(line)``
        for each line (``[openai] concurrency`` of them in flight through the judge) and
        write the answers to ``target`` in order; progress as rows go."""
        done = 0
        with open(source, "rb") as src, open(target, "wb") as dst:
            while True:
                chunk = await job.run_blocking(functools.partial(_read, src, CHUNK_ROWS))
                if not chunk:
                    break
                tasks = [asyncio.ensure_future(answer(line)) for line in chunk]
                try:
                    lines = await asyncio.gather(*tasks)
                except BaseException:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    raise
                await job.run_blocking(functools.partial(_write, dst, lines))
                done += len(chunk)
                await job.progress(done)

    async def _generate(
        self, job: Job, run: Run, rows: Path, samples: str, usage: dict[str, list[int]]
    ) -> None:
        """Each row's sample from the run's model, into ``samples`` (one line a row:
        the ``{{sample}}`` namespace, the output item's sample, or the row's error)."""
        judge = self.judge
        source = run.data_source
        model = source.get("model") or None
        params = sampling.check_sampling(source.get("sampling_params"))
        json_output = sampling.wants_json(source.get("sampling_params"))
        prompts = str(self._run_file(job.id, "prompts"))
        await job.run_task(
            jobs.render_inputs, str(rows), source["input_messages"], prompts, progress=False
        )
        await job.progress(0, run.rows)
        gate = asyncio.Semaphore(max(1, self.options.concurrency))
        named = run.model or "default"

        async def one(entry: dict[str, Any]) -> dict[str, Any]:
            messages = entry.get("messages")
            if messages is None:
                error = str(entry["error"])
                failed = sampling.item_sample(None, None, named, (0, 0), params, error)
                return {"ns": None, "sample": failed, "error": error}
            async with gate:
                try:
                    gen = await judge.generate(
                        sampling.for_model(messages), model=model, params=params
                    )
                except EngineUnavailable as exc:
                    raise JobFailed(f"no model can generate the samples: {exc}") from None
                except (EngineError, UnknownModel) as exc:
                    error = f"the model gave no answer: {exc}"[:1000]
                    failed = sampling.item_sample(messages, None, named, (0, 0), params, error)
                    return {"ns": None, "sample": failed, "error": error}
            used = (gen.prompt_tokens, gen.completion_tokens)
            _count(usage, gen.model or named, used)
            return {
                "ns": sampling.sample_namespace(gen.text, gen.finish_reason, json_output),
                "sample": sampling.item_sample(
                    messages, gen.text, gen.model or named, used, params, None, gen.finish_reason
                ),
                "error": None,
            }

        await self._chunks(job, prompts, samples, one)

    async def _judge_rows(
        self,
        job: Job,
        run: Run,
        rows: Path,
        samples: str | None,
        criteria: list[dict[str, Any]],
        target: str,
        usage: dict[str, list[int]],
    ) -> None:
        """The model criteria's outcomes per row into ``target`` (``{id: outcome}`` a line)."""
        judge = self.judge
        inputs = str(self._run_file(job.id, "grader-inputs"))
        await job.run_task(
            jobs.render_grader_inputs, str(rows), samples, criteria, inputs, progress=False
        )
        await job.progress(0, run.rows)
        by_id = {c["id"]: c for c in criteria}
        gate = asyncio.Semaphore(max(1, self.options.concurrency))

        async def criterion(cid: str, entry: dict[str, Any]) -> dict[str, Any]:
            if "messages" not in entry:
                return {"score": 0.0, "passed": False, "error": entry["error"]}
            async with gate:
                try:
                    outcome, used = await modelgrade.grade(judge, by_id[cid], entry["messages"])
                except EngineUnavailable as exc:
                    raise JobFailed(f"no model can grade {cid!r}: {exc}") from None
            _count(usage, by_id[cid]["model"], used)
            return outcome

        async def one(line: dict[str, Any]) -> dict[str, Any]:
            keys = list(line)
            found = await asyncio.gather(*(criterion(k, line[k]) for k in keys))
            return dict(zip(keys, found, strict=True))

        await self._chunks(job, inputs, target, one)

    async def _python_rows(
        self, job: Job, rows: Path, samples: str | None, criterion: dict[str, Any], target: str
    ) -> str:
        """One python criterion in a task of its own under the python limits; what the
        rows it did not reach say (the limit that stopped it)."""
        try:
            await job.run_task(
                jobs.python_grades,
                str(rows),
                samples,
                criterion,
                target,
                limits=self._python_limits("job"),
                progress=False,
            )
        except JobFailed as exc:
            return f"python grader stopped before this row: {exc}"
        return "not graded"

    # -- graders API ----------------------------------------------------------------------
    def check_grader(self, grader: Any) -> None:
        try:
            self._check(grader, "grader", graders.API_GRADERS, evals=False)
        except graders.GraderInvalid as exc:
            raise bad_request(exc.message, exc.param or "grader") from None

    async def run_grader(self, grader: Any, model_sample: str, item: Any) -> dict[str, Any]:
        self.check_grader(grader)
        subs = graders.sub_graders(grader) if grader["type"] == "multi" else {"": grader}
        sample = jobs.graders_run_sample(model_sample)
        names = {"item": item if item is not None else {}, "sample": sample}
        computed: dict[str, dict[str, Any]] = {}
        usage: dict[str, list[int]] = {}
        for key, sub in subs.items():
            if sub["type"] in graders.MODEL_GRADERS:
                try:
                    messages = graders.render_messages(sub["input"], names)
                except graders.MissingVariable as exc:
                    computed[key] = {
                        "score": 0.0,
                        "passed": False,
                        "error": f"the item has no {exc.args[0]} (named by a template)",
                    }
                    continue
                try:
                    computed[key], used = await modelgrade.grade(self.judge, sub, messages)
                except EngineUnavailable as exc:
                    raise bad_request(f"no model can grade: {exc}", "grader.model") from None
                _count(usage, sub["model"], used)
            elif sub["type"] == "python":
                try:
                    computed[key] = await self.ctx.task(
                        jobs.python_grade_one,
                        sub,
                        sample,
                        item,
                        limits=self._python_limits("request"),
                    )
                except TaskFailed as exc:
                    computed[key] = {
                        "score": 0.0,
                        "passed": False,
                        "error": f"python grader stopped: {exc.message}",
                    }
        result: dict[str, Any] = await self._task(
            jobs.run_grader, grader, model_sample, item, self.options.wordnet_dir, computed
        )
        if usage:
            per_model = {
                name: {
                    "prompt_tokens": p,
                    "completion_tokens": c,
                    "total_tokens": p + c,
                    "cached_tokens": 0,
                }
                for name, (_, p, c) in usage.items()
            }
            result["model_grader_token_usage_per_model"] = per_model
            result["metadata"]["token_usage"] = {
                k: sum(u[k] for u in per_model.values()) for k in next(iter(per_model.values()))
            }
            result["metadata"]["sampled_model_name"] = next(iter(usage))
        return result


def _count(usage: dict[str, list[int]], model: str, used: tuple[int, int]) -> None:
    entry = usage.setdefault(model, [0, 0, 0])
    entry[0] += 1
    entry[1] += used[0]
    entry[2] += used[1]


def _read(fh: Any, size: int, ctx: Any) -> list[Any]:
    return jobs.read_chunk(fh, size)


def _write(fh: Any, lines: list[Any], ctx: Any) -> None:
    jobs.write_lines(fh, lines)
