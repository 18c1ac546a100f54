"""Which model generates a model version's answers (issue 19): ``[qianfan.models]``, then
``[qianfan] default_model``, else eval/create refuses, in both modes; the report, the
detail and the results name the served model and the generation signature. Real mode
runs on the loopback OpenAI-compatible fake (tests/fakes/openai_server.py); in-process,
and live with EVALDOCK_TEST_SERVER=1."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evaldock.engines.signature import Signature
from tests.fakes.openai_server import FakeOpenAI
from tests.live import LIVE, LiveClient, toml_from_flags
from tests.serverproc import ServerProcess

from .helpers import EVAL, add_dataset, call, ok, wait_state

QUESTIONS = [{"prompt": "What is 2+2?", "reference": "4"}]
ANSWERED = [{"prompt": "What is 2+2?", "reference": "4", "prediction": "4"}]
PROMPT = {"templateContent": "Grade {prediction} vs {reference}", "maxScore": 4}
NOT_MAPPED = (
    "param invalid: versionEvalInfo[0].modelVersionId amv-evaldock-mock is not mapped to a "
    'model; map it in [qianfan.models] "amv-evaldock-mock" = "<model>" or set [qianfan] '
    'default_model = "<model>" (a [judge.models] name or the judge\'s own model), or give '
    "every case of the dataset a prediction"
)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(models=["fake-model", "big-model"]) as server:
        yield server


@pytest.fixture
def real(
    fake: FakeOpenAI, settings_factory: Callable[..., Any], tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """Real-mode clients on the fake (its own model ``fake-model`` is the judge's); a live
    server with EVALDOCK_TEST_SERVER=1."""
    opened: list[Any] = []

    def make(**flags: Any) -> Any:
        flags = {
            "server.surfaces": ["qianfan"],
            "judge.urls": [fake.url],
            "judge.model": "fake-model",
            **flags,
        }
        if LIVE:
            config = tmp_path / f"real-{len(opened)}.toml"
            config.write_text(toml_from_flags(flags))
            data = tmp_path / f"real-data-{len(opened)}"
            server = ServerProcess(data, mode="real", config=config).start()
            client: Any = LiveClient(server)
        else:
            from starlette.testclient import TestClient

            from evaldock.server.app import create_app

            client = TestClient(create_app(settings_factory(**{"server.mode": "real", **flags})))
            client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        if isinstance(client, LiveClient):
            client.close()
            client.server.stop()
        else:
            client.__exit__(None, None, None)


def create(client: Any, dataset_id: str, version: str, **conf: Any) -> Any:
    body = {
        "name": "models",
        "versionEvalInfo": [{"modelId": version, "modelVersionId": version}],
        "datasetId": dataset_id,
        "evalStandardConf": {"evalMode": "rule", "scoreModes": ["accuracy"], **conf},
    }
    return call(client, f"{EVAL}/create", body).json()


def finished(client: Any, dataset_id: str, version: str, **conf: Any) -> tuple[Any, Any, Any]:
    """(report entry, detail unit, result items) of a one-version task run to its end."""
    created = create(client, dataset_id, version, **conf)
    assert "error_code" not in created, created
    eval_id = created["result"]["evalIdStr"]
    detail = wait_state(client, eval_id)
    assert detail["state"] == "Done", detail
    (entry,) = ok(client, f"{EVAL}/report", {"id": eval_id})
    items = ok(client, f"{EVAL}/result/list", {"id": eval_id})["items"]
    return entry, detail["evalUnits"][0], items


def generations(fake: FakeOpenAI) -> list[dict[str, Any]]:
    """The fake's free-text requests (judgements carry a schema)."""
    return [r for r in fake.requests if fake.schema_of(r) is None]


def test_an_unmapped_version_is_refused_in_real_mode(real: Callable[..., Any]) -> None:
    client = real()
    assert ok(client, f"{EVAL}/model/list", {}) == []  # nothing mapped: nothing listed
    refused = create(client, add_dataset(client, QUESTIONS), "amv-evaldock-mock")
    assert refused["error_code"] == 500001 and refused["error_msg"] == NOT_MAPPED
    # A dataset giving every prediction runs no model: any id, and the report says so.
    entry, unit, items = finished(client, add_dataset(client, ANSWERED), "amv-evaldock-mock")
    assert entry["modelForm"] == "inferDataset"
    assert entry["servedModel"] == "" and entry["generationSignature"] == ""
    assert unit["servedModel"] == "" and [i["servedModel"] for i in items] == [""]


def test_mock_mode_answers_as_real_mode(make_client: Callable[..., Any]) -> None:
    """The same settings, the same answers: an id nothing maps is refused with the same
    words; the mock's own catalogue entry (the walk-through's id) runs the mock."""
    client = make_client(**{"qianfan.default_model": ""})
    dataset_id = add_dataset(client, QUESTIONS)
    refused = create(client, dataset_id, "amv-1")
    assert refused["error_code"] == 500001
    assert refused["error_msg"] == NOT_MAPPED.replace("amv-evaldock-mock", "amv-1")
    (listed,) = ok(client, f"{EVAL}/model/list", {})
    assert listed["modelVersionList"][0]["backend"] == "mock"
    entry, unit, items = finished(client, dataset_id, "amv-evaldock-mock")
    assert entry["servedModel"] == unit["servedModel"] == "mock"
    assert [i["servedModel"] for i in items] == ["mock"]
    assert Signature.parse(entry["generationSignature"]).kind == "generate"
    assert Signature.parse(entry["generationSignature"]).get("generate") == "mock"


def test_default_model_generates_and_every_view_names_it(
    real: Callable[..., Any], fake: FakeOpenAI
) -> None:
    client = real(**{"qianfan.default_model": "fake-model"})
    entry, unit, items = finished(
        client,
        add_dataset(client, QUESTIONS),
        "amv-evaldock-mock",
        evalMode="rule,model",
        prompt=PROMPT,
    )
    assert entry["servedModel"] == unit["servedModel"] == "fake-model"
    assert [i["servedModel"] for i in items] == ["fake-model"]
    generated = Signature.parse(entry["generationSignature"])
    assert generated.get("generate") == "openai" and generated.get("model") == "fake-model"
    # [judge] generation_max_tokens (1024), apart from the judgements' max_tokens.
    assert generated.get("max_tokens") == "1024"
    assert unit["generationSignature"] == entry["generationSignature"]
    assert entry["judgeSignature"].startswith("judge:openai")  # judgements: their own
    (asked,) = generations(fake)
    assert asked["model"] == "fake-model" and asked["max_tokens"] == 1024
    assert items[0]["prediction"].startswith("echo: What is 2+2?")


def test_a_mapped_version_runs_its_served_model(real: Callable[..., Any], fake: FakeOpenAI) -> None:
    client = real(
        **{
            "judge.models": {"gpt-4o": "big-model"},
            "qianfan.models": {"amv-big": "gpt-4o", "amv-lost": "no-such-model"},
        }
    )
    dataset_id = add_dataset(client, QUESTIONS)
    entry, unit, items = finished(client, dataset_id, "amv-big")
    assert entry["modelName"] == "gpt-4o"  # the [qianfan.models] name, as before
    assert entry["servedModel"] == unit["servedModel"] == "big-model"
    assert [i["servedModel"] for i in items] == ["big-model"]
    assert [r["model"] for r in generations(fake)] == ["big-model"]
    listed = {m["modelIdStr"]: m["modelVersionList"][0] for m in ok(client, f"{EVAL}/model/list")}
    assert listed["amv-big"]["modelNet"] == "gpt-4o"
    assert listed["amv-big"]["backend"] == "big-model"  # what the task reports as served
    assert listed["amv-lost"]["backend"] == ""
    # An id nothing maps, and a mapping to a model the judge does not serve: refused.
    assert "is not mapped to a model" in create(client, dataset_id, "amv-other")["error_msg"]
    lost = create(client, dataset_id, "amv-lost")["error_msg"]
    assert "'no-such-model' ([qianfan.models] \"amv-lost\")" in lost
    assert '[judge.models] "no-such-model"' in lost and "known: fake-model, gpt-4o" in lost


def test_off_scale_referee_answers_are_asked_again_then_invalid(
    real: Callable[..., Any], fake: FakeOpenAI
) -> None:
    """The judge engine asks an off-scale referee answer again ([judge] output_retries, 2),
    then puts the case in the report's -1 bucket."""
    client = real(**{"qianfan.default_model": "fake-model"})
    conf = {"evalMode": "model", "prompt": PROMPT}
    dataset_id = add_dataset(client, [{"prompt": "first", "reference": "a"}])
    fake.script.extend(["ok", "out_of_range:9", "ok"])  # generation, then two judgements
    entry, _, items = finished(client, dataset_id, "amv-x", **conf)
    assert entry["effectMetric"]["scoreDistribution"] == {"-1": 0, "1": 0, "2": 0, "3": 0, "4": 1}
    assert items[0]["judgeScore"] == 4
    dataset_id = add_dataset(client, [{"prompt": "second", "reference": "b"}])
    fake.script.extend(["ok"] + ["out_of_range:9"] * 3)
    entry, _, items = finished(client, dataset_id, "amv-x", **conf)
    assert entry["effectMetric"]["scoreDistribution"] == {"-1": 1, "1": 0, "2": 0, "3": 0, "4": 0}
    assert items[0]["judgeScore"] == -1 and "outside 1..4" in items[0]["judge_reason"]
    judged = [json.dumps(r) for r in fake.requests if fake.schema_of(r) is not None]
    assert len(judged) == 2 + 3
