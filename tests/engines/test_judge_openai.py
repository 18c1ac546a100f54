"""The OpenAI-compatible judge against a real loopback server speaking the protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.judge.base import UnknownModel, usage_scope
from evaldock.engines.judge.openai import OpenAIJudge
from evaldock.engines.signature import evaldock_version
from tests.fakes.judging import SHIRT, judge_for, run, with_judge
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def test_relevance_uses_structured_output(fake: FakeOpenAI) -> None:
    async def use(judge: OpenAIJudge):
        return await judge.relevance("shirts with stripes", SHIRT), judge.usage, judge.signature

    verdict, usage, signature = with_judge(fake, use)
    assert (verdict.score, verdict.label, verdict.explanation) == (2, "GREAT", "fake judgement")
    body = fake.requests[0]
    assert body["model"] == "fake-model" and body["temperature"] == 0
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["score"]["enum"] == [0, 1, 2]
    # A bounded explanation: small models loop in free strings under guided decoding.
    assert fmt["json_schema"]["schema"]["properties"]["explanation"]["maxLength"] == 400
    assert "shirts with stripes" in body["messages"][0]["content"]
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (1, 11, 7)
    assert signature == (
        "judge:openai|model:fake-model|prompt:v1|temp:0|max_tokens:512|structured:json_schema"
        f"|evaldock:{evaldock_version()}"
    )


@pytest.mark.parametrize("structured", ["guided_json", "structured_outputs"])
def test_vllm_structured_output_fields(fake: FakeOpenAI, structured: str) -> None:
    async def use(judge: OpenAIJudge):
        return await judge.relevance("solid shirts", SHIRT)

    assert with_judge(fake, use, structured=structured).score == 1
    body = fake.requests[0]
    assert "response_format" not in body
    schema = body["guided_json"] if structured == "guided_json" else body[structured]["json"]
    assert schema["properties"]["score"]["enum"] == [0, 1, 2]


@pytest.mark.parametrize("script", [["429"], ["500", "500"], ["503"], ["slow:2"]])
def test_retries_transient_failures(fake: FakeOpenAI, script: list[str]) -> None:
    fake.script.extend(script)

    async def use(judge: OpenAIJudge):
        return await judge.relevance("solid shirts", SHIRT), judge.usage.retries

    verdict, retries = with_judge(fake, use, timeout=0.5)
    assert verdict.score == 1
    assert retries == len(script)
    assert fake.count == len(script) + 1


def test_retries_are_bounded(fake: FakeOpenAI) -> None:
    fake.script.extend(["500"] * 10)

    async def use(judge: OpenAIJudge):
        await judge.relevance("q", {})

    with pytest.raises(EngineError, match=r"after 3 tries: HTTP 500"):
        with_judge(fake, use, max_retries=2)
    assert fake.count == 3


def test_client_errors_are_not_retried(fake: FakeOpenAI) -> None:
    fake.script.append("400")

    async def use(judge: OpenAIJudge):
        await judge.relevance("q", {})

    with pytest.raises(EngineError, match="HTTP 400"):
        with_judge(fake, use)
    assert fake.count == 1


def test_invalid_output_is_retried_then_reported(fake: FakeOpenAI) -> None:
    fake.script.extend(["malformed", "fenced"])

    async def use(judge: OpenAIJudge):
        first = await judge.relevance("shirts with stripes", SHIRT)
        fenced = await judge.relevance("solid shirts", SHIRT)
        return first, fenced, judge.usage.invalid_outputs

    first, fenced, invalid = with_judge(fake, use)
    assert first.score == 2 and fenced.score == 1 and invalid == 1
    # Greedy decoding would repeat itself: the retry samples differently, reproducibly.
    assert fake.requests[1]["temperature"] == 0.7 and fake.requests[1]["seed"] == 1

    fake.script.extend(["out_of_range", "no_score", "malformed"])

    async def bad(judge: OpenAIJudge):
        await judge.relevance("other query", SHIRT)

    with pytest.raises(EngineError, match=r"no valid answer after 3 tries: Unterminated string"):
        with_judge(fake, bad, output_retries=2)


def test_cut_off_answer_gets_more_room(fake: FakeOpenAI) -> None:
    fake.script.append("length")

    async def use(judge: OpenAIJudge):
        return await judge.relevance("shirts with stripes", SHIRT)

    assert with_judge(fake, use, max_tokens=100).score == 2
    assert [r["max_tokens"] for r in fake.requests] == [100, 200]


def test_spread_over_servers_and_bounded_concurrency() -> None:
    with FakeOpenAI(delay=0.05) as a, FakeOpenAI(delay=0.05) as b:

        async def use(judge: OpenAIJudge):
            await asyncio.gather(*(judge.relevance(f"q{i}", {"t": i}) for i in range(24)))

        # In flight across both servers, counted where the bound is kept: in the client's
        # one event loop, so the count is exact (each server's own maximum is reached at
        # its own moment, and their sum says nothing about the bound).
        in_flight = peak = 0
        post = httpx.AsyncClient.post

        async def counting_post(client: httpx.AsyncClient, *args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await post(client, *args, **kwargs)
            finally:
                in_flight -= 1

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(httpx.AsyncClient, "post", counting_post)
            with_judge((a, b), use, concurrency=4)
        # Least outstanding requests, not round-robin: the split follows how fast each
        # answers at that moment (tests/engines/test_judge_fleet.py checks it); both serve.
        assert a.count + b.count == 24 and a.count and b.count
        assert peak == 4  # 24 requests of 50 ms: the bound is reached, never passed
        assert a.max_in_flight <= 4 and b.max_in_flight <= 4


def test_a_dead_server_in_the_list_is_routed_around(fake: FakeOpenAI) -> None:
    async def use(judge: OpenAIJudge):
        verdicts = await asyncio.gather(*(judge.relevance(f"q{i}", {}) for i in range(6)))
        return verdicts, judge.usage.retries

    judge_urls = {"urls": [fake.url, "http://127.0.0.1:9/v1"]}
    verdicts, retries = with_judge((), use, model="fake-model", **judge_urls)
    assert [v.score for v in verdicts] == [0] * 6
    assert retries == 3 and fake.count == 6


def test_cancelling_the_caller_cancels_the_request(fake: FakeOpenAI) -> None:
    fake.script.append("slow:10")

    async def use(judge: OpenAIJudge):
        task = asyncio.create_task(judge.relevance("q", {}))
        while not fake.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(500):
            if fake.disconnects:
                break
            await asyncio.sleep(0.01)

    with_judge(fake, use)
    assert fake.disconnects == 1 and fake.in_flight == 0


def check_with(*servers: FakeOpenAI, **options: Any) -> OpenAIJudge:
    async def use(judge: OpenAIJudge):
        await judge.check()
        return judge

    return with_judge(servers, use, **options)


def test_start_up_check_names_the_problem(fake: FakeOpenAI) -> None:
    assert check_with(fake).model == "fake-model"
    with pytest.raises(EngineUnavailable, match=r"does not serve model 'other'.*fake-model") as e:
        check_with(fake, model="other")
    assert "EVALDOCK_JUDGE_MODEL" in str(e.value)
    with pytest.raises(EngineUnavailable, match=r"127.0.0.1:9/v1 did not answer GET /models") as e:
        check_with(urls=["http://127.0.0.1:9/v1"], model="m")
    assert "EVALDOCK_JUDGE_URLS" in str(e.value)
    with pytest.raises(EngineUnavailable, match=r"did you mean http://127.0.0.1:\d+/v1\?"):
        check_with(urls=[fake.url.removesuffix("/v1")], model="m")
    with pytest.raises(EngineUnavailable, match="does not serve model 'absent'"):
        check_with(fake, models={"gpt-4o-mini": "absent"})
    with pytest.raises(EngineUnavailable, match="EVALDOCK_JUDGE_URLS"):
        OpenAIJudge({"urls": []})


def test_start_up_check_adopts_the_only_served_model_and_checks_the_key() -> None:
    with FakeOpenAI(api_key="sesame") as fake:
        judge = check_with(fake, model="", api_key="sesame")
        assert judge.model == "fake-model" and judge.name == "openai:fake-model"
        with pytest.raises(EngineUnavailable, match="refused the API key") as e:
            check_with(fake, api_key="wrong")
        assert "EVALDOCK_JUDGE_API_KEY" in str(e.value)
    with FakeOpenAI(models=["a", "b"]) as fake, pytest.raises(EngineUnavailable, match="a, b"):
        check_with(fake, model="")


def test_generate_with_params_choices_and_vendor_model_names(fake: FakeOpenAI) -> None:
    async def use(judge: OpenAIJudge):
        gen = await judge.generate(
            [{"role": "user", "content": "Classify: hi"}],
            model="gpt-4o-mini",
            params={"temperature": 0.3, "top_p": 0.9, "n": 2, "model": "ignored", "stream": True},
        )
        with pytest.raises(UnknownModel) as unknown:
            await judge.generate([{"role": "user", "content": "x"}], model="gpt-5")
        return gen, unknown.value, judge.known_models()

    gen, unknown, known = with_judge(fake, use, models={"gpt-4o-mini": "fake-model"})
    assert gen.text == "echo: Classify: hi" and gen.choices == [gen.text, gen.text + " #1"]
    assert (gen.prompt_tokens, gen.completion_tokens, gen.model) == (11, 7, "fake-model")
    body = fake.requests[0]
    assert (body["model"], body["temperature"], body["top_p"], body["n"]) == (
        "fake-model",
        0.3,
        0.9,
        2,
    )
    assert "stream" not in body and "response_format" not in body
    assert unknown.name == "gpt-5" and unknown.known == ["fake-model", "gpt-4o-mini"]
    assert "[judge.models]" in str(unknown) and known == unknown.known


def test_vendor_model_routed_to_its_own_server(fake: FakeOpenAI) -> None:
    with FakeOpenAI(model="big-model") as other:

        async def use(judge: OpenAIJudge):
            await judge.check()  # checks the other server too
            gen = await judge.generate([{"role": "user", "content": "hi"}], model="gpt-4o")
            score = await judge.json_score([], {"actual": "a", "ideal": "b"}, model="gpt-4o")
            return gen, score

        models = {"gpt-4o": {"urls": [other.url], "model": "big-model"}}
        gen, score = with_judge(fake, use, models=models)
    assert gen.model == "big-model" and score == 0.75
    assert fake.count == 0 and other.count == 2


def test_score_on_a_scale_with_dimensions(fake: FakeOpenAI) -> None:
    async def use(judge: OpenAIJudge):
        default = await judge.score(
            variables={"input": "q", "output": "a", "reference": "b"},
            max_score=5,
            dimensions=[
                {"dimension": "accuracy", "description": "facts"},
                {"dimension": "fluency"},
            ],
        )
        custom = await judge.score(
            prompt_template="Rate {{ output }} for {input} on {metric}, 0-{max_score}.",
            variables={"input": "q", "output": "a", "reference": "ref-text", "metric": "truth"},
            max_score=10,
            min_score=0,
        )
        return default, custom

    default, custom = with_judge(fake, use, explanation_max_chars=0)
    assert default.value == 5 and default.bucket == 5
    assert default.per_dimension == {"accuracy": 5, "fluency": 5}
    schema = fake.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["score"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert fake.requests[1]["response_format"]["json_schema"]["schema"]["properties"][
        "explanation"
    ] == {"type": "string"}  # explanation_max_chars=0: no bound
    assert schema["properties"]["dimensions"]["required"] == ["accuracy", "fluency"]
    assert "- accuracy: facts" in fake.requests[0]["messages"][0]["content"]
    assert custom.value == 10 and custom.per_dimension is None
    prompt = fake.requests[1]["messages"][0]["content"]
    assert prompt.startswith("Rate a for q on truth, 0-10.")
    assert "Reference:\nref-text" in prompt  # not placed by the template: appended
    assert "an integer from 0 to 10" in prompt


def test_unscorable_answers_become_minus_one(fake: FakeOpenAI) -> None:
    fake.script.extend(["out_of_range"] * 3)

    async def use(judge: OpenAIJudge):
        return await judge.score(
            variables={"output": "a", "reference": "b"}, max_score=5
        ), judge.usage

    score, usage = with_judge(fake, use, output_retries=2)
    assert score.value is None and score.bucket == -1
    assert score.explanation.startswith("unscorable:") and "outside 1..5" in score.explanation
    assert usage.invalid_outputs == 3 and usage.errors == 1


def test_json_score_fills_spice_parameterized_prompts(fake: FakeOpenAI) -> None:
    metadata = {"input": "2+2?", "actual": "4", "ideal": "four"}

    async def use(judge: OpenAIJudge):
        spice = await judge.json_score([{"role": "user", "content": ""}], metadata)
        mine = await judge.json_score(
            [{"role": "system", "content": "Judge {{ actual }} against {{ideal}}."}], metadata
        )
        return spice, mine

    assert with_judge(fake, use) == (0.75, 0.75)
    default_prompt = fake.requests[0]["messages"][0]["content"]
    assert "Model answer:\n4" in default_prompt and "Ideal answer:\nfour" in default_prompt
    assert fake.requests[1]["messages"] == [{"role": "system", "content": "Judge 4 against four."}]
    assert "metadata" not in fake.requests[0]
    schema = fake.requests[0]["response_format"]["json_schema"]["schema"]
    # Our prompt's scale is in the schema; a caller's own prompt keeps its own scale.
    assert schema["properties"]["score"] == {"type": "number", "minimum": 0.0, "maximum": 1.0}
    own = fake.requests[1]["response_format"]["json_schema"]["schema"]
    assert own["properties"]["score"] == {"type": "number"}

    fake.script.extend(["no_score"] * 3)

    async def bad(judge: OpenAIJudge):
        await judge.json_score([], metadata)

    with pytest.raises(EngineError, match="'score'"):
        with_judge(fake, bad)


def test_usage_scopes_count_each_job_apart(fake: FakeOpenAI) -> None:
    async def job(judge: OpenAIJudge, n: int):
        with usage_scope() as usage:
            # Tasks spawned inside the scope count towards it too.
            await asyncio.gather(
                *(
                    asyncio.ensure_future(judge.generate([{"role": "user", "content": f"{n}-{i}"}]))
                    for i in range(n)
                )
            )
        return usage

    async def use(judge: OpenAIJudge):
        a, b = await asyncio.gather(job(judge, 2), job(judge, 3))
        return a, b, judge.usage

    a, b, total = with_judge(fake, use)
    assert (a.requests, a.prompt_tokens, a.completion_tokens) == (2, 22, 14)
    assert (b.requests, b.prompt_tokens, b.completion_tokens) == (3, 33, 21)
    assert total.requests == 5


def test_judge_for_builds_without_a_loop() -> None:
    # The server builds engines before its event loop runs: nothing may need one.
    judge = judge_for(model="m", urls=["http://127.0.0.1:9/v1"])
    assert judge.name == "openai:m"
    run(judge.aclose)
