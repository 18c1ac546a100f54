"""Handlers of openapi/marqtune.yaml, one method per operationId: parse, ask the backend
(:mod:`.backend`: the rules, the state, the job bodies), render in Marqtune's envelope."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from evaldock.engines.ir_metrics import gcl

from ..jsonio import JSONResponse
from ..spec import Operation
from ..surface import ApiRequest, Provider
from .backend import MarqtuneBackend
from .errors import MarqtuneErrors, bad_request
from .registry import ModelEntry
from .settings import MarqtuneSettings
from .store import dataset_state, evaluation_state

TRAINING_OUT_OF_SCOPE = (
    "Model training is not available in evaldock: this server evaluates models but does "
    "not train them. Train with open_clip, then register the checkpoints with "
    "`evaldock marqtune add-model NAME --base-model ARCH --checkpoints DIR` or in the "
    "[marqtune.models] configuration table, and evaluate them as {modelId}/epoch_N."
)

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
    backend: MarqtuneBackend  # the core's Provider.reset forwards to it

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
        self.backend.verify(
            purpose,
            str(request.path_params.get(param, "")).lower(),
            request.query_params.get("expires"),
            request.query_params.get("signature"),
        )
        return None

    # -- helpers ---------------------------------------------------------------------------

    async def _dataset(self, req: ApiRequest) -> dict[str, Any]:
        return await self.backend.dataset(req.path["datasetId"], req.tenant)

    async def _evaluation(self, req: ApiRequest) -> dict[str, Any]:
        return await self.backend.evaluation(req.path["evaluationId"], req.tenant)

    async def _model(self, req: ApiRequest) -> ModelEntry:
        return await self.backend.model(req.path["modelId"], req.tenant)

    async def _log_lines(self, resource_id: str, req: ApiRequest) -> Response:
        return JSONResponse(
            await self.backend.log_lines(resource_id, req.query.get("from"), req.query.get("to"))
        )

    def _signed(self, req: ApiRequest, path: str, purpose: str, resource_id: str) -> str:
        return self.backend.sign(req.url_for(path), purpose, resource_id)

    async def _log_file(self, resource_id: str) -> Response:
        return PlainTextResponse(await self.backend.log_text(resource_id))

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
        dataset_id = await self.backend.create_dataset(req.tenant, req.body)
        upload_url = self._signed(req, f"/datasets/{dataset_id}/file", "upload", dataset_id)
        return JSONResponse({"datasetId": dataset_id, "uploadUrl": upload_url})

    # GET /datasets
    async def list_datasets(self, req: ApiRequest) -> Response:
        rows = await self.backend.datasets(req.tenant)
        return JSONResponse({"datasets": [self._dataset_body(r) for r in rows]})

    # GET /datasets/{datasetId}
    async def describe_dataset(self, req: ApiRequest) -> Response:
        return JSONResponse(self._dataset_body(await self._dataset(req)))

    # DELETE /datasets/{datasetId}
    async def delete_dataset(self, req: ApiRequest) -> Response:
        dataset_id = await self.backend.delete_dataset(req.path["datasetId"], req.tenant)
        return JSONResponse({"message": f"Dataset {dataset_id} deleted"})

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
        dataset_id = (await self.backend.dataset(req.path["datasetId"], None))["id"]
        return await self._log_file(dataset_id)

    # PUT /datasets/{datasetId}/file (signed: the uploadUrl; the pipeline streamed the
    # body to a temporary file after the signature was checked)
    async def upload_dataset_file(self, req: ApiRequest) -> Response:
        dataset_id = req.path["datasetId"].lower()
        assert req.body_file is not None  # the spec streams this operation's body
        await self.backend.accept_upload(dataset_id, req.body_file, req.body_size)
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
            releasedCheckpoints=await self.backend.released_checkpoints(entry.id),
            hyperparameters=entry.hyperparameters,
            source=entry.source,
        )
        if entry.created_at:
            body["createdAt"] = entry.created_at
        return body

    # GET /models
    async def list_models(self, req: ApiRequest) -> Response:
        entries = await self.backend.visible_models(req.tenant)
        return JSONResponse({"models": [await self._model_body(m) for m in entries]})

    # POST /models/train
    async def train_model(self, req: ApiRequest) -> Response:
        raise bad_request(TRAINING_OUT_OF_SCOPE)

    # GET /models/{modelId}
    async def describe_model(self, req: ApiRequest) -> Response:
        return JSONResponse(await self._model_body(await self._model(req)))

    # DELETE /models/{modelId}
    async def delete_model(self, req: ApiRequest) -> Response:
        model_id = await self.backend.delete_model(req.path["modelId"], req.tenant)
        return JSONResponse({"message": f"Model {model_id} deleted"})

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
        checkpoint, file = self.backend.checkpoint(entry, req.query.get("checkpoint"))
        # The client names the saved file after the URL's extension: keep the file's name.
        filename = Path(file).name
        path = f"/models/{entry.id}/download/{checkpoint}/{filename}"
        return JSONResponse(
            {"downloadUrl": self._signed(req, path, f"checkpoint:{checkpoint}", entry.id)}
        )

    # GET /models/{modelId}/download/{checkpoint}/{filename} (signed)
    async def download_model_checkpoint(self, req: ApiRequest) -> Response:
        path = await self.backend.checkpoint_file(req.path["modelId"], req.path["checkpoint"])
        return FileResponse(path, media_type="application/octet-stream", filename=Path(path).name)

    # POST /models/{modelId}/released-checkpoints/{checkpoint}
    async def release_checkpoint(self, req: ApiRequest) -> Response:
        checkpoint = req.path["checkpoint"]
        model_id = await self.backend.release_checkpoint(
            req.path["modelId"], req.tenant, checkpoint
        )
        return JSONResponse(
            {
                "modelId": model_id,
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
        evaluation_id = await self.backend.create_evaluation(req.tenant, req.body)
        return JSONResponse({"evaluationId": evaluation_id}, status_code=202)

    # GET /evaluation
    async def list_evaluations(self, req: ApiRequest) -> Response:
        rows = await self.backend.evaluations(req.tenant)
        return JSONResponse(
            {"evaluations": [self._evaluation_body(r, metrics=False) for r in rows]}
        )

    # GET /evaluation/{evaluationId}
    async def describe_evaluation(self, req: ApiRequest) -> Response:
        return JSONResponse(self._evaluation_body(await self._evaluation(req)))

    # DELETE /evaluation/{evaluationId}
    async def delete_evaluation(self, req: ApiRequest) -> Response:
        evaluation_id = await self.backend.delete_evaluation(req.path["evaluationId"], req.tenant)
        return JSONResponse({"message": f"Evaluation {evaluation_id} deleted"})

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
        evaluation_id = (await self.backend.evaluation(req.path["evaluationId"], None))["id"]
        return await self._log_file(evaluation_id)

    # GET /evaluation/{evaluationId}/download/url
    async def evaluation_download_url(self, req: ApiRequest) -> Response:
        evaluation_id = await self.backend.downloadable(req.path["evaluationId"], req.tenant)
        path = f"/evaluation/{evaluation_id}/download/file"
        return JSONResponse({"downloadUrl": self._signed(req, path, "results", evaluation_id)})

    # GET /evaluation/{evaluationId}/download/file (signed)
    async def download_evaluation_results(self, req: ApiRequest) -> Response:
        evaluation_id = req.path["evaluationId"].lower()
        return JSONResponse(
            await self.backend.results(evaluation_id),
            headers={"Content-Disposition": f'attachment; filename="{evaluation_id}.json"'},
        )
