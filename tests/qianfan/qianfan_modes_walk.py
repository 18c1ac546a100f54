"""Run by the clients' interpreter (qianfan==0.4.12.3, unchanged): a ``rule,model`` task to
Done, a ``manual`` task through DoingWithManualBegin to Done with scores submitted through
evaldock's extension endpoint (signed by the SDK's ``call_action``), and the v2 API through
``Eval.V2``. Writes what it saw as JSON to argv[3].

    python qianfan_modes_walk.py BASE_URL DATASET_ID OUT.json
"""

import json
import os
import sys
import tempfile
import time

base_url, dataset_id, out_path = sys.argv[1:4]
os.environ.update(
    QIANFAN_ACCESS_KEY="test",
    QIANFAN_SECRET_KEY="test",
    QIANFAN_CONSOLE_API_BASE_URL=base_url,
    QIANFAN_CONSOLE_API_RETRY_COUNT="1",
)
os.chdir(tempfile.mkdtemp())

from qianfan.resources import Model  # noqa: E402
from qianfan.resources.console.consts import EvaluationTaskStatus  # noqa: E402
from qianfan.resources.console.eval import Eval  # noqa: E402
from qianfan.resources.console.utils import call_action  # noqa: E402

PROMPT = {
    "templateName": "walk",
    "templateContent": "Rate {prediction} against {reference}. {metric} {steps}",
    "metric": "correctness",
    "steps": "compare with the reference",
    "maxScore": 5,
}
out = {}


def poll(eval_id, until):
    states = []
    for _ in range(600):
        state = EvaluationTaskStatus(Model.get_evaluation_info(eval_id).body["result"]["state"])
        states.append(state.value)
        if state.value in until:
            break
        time.sleep(0.1)
    return states


version = [{"modelId": "am-walk", "modelVersionId": "amv-walk"}]
judged = Model.create_evaluation_task(
    name="judge walk",
    version_info=version,
    dataset_id=dataset_id,
    eval_config={"evalMode": "rule,model", "scoreModes": ["similarity"], "prompt": PROMPT},
).body["result"]["evalIdStr"]
out["judge_states"] = poll(judged, ("Done", "PartlyDone", "Failed"))
out["judge_report"] = Model.get_evaluation_result(judged).body["result"]
out["judge_results"] = Model.get_evaluation_result_list(judged, page_size=50).body["result"]

manual = Model.create_evaluation_task(
    name="manual walk",
    version_info=version,
    dataset_id=dataset_id,
    eval_config={
        "evalMode": "manual",
        "evaluationDimension": [{"dimension": "满意度"}, {"dimension": "安全性"}],
    },
).body["result"]["evalIdStr"]
out["manual_states"] = poll(manual, ("DoingWithManualBegin", "Failed"))
# The console does not stop a task with manual mode: result false with the reason.
out["manual_stop"] = Model.stop_evaluation_task(manual).body["result"]
out["manual_detail"] = Model.get_evaluation_info(manual).body["result"]
results = Model.get_evaluation_result_list(manual, page_size=50).body["result"]["items"]
scores = [
    {"evalUnitId": r["evalUnitId"], "caseIndex": r["caseIndex"], "dimension": d, "score": 1}
    for r in results
    for d in ("满意度", "安全性")
]
scores[-1]["score"] = 0
out["submitted"] = call_action(
    "/wenxinworkshop/evaldock/eval/manual/score",
    "",
    {"id": manual, "scores": scores, "subjectiveImpressions": [{"subjectiveImpression": "fluent"}]},
).body["result"]
out["manual_states"] += poll(manual, ("Done", "Failed"))
out["manual_report"] = Model.get_evaluation_result(manual).body["result"]

created = Eval.V2.create_eval_task(
    task_name="v2 walk",
    eval_object_type="model",
    eval_object_config={
        "evalModelConfig": {
            "versionId": dataset_id,
            "storageType": "sysStorage",
            "evalModelConfigList": [{"modelId": "amv-walk", "promptTemplate": {}}],
        }
    },
    eval_config={"evalMode": "rule", "ruleEvalConfig": {"scoreModes": ["accuracy"]}},
).body
task_id = created["result"]["taskId"]
out["v2_created"] = created["result"]
out["v2_states"] = poll(task_id, ("Done", "PartlyDone", "Failed"))
out["v2_list"] = Eval.V2.describe_eval_tasks(eval_type="model", max_keys=10).body["result"]
out["v2_task"] = Eval.V2.describe_eval_task(task_id=judged).body["result"]
out["v2_report"] = Eval.V2.describe_eval_task_report(task_id=task_id).body["result"]
out["v2_delete"] = Eval.V2.delete_eval_task(task_id=task_id).body["result"]
out["v2_after"] = [
    t["taskId"] for t in Eval.V2.describe_eval_tasks(eval_type="model").body["result"]["taskList"]
]
with open(out_path, "w", encoding="utf-8") as fh:
    json.dump(out, fh, ensure_ascii=False)
