"""Handlers of openapi/marqtune.yaml, one method per operationId: parse, ask the store
or the registry, render. Job bodies live in :mod:`.jobs`, model names in :mod:`.resolution`."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from evaldock.engines.ir_metrics import gcl
from evaldock.engines.ranker.catalog import known_architectures

from ..jobs import Job
from ..jsonio import JSONResponse
from ..spec import Operation
from ..surface import ApiRequest, Provider
from . import datasets, jobs, pipeline
from .errors import (
    DATASET_NOT_READY,
    FAILED_DATASET,
    NOT_EVALUATION_DATASET,
    MarqtuneErrors,
    bad_request,
    conflict,
    dataset_not_found,
    invalid_checkpoint,
    not_found,
)
from .registry import ModelEntry, ModelRegistry, parse_models_table
from .resolution import ModelResolver
from .signing import UrlSigner, load_secret
from .store import DatasetUnusable, Logs, Store, dataset_state, evaluation_state

log = logging.getLogger("evaldock.marqtune")

TRAINING_OUT_OF_SCOPE = (
    "Model training is not available in evaldock: this server evaluates models but does "
    "not train them. Train with open_clip, then register the checkpoints with "
    "`evaldock marqtune add-model NAME --base-model ARCH --checkpoints DIR` or in the "
    "[marqtune.models] configuration table, and evaluate them as {modelId}/epoch_N."
)
_UNUSABLE = {
    "not_evaluation": NOT_EVALUATION_DATASET,
    "failed": FAILED_DATASET,
    "not_ready": DATASET_NOT_READY,
}


class MarqtuneSettings(msgspec.Struct, kw_only=True):
    """The ``[marqtune]`` table."""

    # Signed upload/download URLs live this long (seconds).
    url_expiry_seconds: int = 3600
    # Largest dataset file accepted (streamed to disk, never held in memory).
    max_upload_bytes: int = 512 * 1024 * 1024
    # A CSV header (queries.csv included) may have at most this many columns.
    max_columns: int = datasets.Limits.max_columns
    # A tar archive may decompress to at most this much, and this many times its size.
    max_decompressed_bytes: int = datasets.Limits.max_decompressed_bytes
    max_compression_ratio: float = datasets.Limits.max_compression_ratio
    # Folders whose sub-folders a request may name as `local-dir:` weights.
    weight_dirs: list[str] = msgspec.field(default_factory=list)
    # [marqtune.models]: base-name overrides and registered fine-tuned models.
    models: dict[str, Any] = msgspec.field(default_factory=dict)


# Operations reached through a signed capability URL, by what the signature covers:
# the purpose and the path parameter naming the resource.
SIGNED: dict[str, tuple[str, str]] = {
    "upload_dataset_file": ("upload", "datasetId"),
    "download_dataset_logs": ("logs", "datasetId"),
    "download_model_logs": ("logs", "modelId"),
    "download_evaluation_logs": ("logs", "evaluationId"),
    "download_evaluation_results": ("results", "evaluationId"),
    "download_model_checkpoint": ("checkpoint:{checkpoint}", "modelId"),
}


class MarqtuneProvider(Provider):
    errors: ClassVar[MarqtuneErrors] = MarqtuneErrors()
    options: MarqtuneSettings

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.store = Store(self.db, self.runner, self.settings.data_dir)
        self.logs = Logs(self.db)
        self.models = ModelRegistry(self.db)
        self.resolver = self._resolver({})
        self.signer = UrlSigner(b"")
        self.limits = datasets.Limits(
            max_columns=self.options.max_columns,
            max_decompressed_bytes=self.options.max_decompressed_bytes,
            max_compression_ratio=self.options.max_compression_ratio,
        )

    def _resolver(self, overrides: Mapping[str, str]) -> ModelResolver:
        ranker = self.ctx.engine("ranker")
        configs = [
            str(p) for p in self.settings.section("engines", "ranker").get("model_configs") or []
        ]
        return ModelResolver(
            self.models,
            overrides,
            self.options.weight_dirs,
            ranker.knows,
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
        self.signer = UrlSigner(await load_secret(self.db), self.options.url_expiry_seconds)

    async def validate_dataset(self, job: Job) -> None:
        await jobs.validate_dataset(self, job)

    async def run_evaluation(self, job: Job) -> None:
        await jobs.run_evaluation(self, job)

    async def reset(self, tenant: str | None) -> None:
        for dataset_id in await self.store.reset(tenant):
            await asyncio.to_thread(self.store.remove_files, dataset_id)

    def max_body_bytes(self, operation: Operation) -> int:
        if operation.operation_id == "upload_dataset_file":
            return self.options.max_upload_bytes
        return super().max_body_bytes(operation)

    async def authorize(self, operation: Operation, request: Request) -> str | None:
        """Signed capability URLs are verified before any byte of the body is read."""
        signed = SIGNED.get(operation.operation_id)
        if signed is None:
            return None
        purpose, param = signed
        purpose = purpose.format(**request.path_params)
        self.signer.verify(
            purpose,
            str(request.path_params.get(param, "")).lower(),
            request.query_params.get("expires"),
            request.query_params.get("signature"),
        )
        return None

    # -- helpers ---------------------------------------------------------------------------

    async def _dataset(self, req: ApiRequest) -> dict[str, Any]:
        row = await self.store.dataset(req.path["datasetId"].lower(), req.tenant)
        if row is None:
            raise not_found("dataset")
        return row

    async def _evaluation(self, req: ApiRequest) -> dict[str, Any]:
        row = await self.store.evaluation(req.path["evaluationId"].lower(), req.tenant)
        if row is None:
            raise not_found("evaluation")
        return row

    async def _model(self, req: ApiRequest) -> ModelEntry:
        entry = await self.models.get(req.path["modelId"], req.tenant)
        if entry is None:
            raise not_found("model")
        return entry

    async def _log_lines(self, resource_id: str, req: ApiRequest) -> Response:
        return JSONResponse(
            await self.logs.read(resource_id, req.query.get("from"), req.query.get("to"))
        )

    def _signed(self, req: ApiRequest, path: str, purpose: str, resource_id: str) -> str:
        return self.signer.sign(req.url_for(path), purpose, resource_id)

    async def _log_file(self, resource_id: str) -> Response:
        return PlainTextResponse(await self.logs.text(resource_id))

    # -- datasets ----------------------------------------------------------------------------

    @staticmethod
    def _dataset_body(row: Mapping[str, Any]) -> dict[str, Any]:
        status, secondary = dataset_state(row)
        body: dict[str, Any] = {
            "datasetId": row["id"],
            "datasetName": row["name"],
            "datasetType": row["dataset_type"],
            "status": status,
            "secondaryStatus": secondary,
        }
        if status == "Failed":
            body["failureReason"] = row["job_error"] or "validation failed"
        body["dataSchema"] = row["data_schema"]
        if row["query_columns"] is not None:
            body["queryColumns"] = row["query_columns"]
        if row["result_columns"] is not None:
            body["resultColumns"] = row["result_columns"]
        body["normalizeUrls"] = bool(row["normalize_urls"])
        if row["image_download_headers"]:
            body["imageDownloadHeaders"] = sorted(row["image_download_headers"])
        if row["file_format"]:
            body["fileFormat"] = row["file_format"]
        if row["file_size"] is not None:
            body["fileSize"] = row["file_size"]
        body.update(row["stats"] or {})
        body["createdAt"] = row["created_at"]
        return body

    # POST /datasets
    async def create_dataset(self, req: ApiRequest) -> Response:
        body = req.body
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
        dataset_id = await self.store.create_dataset(req.tenant, body)
        await self.logs.add(
            dataset_id,
            f"Dataset {body['datasetName']!r} ({body['datasetType']}) created; "
            "waiting for the file upload",
        )
        upload_url = self._signed(req, f"/datasets/{dataset_id}/file", "upload", dataset_id)
        return JSONResponse({"datasetId": dataset_id, "uploadUrl": upload_url})

    # GET /datasets
    async def list_datasets(self, req: ApiRequest) -> Response:
        rows = await self.store.datasets(req.tenant)
        return JSONResponse({"datasets": [self._dataset_body(r) for r in rows]})

    # GET /datasets/{datasetId}
    async def describe_dataset(self, req: ApiRequest) -> Response:
        return JSONResponse(self._dataset_body(await self._dataset(req)))

    # DELETE /datasets/{datasetId}
    async def delete_dataset(self, req: ApiRequest) -> Response:
        row = await self._dataset(req)
        if not row["deleted_at"]:
            await self.store.mark_dataset_deleted(row["id"])
            await self.runner.cancel(row["id"])
            await asyncio.to_thread(self.store.remove_files, row["id"])
            await self.logs.add(row["id"], "Dataset deleted")
        return JSONResponse({"message": f"Dataset {row['id']} deleted"})

    # GET /datasets/{datasetId}/logs
    async def dataset_logs(self, req: ApiRequest) -> Response:
        return await self._log_lines((await self._dataset(req))["id"], req)

    # GET /datasets/{datasetId}/logs/url
    async def dataset_logs_url(self, req: ApiRequest) -> Response:
        dataset_id = (await self._dataset(req))["id"]
        url = self._signed(req, f"/datasets/{dataset_id}/logs/file", "logs", dataset_id)
        return JSONResponse({"downloadUrl": url})

    # GET /datasets/{datasetId}/logs/file (signed)
    async def download_dataset_logs(self, req: ApiRequest) -> Response:
        dataset_id = req.path["datasetId"].lower()
        if await self.store.dataset(dataset_id) is None:
            raise not_found("dataset")
        return await self._log_file(dataset_id)

    # PUT /datasets/{datasetId}/file (signed: the uploadUrl; the pipeline streamed the
    # body to a temporary file after the signature was checked)
    async def upload_dataset_file(self, req: ApiRequest) -> Response:
        dataset_id = req.path["datasetId"].lower()
        row = await self.store.dataset(dataset_id)
        if row is None or row["deleted_at"]:
            raise not_found("dataset")
        if row["uploaded_at"]:
            raise conflict(
                f"Dataset {dataset_id} already has its file; create a new dataset to upload another"
            )
        assert req.body_file is not None  # the spec streams this operation's body
        self.store.dataset_dir(dataset_id).mkdir(parents=True, exist_ok=True, mode=0o700)
        if not await self.store.accept_upload(
            dataset_id, row["tenant"], req.body_file, req.body_size
        ):
            raise conflict(f"Dataset {dataset_id} already has its file")
        await self.logs.add(dataset_id, f"File received ({req.body_size} bytes)")
        return JSONResponse({"datasetId": dataset_id, "size": req.body_size})

    # -- models ------------------------------------------------------------------------------

    async def _model_body(self, entry: ModelEntry) -> dict[str, Any]:
        missing = entry.missing()
        status = "Failed" if missing else "Finished"
        body: dict[str, Any] = {
            "modelId": entry.id,
            "modelName": entry.name,
            "status": status,
            "secondaryStatus": status,
        }
        if missing:
            body["failureReason"] = "checkpoint files not found: " + ", ".join(missing)
        body.update(
            baseModel=entry.base_model,
            checkpoints=list(entry.checkpoints),
            releasedCheckpoints=await self.models.released(entry.id),
            hyperparameters=entry.hyperparameters,
            source=entry.source,
        )
        if entry.created_at:
            body["createdAt"] = entry.created_at
        return body

    # GET /models
    async def list_models(self, req: ApiRequest) -> Response:
        entries = await self.models.visible(req.tenant)
        return JSONResponse({"models": [await self._model_body(m) for m in entries]})

    # POST /models/train
    async def train_model(self, req: ApiRequest) -> Response:
        raise bad_request(TRAINING_OUT_OF_SCOPE)

    # GET /models/{modelId}
    async def describe_model(self, req: ApiRequest) -> Response:
        return JSONResponse(await self._model_body(await self._model(req)))

    # DELETE /models/{modelId}
    async def delete_model(self, req: ApiRequest) -> Response:
        entry = await self._model(req)
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
        return JSONResponse({"message": f"Model {entry.id} deleted"})

    # GET /models/{modelId}/logs
    async def model_logs(self, req: ApiRequest) -> Response:
        return await self._log_lines((await self._model(req)).id, req)

    # GET /models/{modelId}/logs/url
    async def model_logs_url(self, req: ApiRequest) -> Response:
        model_id = (await self._model(req)).id
        url = self._signed(req, f"/models/{model_id}/logs/file", "logs", model_id)
        return JSONResponse({"downloadUrl": url})

    # GET /models/{modelId}/logs/file (signed)
    async def download_model_logs(self, req: ApiRequest) -> Response:
        model_id = req.path["modelId"].lower()
        return await self._log_file(model_id)

    # GET /models/{modelId}/download/url
    async def model_download_url(self, req: ApiRequest) -> Response:
        entry = await self._model(req)
        checkpoint = req.query.get("checkpoint") or list(entry.checkpoints)[-1]
        if checkpoint not in entry.checkpoints:
            raise invalid_checkpoint(list(entry.checkpoints))
        # The client names the saved file after the URL's extension: keep the file's name.
        filename = Path(entry.checkpoints[checkpoint]).name
        path = f"/models/{entry.id}/download/{checkpoint}/{filename}"
        return JSONResponse(
            {"downloadUrl": self._signed(req, path, f"checkpoint:{checkpoint}", entry.id)}
        )

    # GET /models/{modelId}/download/{checkpoint}/{filename} (signed)
    async def download_model_checkpoint(self, req: ApiRequest) -> Response:
        model_id, checkpoint = req.path["modelId"].lower(), req.path["checkpoint"]
        entry = await self.models.get(model_id, None, any_tenant=True)
        path = entry.checkpoints.get(checkpoint) if entry else None
        if path is None or not os.path.isfile(path):
            raise not_found("checkpoint")
        return FileResponse(path, media_type="application/octet-stream", filename=Path(path).name)

    # POST /models/{modelId}/released-checkpoints/{checkpoint}
    async def release_checkpoint(self, req: ApiRequest) -> Response:
        entry = await self._model(req)
        checkpoint = req.path["checkpoint"]
        if checkpoint not in entry.checkpoints:
            raise invalid_checkpoint(list(entry.checkpoints))
        await self.models.release(entry.id, checkpoint)
        await self.logs.add(entry.id, f"Checkpoint {checkpoint} released")
        return JSONResponse(
            {
                "modelId": entry.id,
                "checkpoint": checkpoint,
                "message": f"Checkpoint {checkpoint} released",
            }
        )

    # -- evaluations -------------------------------------------------------------------------

    @staticmethod
    def _evaluation_body(row: Mapping[str, Any], *, metrics: bool = True) -> dict[str, Any]:
        status, secondary = evaluation_state(row)
        body: dict[str, Any] = {
            "evaluationId": row["id"],
            "datasetId": row["dataset_id"],
            "model": row["model"],
        }
        if row["model_id"]:
            body["modelId"] = row["model_id"]
        if row["checkpoint"]:
            body["checkpoint"] = row["checkpoint"]
        body.update(status=status, secondaryStatus=secondary)
        if status == "Failed":
            body["failureReason"] = row["job_error"] or "the evaluation failed"
        body["hyperparameters"] = row["hyperparameters"]
        if metrics and status == "Finished" and row["metrics"] is not None:
            body["evaluationMetrics"] = gcl.rounded(row["metrics"])
        if row["ranker_signature"]:
            body["rankerSignature"] = row["ranker_signature"]
        body["createdAt"] = row["created_at"]
        for key, name in (("started_at", "startedAt"), ("finished_at", "finishedAt")):
            if row[key]:
                body[name] = row[key]
        return body

    # POST /evaluation
    async def create_evaluation(self, req: ApiRequest) -> Response:
        body, tenant = req.body, req.tenant
        try:
            dataset = await self.store.evaluation_dataset(body["datasetId"], tenant)
        except DatasetUnusable as exc:
            if exc.reason == "not_found":
                raise dataset_not_found(body["datasetId"]) from None
            raise bad_request(_UNUSABLE[exc.reason]) from None
        resolved = await self.resolver.resolve(body, tenant)
        try:
            pipeline.check_hyperparameters(
                body["hyperparameters"],
                dataset["data_schema"],
                dataset["query_columns"] or [],
                dataset["result_columns"] or [],
            )
        except pipeline.HyperparameterInvalid as exc:
            raise bad_request(str(exc)) from None
        evaluation_id = await self.store.create_evaluation(
            tenant, dataset["id"], resolved, body["hyperparameters"]
        )
        await self.logs.add(
            evaluation_id,
            f"Evaluation of {resolved.display} on dataset {dataset['id']} accepted",
        )
        return JSONResponse({"evaluationId": evaluation_id}, status_code=202)

    # GET /evaluation
    async def list_evaluations(self, req: ApiRequest) -> Response:
        rows = await self.store.evaluations(req.tenant)
        return JSONResponse(
            {"evaluations": [self._evaluation_body(r, metrics=False) for r in rows]}
        )

    # GET /evaluation/{evaluationId}
    async def describe_evaluation(self, req: ApiRequest) -> Response:
        return JSONResponse(self._evaluation_body(await self._evaluation(req)))

    # DELETE /evaluation/{evaluationId}
    async def delete_evaluation(self, req: ApiRequest) -> Response:
        row = await self._evaluation(req)
        if not row["deleted_at"]:
            await self.store.mark_evaluation_deleted(row["id"])
            await self.runner.cancel(row["id"])
            await self.logs.add(row["id"], "Evaluation deleted")
        return JSONResponse({"message": f"Evaluation {row['id']} deleted"})

    # GET /evaluation/{evaluationId}/logs
    async def evaluation_logs(self, req: ApiRequest) -> Response:
        return await self._log_lines((await self._evaluation(req))["id"], req)

    # GET /evaluation/{evaluationId}/logs/url
    async def evaluation_logs_url(self, req: ApiRequest) -> Response:
        evaluation_id = (await self._evaluation(req))["id"]
        path = f"/evaluation/{evaluation_id}/logs/file"
        return JSONResponse({"downloadUrl": self._signed(req, path, "logs", evaluation_id)})

    # GET /evaluation/{evaluationId}/logs/file (signed)
    async def download_evaluation_logs(self, req: ApiRequest) -> Response:
        evaluation_id = req.path["evaluationId"].lower()
        if await self.store.evaluation(evaluation_id) is None:
            raise not_found("evaluation")
        return await self._log_file(evaluation_id)

    # GET /evaluation/{evaluationId}/download/url
    async def evaluation_download_url(self, req: ApiRequest) -> Response:
        row = await self._evaluation(req)
        status, _ = evaluation_state(row)
        if status != "Finished" or row["metrics"] is None:
            raise bad_request(
                f"Evaluation {row['id']} has no results to download: its status is {status}"
            )
        path = f"/evaluation/{row['id']}/download/file"
        return JSONResponse({"downloadUrl": self._signed(req, path, "results", row["id"])})

    # GET /evaluation/{evaluationId}/download/file (signed)
    async def download_evaluation_results(self, req: ApiRequest) -> Response:
        evaluation_id = req.path["evaluationId"].lower()
        row = await self.store.evaluation(evaluation_id)
        if row is None or row["metrics"] is None or row["deleted_at"]:
            raise not_found("evaluation results")
        return JSONResponse(
            gcl.rounded(row["metrics"]),
            headers={"Content-Disposition": f'attachment; filename="{evaluation_id}.json"'},
        )
