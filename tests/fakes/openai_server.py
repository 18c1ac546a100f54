"""A small OpenAI-compatible chat-completions server on loopback, for judge tests.

It answers ``GET /v1/models`` and ``POST /v1/chat/completions`` over real HTTP (uvicorn in
a thread). Each completion takes the next scripted behaviour, then ``ok`` forever:

- ``ok``: a JSON object fitting the request's schema (``response_format``,
  ``structured_outputs`` or ``guided_json``), or an echo of the last message when there is none;
- ``429``, ``500``, ``503``, ``400``: that status (429/503 carry ``Retry-After: 0``);
- ``slow:<s>``: wait that long first (noticing a client that hangs up);
- ``malformed``: cut-off JSON; ``length``: cut-off JSON with ``finish_reason: length``;
- ``out_of_range``: a score of 7 (``out_of_range:<n>``: of n); ``no_score``: an object
  without ``score``;
- ``fenced``: valid JSON inside a Markdown code fence;
- ``json:<text>``: ``<text>`` as the answer, verbatim (a structured answer of the test's
  choosing); ``cut:<text>``: the same with ``finish_reason: length``.

A schema without a ``score`` (a caller's own, :meth:`OpenAIJudge.structured`) is answered
with its first enum value, ``0.75`` for a number, ``[]`` for an array, ``"fake"`` for a
string.

``ignores`` names the structured-output fields it does not know (``"guided_json"``, as vLLM
0.12 and later): a schema sent in one is ignored, as vLLM ignores unknown fields, and the
answer is free text. It records every request body and the most requests ever in flight
at once; the judge's start-up probes are kept apart, in ``probes``, and leave the script
alone unless its next entry is for them (``probe:400``: the probe gets a 400).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.serverproc import free_port


def _instance(schema: dict[str, Any]) -> Any:
    """A plain value of ``schema``: first enum value, 0.75, [], "fake", objects in full."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: _instance(v) for k, v in (schema.get("properties") or {}).items()}
    return {"number": 0.75, "integer": 1, "array": [], "boolean": True}.get(kind, "fake")


class FakeOpenAI:
    def __init__(
        self,
        model: str = "fake-model",
        delay: float = 0.0,
        *,
        models: list[str] | None = None,
        api_key: str | None = None,
        record: bool = True,
        ignores: tuple[str, ...] = (),
    ) -> None:
        self.ignores = ignores
        self.models = models or [model]
        self.delay = delay
        self.api_key = api_key  # when set, other keys get a 401
        self.record = record  # off for benchmarks: keeping every body costs memory
        self.script: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.disconnects = 0
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def schema_of(self, body: dict[str, Any]) -> dict[str, Any] | None:
        fields = {
            "json_schema": ((body.get("response_format") or {}).get("json_schema") or {}).get(
                "schema"
            ),
            "guided_json": body.get("guided_json"),
            "structured_outputs": (body.get("structured_outputs") or {}).get("json"),
        }
        return next((v for k, v in fields.items() if v and k not in self.ignores), None)

    def answer_for(self, body: dict[str, Any]) -> str:
        schema = self.schema_of(body)
        prompt = json.dumps(body.get("messages"))
        if schema is None:
            return "echo: " + str(body["messages"][-1]["content"])[:80]
        if "probe" in schema["properties"]:
            return json.dumps({"probe": schema["properties"]["probe"]["enum"][0]})
        if "score" not in schema["properties"]:
            return json.dumps(_instance(schema))
        score_schema = schema["properties"]["score"]
        score: Any
        if "enum" in score_schema:  # relevance: a crude, predictable rule
            score = 2 if "stripes" in prompt else (1 if "shirt" in prompt else 0)
        elif score_schema.get("type") == "number":
            score = 0.75
        else:
            score = score_schema.get("maximum", 5)
        answer: dict[str, Any] = {"explanation": "fake judgement", "score": score}
        if "dimensions" in schema["properties"]:
            answer["dimensions"] = {
                d: score for d in schema["properties"]["dimensions"]["required"]
            }
        return json.dumps(answer)

    def _authorised(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == (
            f"Bearer {self.api_key}"
        )

    def app(self) -> Starlette:
        async def models(request: Request) -> Response:
            if not self._authorised(request):
                return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
            return JSONResponse(
                {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
            )

        async def chat(request: Request) -> Response:
            body = await request.json()
            schema = self.schema_of(body) or {}
            if "probe" in schema.get("properties", {}):
                self.probes.append(body)
                if self.script and self.script[0].startswith("probe:"):
                    status = int(self.script.popleft().partition(":")[2])
                    return JSONResponse({"error": {"message": str(status)}}, status_code=status)
                return JSONResponse(
                    {
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": self.answer_for(body)},
                            }
                        ],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
                    }
                )
            if self.record:
                self.requests.append(body)
            self.count += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if not self._authorised(request):
                    return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
                if body.get("model") not in self.models:
                    return JSONResponse(
                        {"error": {"message": f"The model `{body.get('model')}` does not exist."}},
                        status_code=404,
                    )
                action = self.script.popleft() if self.script else "ok"
                wait = float(action[5:]) if action.startswith("slow:") else self.delay
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    if await request.is_disconnected():
                        self.disconnects += 1
                        return PlainTextResponse("gone", status_code=499)
                    await asyncio.sleep(min(0.01, wait))
                if action in ("429", "500", "503", "400"):
                    headers = {"Retry-After": "0"} if action in ("429", "503") else None
                    return JSONResponse(
                        {"error": {"message": action}}, status_code=int(action), headers=headers
                    )
                content = self.answer_for(body)
                finish = "stop"
                if action == "malformed":
                    content = '{"score": 2, "expl'
                elif action == "length":
                    content, finish = '{"explanation": "a long', "length"
                elif action.startswith("out_of_range"):
                    value = json.loads(action.partition(":")[2] or "7")
                    content = json.dumps({"explanation": "x", "score": value})
                elif action == "no_score":
                    content = json.dumps({"explanation": "x"})
                elif action == "fenced":
                    content = f"```json\n{content}\n```"
                elif action.startswith("json:"):
                    content = action[5:]
                elif action.startswith("cut:"):
                    content, finish = action[4:], "length"
                n = int(body.get("n") or 1)
                return JSONResponse(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": i,
                                "finish_reason": finish,
                                "message": {
                                    "role": "assistant",
                                    "content": content if i == 0 else f"{content} #{i}",
                                },
                            }
                            for i in range(n)
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                    }
                )
            finally:
                self.in_flight -= 1

        return Starlette(
            routes=[
                Route("/v1/models", models, methods=["GET"]),
                Route("/v1/chat/completions", chat, methods=["POST"]),
            ]
        )

    def start(self) -> FakeOpenAI:
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="error",
            lifespan="off",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """``python -m tests.fakes.openai_server --port N``: serve until killed (benchmarks)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="fake-model")
    args = parser.parse_args()
    fake = FakeOpenAI(model=args.model, record=False)
    uvicorn.run(
        fake.app(),
        host="127.0.0.1",
        port=args.port,
        log_level="error",
        lifespan="off",
        access_log=False,
    )


if __name__ == "__main__":
    main()
