"""Handlers of openapi/marqtune.yaml, one method per operationId, and the two jobs
(dataset validation, evaluation)."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from starlette.responses import FileResponse, PlainTextResponse, Response

from ...engines.errors import EngineError
from ...engines.ir_metrics import marqtune as gcl
from ...engines.ranker.models import parse_model
from ..jobs import Job, JobFailed
from ..jsonio import JSONResponse
from ..spec import Operation
from ..surface import ApiRequest, Provider
from . import datasets, pipeline
from .exceptions import (
    DATASET_NOT_READY,
    FAILED_DATASET,
    NOT_EVALUATION_DATASET,
    MarqtuneErrors,
    bad_request,
    conflict,
    dataset_not_found,
    invalid_checkpoint,
    model_not_found,
    not_found,
)
from .models import (
    CHECKPOINT_NAME,
    DATASET_JOB,
    EVALUATION_JOB,
    Logs,
    ModelEntry,
    ModelRegistry,
    ResolvedModel,
    Store,
    dataset_state,
    evaluation_state,
    is_uuid,
    known_architectures,
    parse_models_table,
)
from .signing import DEFAULT_TTL, UrlSigner, load_secret

log = logging.getLogger("evaldock.marqtune")

DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024

TRAINING_OUT_OF_SCOPE = (
    "Model training is not available in evaldock: this server evaluates models but does "
    "not train them. Train with open_clip, then register the checkpoints with "
    "`evaldock marqtune add-model NAME --base-model ARCH --checkpoints DIR` or in the "
    "[marqtune.models] configuration table, and evaluate them as {modelId}/epoch_N."
)


class _Cancelled(Exception):
    """The job was cancelled while its worker thread ran; the thread stops at a checkpoint."""


class MarqtuneResponses(Provider):
    errors: ClassVar[MarqtuneErrors] = MarqtuneErrors()
    engines = ("ranker",)

    def __init__(self, ctx: Any, spec: Any) -> None:
        super().__init__(ctx, spec)
        self.store = Store(ctx.db, ctx.settings.data_dir)
        self.logs = Logs(ctx.db)
        self.models = ModelRegistry(ctx.db)
        self.base_overrides: dict[str, str] = {}
        self.signer = UrlSigner(b"")
        # One evaluation uses the ranker at a time (it holds one loaded model); a thread
        # lock, because a cancelled job's worker thread may still be running.
        self._ranker_lock = threading.Lock()
        self._loaded: tuple[str, str | None] | None = None

    async def startup(self) -> None:
        await super().startup()
        configured, self.base_overrides = parse_models_table(self.config().get("models") or {})
        self.models = ModelRegistry(self.db, configured)
        for entry in configured:
            if not await self.logs.read(entry.id):
                await self.logs.add(
                    entry.id,
                    f"Configured in [marqtune.models] as {entry.name!r}: base model "
                    f"{entry.base_model}, checkpoints {', '.join(entry.checkpoints)}",
                )
        ttl = int(self.config().get("url_expiry_seconds", DEFAULT_TTL))
        self.signer = UrlSigner(await load_secret(self.db), ttl)
        self.runner.register(DATASET_JOB, self._validate_dataset)
        self.runner.register(EVALUATION_JOB, self._run_evaluation)

    def max_body_bytes(self, operation: Operation) -> int:
        if operation.operation_id == "upload_dataset_file":
            # Dataset files outgrow the JSON limit; the whole file is held in memory once.
            return int(self.config().get("max_upload_bytes", DEFAULT_MAX_UPLOAD))
        return super().max_body_bytes(operation)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _tenant(req: ApiRequest) -> str:
        assert req.tenant is not None
        return req.tenant

    async def _dataset(self, req: ApiRequest) -> dict[str, Any]:
        row = await self.store.dataset(req.path["datasetId"].lower(), self._tenant(req))
        if row is None:
            raise not_found("dataset")
        return row

    async def _evaluation(self, req: ApiRequest) -> dict[str, Any]:
        row = await self.store.evaluation(req.path["evaluationId"].lower(), self._tenant(req))
        if row is None:
            raise not_found("evaluation")
        return row

    async def _model(self, req: ApiRequest) -> ModelEntry:
        entry = await self.models.get(req.path["modelId"], self._tenant(req))
        if entry is None:
            raise not_found("model")
        return entry

    async def _log_lines(self, resource_id: str, req: ApiRequest) -> Response:
        return JSONResponse(
            await self.logs.read(resource_id, req.query.get("from"), req.query.get("to"))
        )

    def _signed(self, req: ApiRequest, path: str, purpose: str, resource_id: str) -> str:
        return self.signer.sign(req.url_for(path), purpose, resource_id)

    def _verify(self, req: ApiRequest, purpose: str, resource_id: str) -> None:
        self.signer.verify(
            purpose, resource_id, req.query.get("expires"), req.query.get("signature")
        )

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
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        dataset_id = await self.store.create_dataset(self._tenant(req), body)
        await self.logs.add(
            dataset_id,
            f"Dataset {body['datasetName']!r} ({body['datasetType']}) created; "
            "waiting for the file upload",
        )
        upload_url = self._signed(req, f"/datasets/{dataset_id}/file", "upload", dataset_id)
        return JSONResponse({"datasetId": dataset_id, "uploadUrl": upload_url})

    # GET /datasets
    async def list_datasets(self, req: ApiRequest) -> Response:
        rows = await self.store.datasets(self._tenant(req))
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
        self._verify(req, "logs", dataset_id)
        if await self.store.dataset(dataset_id) is None:
            raise not_found("dataset")
        return await self._log_file(dataset_id)

    # PUT /datasets/{datasetId}/file (signed: the uploadUrl)
    async def upload_dataset_file(self, req: ApiRequest) -> Response:
        dataset_id = req.path["datasetId"].lower()
        self._verify(req, "upload", dataset_id)
        row = await self.store.dataset(dataset_id)
        if row is None or row["deleted_at"]:
            raise not_found("dataset")
        if row["uploaded_at"]:
            raise conflict(
                f"Dataset {dataset_id} already has its file; create a new dataset to upload another"
            )
        folder = self.store.dataset_dir(dataset_id)
        tmp = await asyncio.to_thread(_write_temp, folder, req.raw_body)
        try:
            accepted = await self.store.accept_upload(
                dataset_id, row["tenant"], tmp, len(req.raw_body)
            )
        finally:
            tmp.unlink(missing_ok=True)
        if not accepted:
            raise conflict(f"Dataset {dataset_id} already has its file")
        await self.logs.add(dataset_id, f"File received ({len(req.raw_body)} bytes)")
        self.runner.wake()
        return JSONResponse({"datasetId": dataset_id, "size": len(req.raw_body)})

    async def _validate_dataset(self, job: Job) -> None:
        row = await self.store.dataset(job.id)
        if row is None or row["deleted_at"]:
            return
        await self.logs.add(job.id, "Validating the file against dataSchema")
        schema = datasets.Schema(
            dataset_type=row["dataset_type"],
            columns=dict(row["data_schema"]),
            query_columns=list(row["query_columns"] or []),
            result_columns=list(row["result_columns"] or []),
            normalize_urls=bool(row["normalize_urls"]),
        )
        try:
            file_format, stats = await asyncio.to_thread(self._parse_upload, job.id, schema)
        except datasets.DatasetInvalid as exc:
            await self.logs.add(job.id, f"Validation failed: {exc}")
            raise JobFailed(str(exc)) from None
        await self.store.dataset_validated(job.id, file_format, stats)
        if (await self.store.dataset(job.id) or {}).get("deleted_at"):
            await asyncio.to_thread(self.store.remove_files, job.id)  # deleted meanwhile
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
        await self.logs.add(job.id, f"Read a {file_format} file: {counts}")
        await self.logs.add(job.id, "Dataset is ready")
        await job.progress(1, 1)

    def _parse_upload(self, dataset_id: str, schema: datasets.Schema) -> tuple[str, dict[str, int]]:
        data = self.store.upload_path(dataset_id).read_bytes()
        file_format, parsed, stats = datasets.parse(data, schema)
        if parsed is not None:
            target = self.store.parsed_path(dataset_id)
            tmp = _write_temp(target.parent, datasets.dump(parsed))
            os.replace(tmp, target)
        return file_format, stats

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
        entries = await self.models.visible(self._tenant(req))
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
        self._verify(req, "logs", model_id)
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
        self._verify(req, f"checkpoint:{checkpoint}", model_id)
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

    def _base_override(self, model: str, known: set[str] | None) -> str | None:
        if model in self.base_overrides:
            return self.base_overrides[model]
        is_arch = known.__contains__ if known is not None else (lambda _: False)
        try:
            key = parse_model(model, None, is_arch).key
        except ValueError:
            return None
        for name, path in self.base_overrides.items():
            try:
                if parse_model(name, None, is_arch).key == key:
                    return path
            except ValueError:
                continue
        return None

    def _resolve_base(self, model: str, pretrained: str | None) -> ResolvedModel:
        extra = self.settings.section("engines", "ranker").get("model_configs") or []
        known = known_architectures([str(x) for x in extra])
        override = None if pretrained else self._base_override(model, known)
        if override is not None:
            if (Path(override) / "open_clip_config.json").is_file():
                return ResolvedModel(display=model, load_model=f"local-dir:{override}")
            return ResolvedModel(display=model, load_model=model, load_pretrained=override)
        try:
            spec = parse_model(model, pretrained, known.__contains__ if known else lambda _: True)
        except ValueError:
            raise model_not_found(model) from None
        if spec.source == "builtin" and known is not None and spec.name not in known:
            raise model_not_found(model)
        if spec.source == "local-dir" and not Path(spec.name).expanduser().is_dir():
            raise model_not_found(model)
        return ResolvedModel(
            display=model, load_model=model, load_pretrained=pretrained, checkpoint=pretrained
        )

    @staticmethod
    def _resolve_tuned(entry: ModelEntry, checkpoint: str | None) -> ResolvedModel:
        available = list(entry.checkpoints)
        checkpoint = checkpoint or available[-1]  # no checkpoint named: the latest
        if checkpoint not in entry.checkpoints:
            raise invalid_checkpoint(available)
        path = entry.checkpoints[checkpoint]
        if not os.path.isfile(path):
            raise bad_request(
                f"Checkpoint {checkpoint} of model {entry.id} has no file at {path}; "
                "restore it or register the model again"
            )
        return ResolvedModel(
            display=f"{entry.id}/{checkpoint}",
            load_model=entry.base_model,
            load_pretrained=path,
            model_id=entry.id,
            checkpoint=checkpoint,
        )

    async def _resolve_model(self, body: Mapping[str, Any], tenant: str) -> ResolvedModel:
        model = body["model"].strip()
        model_type = body.get("modelType")
        legacy_checkpoint = (body.get("checkpoint") or "").strip() or None
        if model_type == "open_clip":
            return self._resolve_base(model, legacy_checkpoint)
        if model_type == "hugging_face":
            name = model if model.startswith("hf-hub:") else f"hf-hub:{model}"
            return self._resolve_base(name, None)
        head, _, tail = model.partition("/")
        checkpoint = legacy_checkpoint or (tail or None)
        if is_uuid(head) or model_type == "marqtuned":
            entry = await self.models.get(head, tenant) if is_uuid(head) else None
            entry = entry or await self.models.by_name(head, tenant)
            if entry is None:
                raise model_not_found(head)
            return self._resolve_tuned(entry, checkpoint)
        if not tail or CHECKPOINT_NAME.match(tail):
            # A registered model named in place of its id ("my-tuned/epoch_2").
            entry = await self.models.by_name(head, tenant)
            if entry is not None:
                return self._resolve_tuned(entry, checkpoint)
        return self._resolve_base(model, None)

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
        body, tenant = req.body, self._tenant(req)
        dataset = await self.store.dataset(body["datasetId"].lower(), tenant)
        if dataset is None or dataset["deleted_at"]:
            raise dataset_not_found(body["datasetId"])
        if dataset["dataset_type"] != "evaluation":
            raise bad_request(NOT_EVALUATION_DATASET)
        status, _ = dataset_state(dataset)
        if status in ("Failed", "Stopped"):
            raise bad_request(FAILED_DATASET)
        if status != "Ready":
            raise bad_request(DATASET_NOT_READY)
        resolved = await self._resolve_model(body, tenant)
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
        self.runner.wake()
        return JSONResponse({"evaluationId": evaluation_id}, status_code=202)

    # GET /evaluation
    async def list_evaluations(self, req: ApiRequest) -> Response:
        rows = await self.store.evaluations(self._tenant(req))
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
        self._verify(req, "logs", evaluation_id)
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
        self._verify(req, "results", evaluation_id)
        row = await self.store.evaluation(evaluation_id)
        if row is None or row["metrics"] is None or row["deleted_at"]:
            raise not_found("evaluation results")
        return JSONResponse(
            gcl.rounded(row["metrics"]),
            headers={"Content-Disposition": f'attachment; filename="{evaluation_id}.json"'},
        )

    async def _run_evaluation(self, job: Job) -> None:
        row = await self.store.evaluation(job.id)
        if row is None or row["deleted_at"]:
            return
        if job.attempts > 1:
            await self.logs.add(
                job.id, f"Restarting after an interruption (attempt {job.attempts})"
            )
        await self.logs.add(job.id, "Evaluation started")
        await self.store.set_metrics(job.id, None, None)
        dataset = await self.store.dataset(row["dataset_id"])
        if dataset is None or dataset["deleted_at"]:
            raise await self._fail(job.id, f"Dataset {row['dataset_id']} was deleted")
        try:
            params = pipeline.check_hyperparameters(
                row["hyperparameters"],
                dataset["data_schema"],
                dataset["query_columns"] or [],
                dataset["result_columns"] or [],
            )
        except pipeline.HyperparameterInvalid as exc:
            raise await self._fail(job.id, str(exc)) from None
        say = _ThreadLog(self.logs, asyncio.get_running_loop(), job.id)
        parsed_path = self.store.parsed_path(dataset["id"])
        key = (row["load_model"], row["load_pretrained"])

        def work() -> tuple[dict[str, Any], str]:
            ranker = self.ctx.engine("ranker")
            if not self._ranker_lock.acquire(blocking=False):
                say("Waiting for the ranker: another evaluation is using it")
                self._ranker_lock.acquire()
            try:
                say("Loading the dataset")
                parsed = datasets.load(parsed_path.read_bytes())
                if self._loaded != key:
                    shown = key[0] if key[1] is None else f"{key[0]} with weights {key[1]}"
                    say(f"Loading model {shown}")
                    self._loaded = None
                    ranker.load(*key)
                    self._loaded = key
                say(f"Ranker: {ranker.signature}")
                result = pipeline.evaluate(parsed, params, ranker, say, say.check)
                return result, str(ranker.signature)
            finally:
                self._ranker_lock.release()

        try:
            result, signature = await asyncio.to_thread(work)
        except asyncio.CancelledError:
            say.cancelled.set()
            raise
        except (EngineError, ValueError, OSError) as exc:
            raise await self._fail(job.id, str(exc) or type(exc).__name__) from None
        except Exception as exc:  # a bug or a torch error: still say so in the job's log
            log.exception("evaluation %s failed", job.id)
            raise await self._fail(job.id, f"internal error: {type(exc).__name__}: {exc}") from None
        await self.store.set_metrics(job.id, result, signature)
        # The line users parse (GCL's `logging.info(output_results["summary"])`).
        await self.logs.add(job.id, gcl.summary_log_line(gcl.rounded(result)["summary"]))
        await self.logs.add(job.id, "Evaluation finished")
        await job.progress(1, 1)

    async def _fail(self, resource_id: str, reason: str) -> JobFailed:
        await self.logs.add(resource_id, f"Evaluation failed: {reason}")
        return JobFailed(reason)


class _ThreadLog:
    """Log lines from the worker thread; also where the thread notices a cancelled job
    (``check()`` between steps) and stops."""

    def __init__(self, logs: Logs, loop: asyncio.AbstractEventLoop, resource_id: str) -> None:
        self.logs = logs
        self.loop = loop
        self.resource_id = resource_id
        self.cancelled = threading.Event()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise _Cancelled

    def __call__(self, message: str) -> None:
        self.check()
        done = asyncio.run_coroutine_threadsafe(self.logs.add(self.resource_id, message), self.loop)
        done.result(60)


def _write_temp(folder: Path, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(name)
