"""Run by the clients' interpreter (marqtune==0.2.7): the documented flow end to end,
create_dataset -> upload -> evaluate -> describe -> logs -> download, plus the list calls,
a seed-page error, download_logs and delete. Writes what it saw as JSON to argv[4].

    python marqtune_client_walk.py URL DATASET_FILE MODEL OUT.json [DATA_SCHEMA_JSON]
"""

import json
import os
import sys
import tempfile

import requests
from marqtune.client import Client
from marqtune.enums import DatasetType

url, dataset_file, model, out_path = sys.argv[1:5]
schema = (
    json.loads(sys.argv[5])
    if len(sys.argv) > 5
    else {"query": "text", "title": "text", "image": "image_pointer", "score": "score"}
)
os.chdir(tempfile.mkdtemp())  # the client saves downloads in the working directory
client = Client(url=url, api_key="test")
out = {}

dataset = client.create_dataset(
    "walk",
    dataset_file,
    DatasetType.EVALUATION,
    data_schema=schema,
    query_columns=["query"],
    result_columns=["title", "image"],
    wait_for_completion=True,
)
out["dataset"] = dataset.describe()
hyper = {
    "leftKeys": ["query"],
    "leftWeights": [1],
    "rightKeys": ["image", "title"],
    "rightWeights": [0.9, 0.1],
    "weightKey": "score",
}
evaluation = client.evaluate(dataset.dataset_id, model, hyper, wait_for_completion=True)
out["evaluation"] = evaluation.describe()
out["logs"] = evaluation.logs()
with open(evaluation.download()) as f:
    out["download"] = json.load(f)
with open(evaluation.download_logs()) as f:
    out["log_file"] = f.read()
out["datasets"] = client.list_datasets()
out["evaluations"] = client.list_evaluations()
out["models"] = client.list_models()
try:
    client.evaluate(
        dataset.dataset_id,
        "00000000-0000-4000-8000-000000000000/epoch_1",
        hyper,
        wait_for_completion=False,
    )
except requests.HTTPError as exc:
    out["error"] = list(exc.args)
try:
    client.train_model(
        dataset.dataset_id, "m", model, "marqtune.basic", {}, wait_for_completion=False
    )
except requests.HTTPError as exc:
    out["train_error"] = list(exc.args)
model_id, _, checkpoint = model.partition("/")
if len(model_id) == 36:  # a local marqtuned model: the model calls too
    tuned = client.model(model_id)
    out["model"] = tuned.describe()
    with open(tuned.download(checkpoint=checkpoint), "rb") as f:
        out["model_download_size"] = len(f.read())
    out["released"] = tuned.release(checkpoint)
    out["model_logs"] = tuned.logs()
out["deleted"] = evaluation.delete()
out["after_delete"] = evaluation.describe()

with open(out_path, "w") as f:
    json.dump(out, f)
