"""A small OpenAI-compatible chat-completions server on loopback, for judge tests.

It answers ``/v1/models`` and ``/v1/chat/completions``; each request takes the next
scripted behaviour (``ok``, ``429``, ``500``, ``400``, ``slow:<s>``, ``malformed``,
``out_of_range``), then ``ok`` forever. Structured requests get a JSON object fitting
their schema; plain ones an echo. It counts requests and the most ever in flight.
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
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tests.serverproc import free_port


class FakeOpenAI:
    def __init__(self, model: str = "fake-model", delay: float = 0.0) -> None:
        self.model = model
        self.delay = delay
        self.script: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.disconnects = 0
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def answer_for(self, body: dict[str, Any]) -> str:
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema") or body.get("guided_json")
        prompt = json.dumps(body.get("messages"))
        if schema is None:
            if "metadata" in body:
                return json.dumps({"score": 0.75})
            return "echo: " + str(body["messages"][-1]["content"])[:80]
        score_schema = schema["properties"]["score"]
        if "enum" in score_schema:
            score = 2 if "stripes" in prompt else (1 if "shirt" in prompt else 0)
        else:
            score = score_schema.get("maximum", 5)
        answer: dict[str, Any] = {"explanation": "fake judgement", "score": score}
        if "dimensions" in schema["properties"]:
            answer["dimensions"] = {
                d: score for d in schema["properties"]["dimensions"]["required"]
            }
        return json.dumps(answer)

    def app(self) -> Starlette:
        async def models(request: Request) -> JSONResponse:
            return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

        async def chat(request: Request) -> Any:
            body = await request.json()
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                action = self.script.popleft() if self.script else "ok"
                wait = self.delay
                if action.startswith("slow:"):
                    wait = float(action[5:])
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    if await request.is_disconnected():
                        self.disconnects += 1
                        return PlainTextResponse("gone", status_code=499)
                    await asyncio.sleep(min(0.01, wait))
                if action in ("429", "500", "400"):
                    return JSONResponse({"error": {"message": action}}, status_code=int(action))
                content = self.answer_for(body)
                if action == "malformed":
                    content = '{"score": 2, "expl'
                elif action == "out_of_range":
                    content = json.dumps({"explanation": "x", "score": 7})
                return JSONResponse(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": content},
                            }
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
            self.app(), host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
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
    fake = FakeOpenAI(model=args.model)
    fake.port = args.port
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
