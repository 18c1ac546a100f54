"""Marqtune's rules and state: datasets, models, evaluations, their logs and signed URLs,
and the bodies of its two jobs.

The provider parses a request, calls one method here and renders the answer; refusals
are the vendor's :class:`ApiError` (:mod:`.errors`), raised here with the seed page's
texts. SQL lives in :mod:`.store` and :mod:`.registry`. The job bodies run in the API
process: each reads what its task needs, hands the work that grows with the input (parsing
the upload, embedding and ranking) to a worker process (:mod:`.jobs`), and commits the
answer. Nothing here calls a ranker: model names are checked against the catalogue
(:mod:`evaldock.engines.ranker.catalog`, pure data), the model loads in the worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evaldock.engines.errors import EngineError
from evaldock.engines.ir_metrics import gcl
from evaldock.engines.ranker.catalog import is_known, known_architectures

from ..backend import Backend, BackendContext
from ..compute import InputFile
from ..datadir import private_dir
from ..jobs import Job, JobFailed
from ..names import name_problem
from . import datasets, jobs, ranking
from .errors import (
    DATASET_NOT_READY,
    FAILED_DATASET,
    NOT_EVALUATION_DATASET,
    bad_request,
    conflict,
    dataset_not_found,
    invalid_checkpoint,
    not_found,
)
from .registry import ModelEntry, ModelRegistry, parse_models_table, register_model
from .resolution import ModelResolver
from .settings import MarqtuneSettings
from .signing import UrlSigner
from .store import DatasetUnusable, Logs, Store, evaluation_state

log = logging.getLogger("evaldock.marqtune")

_UNUSABLE = {
    "not_evaluation": NOT_EVALUATION_DATASET,
    "failed": FAILED_DATASET,
    "not_ready": DATASET_NOT_READY,
}


def schema_of(row: Mapping[str, Any]) -> datasets.Schema:
    return datasets.Schema(
        dataset_type=row["dataset_type"],
        columns=dict(row["data_schema"]),
        query_columns=list(row["query_columns"] or []),
        result_columns=list(row["result_columns"] or []),
        normalize_urls=bool(row["normalize_urls"]),
    )


class MarqtuneBackend(Backend[MarqtuneSettings]):
    def __init__(self, ctx: BackendContext[MarqtuneSettings]) -> None:
        super().__init__(ctx)
        self.store = Store(ctx.db, ctx.runner, ctx.data_dir)
        self.logs = Logs(ctx.db)
        self.models = ModelRegistry(ctx.db)
        self.resolver = self._resolver({})
        self.signer = UrlSigner(ctx.secret, self.options.url_expiry_seconds)
        self.limits = datasets.Limits(
            max_columns=self.options.max_columns,
            max_decompressed_bytes=self.options.max_decompressed_bytes,
            max_compression_ratio=self.options.max_compression_ratio,
        )

    def _resolver(self, overrides: Mapping[str, str]) -> ModelResolver:
        # The CLIP ranker's own answer (FieldRanker.knows) from the same settings, without
        # the ranker: it lives in the worker processes, and the catalogue needs no torch.
        options = self.ctx.settings.section("engines", "ranker")
        configs = [str(p) for p in options.get("model_configs") or []]
        checkpoints = options.get("checkpoints")

        def knows(model: str, pretrained: str | None) -> bool:
            return is_known(model, pretrained, extra_configs=configs, checkpoints=checkpoints)

        return ModelResolver(
            self.models,
            overrides,
            self.options.weight_dirs,
            knows,
            lambda: known_architectures(configs),
        )

    async def startup(self) -> None:
        configured, overrides = parse_models_table(self.options.models)
        self.models = ModelRegistry(self.db, configured)
        self.resolver = self._resolver(overrides)
        for entry in configured:
            if not await self.logs.read(entry.id):
                await self.logs.add(
                    entry.id,
                    f"Configured in [marqtune.models] as {entry.name!r}: base model "
                    f"{entry.base_model}, checkpoints {', '.join(entry.checkpoints)}",
                )
        # The secret is loaded now (before any request), not when the backend was built.
        self.signer = UrlSigner(self.ctx.secret, self.options.url_expiry_seconds)

    async def reset(self, tenant: str | None) -> None:
        for dataset_id in await self.store.reset(tenant):
            await asyncio.to_thread(self.store.remove_files, dataset_id)

    # -- signed URLs and logs -------------------------------------------------------------

    def sign(self, url: str, purpose: str, resource_id: str) -> str:
        return self.signer.sign(url, purpose, resource_id)

    def verify(
        self, purpose: str, resource_id: str, expires: str | None, signature: str | None
    ) -> None:
        """Raise the vendor's 403 unless the URL's signature is valid and current."""
        self.signer.verify(purpose, resource_id, expires, signature)

    async def log_lines(
        self, resource_id: str, start: int | None = None, end: int | None = None
    ) -> list[dict[str, Any]]:
        return await self.logs.read(resource_id, start, end)

    async def log_text(self, resource_id: str) -> str:
        return await self.logs.text(resource_id)

    # -- datasets ---------------------------------------------------------------------------

    async def create_dataset(self, tenant: str, body: Mapping[str, Any]) -> str:
        # The dataset's name and its column names are stored and shown back (describe,
        # listings, log lines): printable and not path-like, else the vendor's 400.
        problem = name_problem(body["datasetName"], "datasetName") or next(
            filter(None, (name_problem(c, "dataSchema column") for c in body["dataSchema"])),
            None,
        )
        if problem is not None:
            raise bad_request(problem)
        schema = datasets.Schema(
            dataset_type=body["datasetType"],
            columns=dict(body["dataSchema"]),
            query_columns=list(body.get("queryColumns") or []),
            result_columns=list(body.get("resultColumns") or []),
        )
        try:
            datasets.check_schema(schema)
        except datasets.DatasetInvalid as exc:
            raise bad_request(str(exc)) from None
        dataset_id = await self.store.create_dataset(tenant, body)
        await self.logs.add(
            dataset_id,
            f"Dataset {body['datasetName']!r} ({body['datasetType']}) created; "
            "waiting for the file upload",
        )
        return dataset_id

    async def dataset(self, dataset_id: str, tenant: str | None) -> dict[str, Any]:
        """The dataset (deleted ones too: they answer as Deleted); ``tenant`` None for a
        signed URL, whose signature names the dataset."""
        row = await self.store.dataset(dataset_id.lower(), tenant)
        if row is None:
            raise not_found("dataset")
        return row

    async def datasets(self, tenant: str) -> list[dict[str, Any]]:
        return await self.store.datasets(tenant)

    async def delete_dataset(self, dataset_id: str, tenant: str) -> str:
        row = await self.dataset(dataset_id, tenant)
        if not row["deleted_at"]:
            await self.store.mark_dataset_deleted(row["id"])
            await self.runner.cancel(row["id"])  # kills its parse, if it is running
            await asyncio.to_thread(self.store.remove_files, row["id"])
            await self.logs.add(row["id"], "Dataset deleted")
        return str(row["id"])

    async def accept_upload(self, dataset_id: str, tmp: Path, size: int) -> None:
        """Take the upload (already streamed to ``tmp``) and queue its validation."""
        row = await self.store.dataset(dataset_id)
        if row is None or row["deleted_at"]:
            raise not_found("dataset")
        if row["uploaded_at"]:
            raise conflict(
                f"Dataset {dataset_id} already has its file; create a new dataset to upload another"
            )
        private_dir(self.store.dataset_dir(dataset_id))
        if not await self.store.accept_upload(dataset_id, row["tenant"], tmp, size):
            raise conflict(f"Dataset {dataset_id} already has its file")
        await self.logs.add(dataset_id, f"File received ({size} bytes)")

    # -- models -----------------------------------------------------------------------------

    async def model(
        self, model_id: str, tenant: str | None, *, any_tenant: bool = False
    ) -> ModelEntry:
        entry = await self.models.get(model_id, tenant, any_tenant=any_tenant)
        if entry is None:
            raise not_found("model")
        return entry

    async def visible_models(self, tenant: str | None) -> list[ModelEntry]:
        return await self.models.visible(tenant)

    async def released_checkpoints(self, model_id: str) -> list[str]:
        return await self.models.released(model_id)

    async def delete_model(self, model_id: str, tenant: str) -> str:
        entry = await self.model(model_id, tenant)
        if entry.source == "config":
            raise bad_request(
                f"Model {entry.id} ({entry.name}) comes from the [marqtune.models] "
                "configuration table; remove it there and restart the server"
            )
        if entry.tenant is None:
            raise bad_request(
                f"Model {entry.id} ({entry.name}) is shared by every API key; remove it with "
                f"`evaldock marqtune remove-model {entry.id}`"
            )
        await self.models.delete(entry.id)
        await self.logs.add(entry.id, "Model deleted (its checkpoint files were left in place)")
        return entry.id

    @staticmethod
    def checkpoint(entry: ModelEntry, name: str | None) -> tuple[str, str]:
        """(checkpoint, its file) of ``entry``: ``name``, or the latest when None."""
        checkpoint = name or list(entry.checkpoints)[-1]
        if checkpoint not in entry.checkpoints:
            raise invalid_checkpoint(list(entry.checkpoints))
        return checkpoint, entry.checkpoints[checkpoint]

    async def checkpoint_file(self, model_id: str, checkpoint: str) -> str:
        """The file behind a signed checkpoint URL (the signature names the model)."""
        entry = await self.models.get(model_id, None, any_tenant=True)
        path = entry.checkpoints.get(checkpoint) if entry else None
        if path is None or not os.path.isfile(path):
            raise not_found("checkpoint")
        return path

    async def release_checkpoint(self, model_id: str, tenant: str, checkpoint: str) -> str:
        entry = await self.model(model_id, tenant)
        if checkpoint not in entry.checkpoints:
            raise invalid_checkpoint(list(entry.checkpoints))
        await self.models.release(entry.id, checkpoint)
        await self.logs.add(entry.id, f"Checkpoint {checkpoint} released")
        return entry.id

    async def register_model(
        self,
        name: str,
        base_model: str,
        checkpoints: Mapping[str, str],
        *,
        tenant: str | None = None,
        model_id: str | None = None,
    ) -> ModelEntry:
        """``evaldock marqtune add-model``: a registered model and its first log line."""
        return await register_model(
            self.db, name, base_model, checkpoints, tenant=tenant, model_id=model_id
        )

    async def unregister_model(self, entry: ModelEntry) -> None:
        await self.models.delete(entry.id)

    # -- evaluations ------------------------------------------------------------------------

    async def create_evaluation(self, tenant: str, body: Mapping[str, Any]) -> str:
        try:
            dataset = await self.store.evaluation_dataset(body["datasetId"], tenant)
        except DatasetUnusable as exc:
            if exc.reason == "not_found":
                raise dataset_not_found(body["datasetId"]) from None
            raise bad_request(_UNUSABLE[exc.reason]) from None
        resolved = await self.resolver.resolve(body, tenant)
        try:
            ranking.check_hyperparameters(
                body["hyperparameters"],
                dataset["data_schema"],
                dataset["query_columns"] or [],
                dataset["result_columns"] or [],
            )
        except ranking.HyperparameterInvalid as exc:
            raise bad_request(str(exc)) from None
        evaluation_id = await self.store.create_evaluation(
            tenant,
            dataset["id"],
            body["hyperparameters"],
            model=resolved.display,
            model_id=resolved.model_id,
            checkpoint=resolved.checkpoint,
            load_model=resolved.load_model,
            load_pretrained=resolved.load_pretrained,
        )
        await self.logs.add(
            evaluation_id,
            f"Evaluation of {resolved.display} on dataset {dataset['id']} accepted",
        )
        return evaluation_id

    async def evaluation(self, evaluation_id: str, tenant: str | None) -> dict[str, Any]:
        row = await self.store.evaluation(evaluation_id.lower(), tenant)
        if row is None:
            raise not_found("evaluation")
        return row

    async def evaluations(self, tenant: str) -> list[dict[str, Any]]:
        return await self.store.evaluations(tenant)

    async def delete_evaluation(self, evaluation_id: str, tenant: str) -> str:
        row = await self.evaluation(evaluation_id, tenant)
        if not row["deleted_at"]:
            await self.store.mark_evaluation_deleted(row["id"])
            # A running evaluation's task is killed with its worker (the job ends
            # cancelled); the ranker it had loaded goes with it.
            await self.runner.cancel(row["id"])
            await asyncio.to_thread(self.store.remove_work, row["id"])
            await self.logs.add(row["id"], "Evaluation deleted")
        return str(row["id"])

    async def downloadable(self, evaluation_id: str, tenant: str) -> str:
        """The evaluation's id if it has results to download; a 400 saying why not."""
        row = await self.evaluation(evaluation_id, tenant)
        status, _ = evaluation_state(row)
        if status != "Finished" or row["metrics"] is None:
            raise bad_request(
                f"Evaluation {row['id']} has no results to download: its status is {status}"
            )
        return str(row["id"])

    async def results(self, evaluation_id: str) -> dict[str, Any]:
        """GCL's ``output.json`` (rounded) behind a signed results URL."""
        row = await self.store.evaluation(evaluation_id)
        if row is None or row["metrics"] is None or row["deleted_at"]:
            raise not_found("evaluation results")
        return gcl.rounded(row["metrics"])

    # -- jobs ---------------------------------------------------------------------------------

    async def run_validate_dataset(self, job: Job) -> None:
        """Check the upload against its schema and store its parsed form (in a worker)."""
        store, logs = self.store, self.logs
        row = await store.dataset(job.id)
        if row is None or row["deleted_at"]:
            return
        await logs.add(job.id, "Validating the file against dataSchema")

        async def say(message: str) -> None:
            await logs.add(job.id, message)

        try:
            file_format, stats = await job.run_task(
                jobs.parse_dataset,
                InputFile(str(store.upload_path(job.id))),
                str(store.parsed_path(job.id)),
                dataclasses.asdict(schema_of(row)),
                dataclasses.asdict(self.limits),
                on_say=say,
                progress=False,
            )
        except datasets.DatasetInvalid as exc:
            await logs.add(job.id, f"Validation failed: {exc}")
            raise JobFailed(str(exc)) from None
        except JobFailed as exc:  # over a task limit, or its worker died
            await logs.add(job.id, f"Validation failed: {exc}")
            raise
        await store.dataset_validated(job.id, file_format, stats)
        if (await store.dataset(job.id) or {}).get("deleted_at"):
            await asyncio.to_thread(store.remove_files, job.id)  # deleted meanwhile
            return
        counts = ", ".join(
            f"{stats[k]} {noun}"
            for k, noun in (
                ("rowCount", "rows"),
                ("queryCount", "queries"),
                ("documentCount", "documents"),
            )
            if k in stats
        )
        await logs.add(job.id, f"Read a {file_format} file: {counts}")
        await logs.add(job.id, "Dataset is ready")
        await job.progress(1, 1)

    async def run_evaluation(self, job: Job) -> None:
        """Embed, rank and score in a worker; the metrics and signature commit here."""
        store, logs = self.store, self.logs
        row = await store.evaluation(job.id)
        if row is None or row["deleted_at"]:
            return
        if job.attempts > 1:
            await logs.add(job.id, f"Restarting after an interruption (attempt {job.attempts})")
        await logs.add(job.id, "Evaluation started")
        await store.set_metrics(job.id, None, None)
        dataset = await store.dataset(row["dataset_id"])
        if dataset is None or dataset["deleted_at"]:
            raise await self._fail(job.id, f"Dataset {row['dataset_id']} was deleted")
        try:
            params = ranking.check_hyperparameters(
                row["hyperparameters"],
                dataset["data_schema"],
                dataset["query_columns"] or [],
                dataset["result_columns"] or [],
            )
        except ranking.HyperparameterInvalid as exc:
            raise await self._fail(job.id, str(exc)) from None

        async def say(message: str) -> None:
            await logs.add(job.id, message)

        try:
            result, signature = await job.run_task(
                jobs.evaluate,
                InputFile(str(store.parsed_path(dataset["id"]))),
                params,
                row["load_model"],
                row["load_pretrained"],
                str(store.work_dir(job.id)),
                max(1, self.options.encode_chunk),
                on_say=say,
                progress=False,
            )
        except JobFailed as exc:  # over a task limit, or its worker died
            raise await self._fail(job.id, str(exc)) from None
        except (EngineError, ValueError, OSError) as exc:
            raise await self._fail(job.id, str(exc) or type(exc).__name__) from None
        except Exception as exc:  # a bug or a torch error: still say so in the job's log
            log.exception("evaluation %s failed", job.id)
            raise await self._fail(job.id, f"internal error: {type(exc).__name__}: {exc}") from None
        await store.set_metrics(job.id, result, signature)
        await asyncio.to_thread(store.remove_work, job.id)  # its vectors: 2 GB a million docs
        # The line users parse (GCL's `logging.info(output_results["summary"])`).
        await logs.add(job.id, gcl.summary_log_line(gcl.rounded(result)["summary"]))
        await logs.add(job.id, "Evaluation finished")
        await job.progress(1, 1)

    async def _fail(self, resource_id: str, reason: str) -> JobFailed:
        await asyncio.to_thread(self.store.remove_work, resource_id)
        await self.logs.add(resource_id, f"Evaluation failed: {reason}")
        return JobFailed(reason)
