"""Run by the clients' interpreter: the official clients against a server whose control
plane the test drives. argv: what to do, the server URL, then arguments."""

import json
import sys
import time

what, url = sys.argv[1], sys.argv[2]
out: dict = {}

if what == "marqtune-fault":
    import requests
    from marqtune.client import Client

    client = Client(url=url, api_key="test")
    try:
        client.list_datasets()
    except requests.exceptions.HTTPError as exc:
        out["error"] = [type(exc).__name__, exc.response.status_code, list(exc.args[1:])]
    out["after"] = client.list_datasets()

elif what == "objective-held":
    from objective import Objective

    client = Objective(api_key="test", base_url=url, max_retries=0)
    body = {"data": [{"query": "striped shirt", "object_id": "1", "object": {"t": "shirt"}}]}
    created = client.post("/evaluations", cast_to=object, body=body)
    print(json.dumps({"id": created["id"]}), flush=True)  # the test advances it now
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = client.get(f"/evaluations/{created['id']}", cast_to=object)
        if not seen or seen[-1] != got["status"]:
            seen.append(got["status"])
        if got["status"] not in ("accepted", "processing"):
            break
        time.sleep(0.05)
    out["seen"] = seen

print(json.dumps(out))
