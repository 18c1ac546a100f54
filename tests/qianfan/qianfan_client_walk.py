"""Run by the clients' interpreter (qianfan==0.4.12.3, unchanged): the console evaluation
flow create -> poll detail -> report -> result list -> export -> poll export -> download,
then delete, a business error and a wrong secret key. Writes what it saw as JSON to argv[3].

    python qianfan_client_walk.py BASE_URL DATASET_ID OUT.json

BASE_URL is evaldock's Qianfan mount (``http://127.0.0.1:PORT/qianfan``); the SDK reads
it from ``QIANFAN_CONSOLE_API_BASE_URL`` and signs ``/wenxinworkshop/...`` without it.
"""

import json
import os
import sys
import tempfile
import time
import zipfile

base_url, dataset_id, out_path = sys.argv[1:4]
os.environ.update(
    QIANFAN_ACCESS_KEY="test",
    QIANFAN_SECRET_KEY="test",
    QIANFAN_CONSOLE_API_BASE_URL=base_url,
    QIANFAN_CONSOLE_API_RETRY_COUNT="1",
)
os.chdir(tempfile.mkdtemp())

from qianfan import get_config  # noqa: E402
from qianfan.errors import APIError, RequestError  # noqa: E402
from qianfan.evaluation.evaluation_manager import (  # noqa: E402
    _download_file_from_url_streamly,
)
from qianfan.resources import Model  # noqa: E402
from qianfan.resources.console.consts import EvaluationTaskStatus  # noqa: E402

out = {}
models = Model.evaluable_model_list().body["result"]
out["models"] = models
version = models[0]["modelVersionList"][0]
created = Model.create_evaluation_task(
    name="walk",
    version_info=[{"modelId": models[0]["modelId"], "modelVersionId": version["modelVersionId"]}],
    dataset_id=dataset_id,
    eval_config={"evalMode": "rule", "scoreModes": ["similarity", "accuracy"]},
    description="the official SDK against evaldock",
).body
out["created"] = created["result"]
eval_id = created["result"]["evalIdStr"]
states = []
for _ in range(600):
    info = Model.get_evaluation_info(eval_id).body["result"]
    state = EvaluationTaskStatus(info["state"])  # raises on a word the SDK does not know
    states.append(state.value)
    if state not in (EvaluationTaskStatus.Pending, EvaluationTaskStatus.Doing):
        break
    time.sleep(0.1)
out["states"] = states
out["detail"] = info
out["report"] = Model.get_evaluation_result(eval_id).body["result"]
out["results"] = Model.get_evaluation_result_list(eval_id, page_size=50).body["result"]
export_id = Model.create_evaluation_result_export_task(eval_id).body["result"]["exportIDStr"]
for _ in range(600):
    status = Model.get_evaluation_result_export_task_status(export_id).body["result"]
    if status["state"] not in ("Pending", "Uploading"):
        break
    time.sleep(0.1)
out["export"] = status
_download_file_from_url_streamly(status["downloadUrl"], "tmp.zip")
with zipfile.ZipFile("tmp.zip") as zf:
    out["data_jsonl"] = [json.loads(line) for line in zf.read("data.jsonl").splitlines()]
try:
    Model.get_evaluation_info("ame-doesnotexist")
except APIError as exc:
    out["missing"] = [exc.error_code, exc.error_msg]
try:
    Model.get_evaluation_info(eval_id, sk="not-the-secret")
except RequestError as exc:
    out["wrong_sk"] = str(exc)
# A signature asking for a lifetime past [qianfan] max_expiration_seconds (1800 s).
get_config().IAM_SIGN_EXPIRATION_SEC = 36000
try:
    Model.get_evaluation_info(eval_id)
except RequestError as exc:
    out["long_lifetime"] = str(exc)
get_config().IAM_SIGN_EXPIRATION_SEC = 300
Model.batch_delete_evaluation_result([eval_id])
try:
    Model.get_evaluation_info(eval_id)
except APIError as exc:
    out["after_delete"] = exc.error_msg
with open(out_path, "w", encoding="utf-8") as fh:
    json.dump(out, fh, ensure_ascii=False)
