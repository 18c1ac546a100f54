"""Run by the clients' interpreter (objective-sdk needs httpx<0.28): drives the surface
through the official SDK's generic post/get and prints what it saw as JSON."""

import json
import sys
import time

import objective
from objective import Objective

base_url = sys.argv[1]
client = Objective(api_key="test", base_url=base_url, max_retries=0)
body = {
    "configuration": {"eval_name": "sdk walk"},
    "data": [
        {
            "query": "shirts with stripes",
            "object_id": "1",
            "object": {"detail_desc": "Striped shirt in cotton"},
        },
        {"query": "winter boots", "object_id": "2", "object": {"title": "Sandals"}},
    ],
}
out = {"created": client.post("/evaluations", cast_to=object, body=body)}
evaluation_id = out["created"]["id"]
for _ in range(300):
    got = client.get(f"/evaluations/{evaluation_id}", cast_to=object)
    if got["status"] not in ("accepted", "processing"):
        break
    time.sleep(0.05)
out["final"] = got
out["listed"] = client.get("/evaluations", cast_to=object, options={"params": {"limit": 10}})

errors = {}
try:
    Objective(api_key="wrong", base_url=base_url, max_retries=0).get("/evaluations", cast_to=object)
except objective.AuthenticationError as exc:
    errors["401"] = [exc.status_code, exc.body]
try:
    client.get("/evaluations/ev_missing", cast_to=object)
except objective.NotFoundError as exc:
    errors["404"] = [exc.status_code, exc.body]
try:
    client.post("/evaluations", cast_to=object, body={"data": []})
except objective.BadRequestError as exc:
    errors["400"] = [exc.status_code, exc.body]
out["errors"] = errors
print(json.dumps(out))
