"""`codeclm check`'s verdicts and lines: the broker, each endpoint's probe (against the LLM double,
a stand-in for an OpenAI-compatible server, in this process), and the last line naming what to
fix. A probe never waits for a fix: a refusal stops it at once."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from llm.double import DoubleConfig, LLMDouble
from llm.settings import EndpointSettings
from streams.kafka.broker import free_port
from streams.ops.check import (
    BrokerCheck,
    CallResult,
    EndpointCheck,
    ModelList,
    Problem,
    Refused,
    check_broker,
    check_endpoint,
    model_ids,
    summary_line,
    watched,
)
from streams.settings import Settings, overlay

KEY = "sk-check-0123456789abcdef"
ENDPOINT = EndpointSettings(base_url="http://127.0.0.1:8000/v1", model="small-7b")
ANSWERED = CallResult(latency_s=0.02, token_parameter="max_tokens", model="small-7b")


# -- the verdict of each probe -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "verdict", "fix"),
    [
        (ANSWERED, "ok", None),
        (None, "down", "down: nothing answers at http://127.0.0.1:8000/v1: start it, or set CODECLM_TARGET__BASE_URL"),
        (CallResult(error="timed out after 5.0s after 2 attempts"), "down", "nothing answers at"),
        (CallResult(status=503, error="HTTP 503: overloaded"), "down", "http://127.0.0.1:8000/v1 answers HTTP 503"),
        (CallResult(status=401, error="HTTP 401: bad key", refused=True), "wrong API key", "CODECLM_TARGET__API_KEY"),
        (CallResult(status=403, error="HTTP 403: no", refused=True), "key not allowed to use the model", "__MODEL"),
        (CallResult(status=404, error="HTTP 404: no such model", refused=True), "unknown model (or URL)", "__MODEL"),
        (CallResult(status=400, error="HTTP 400: bad parameter"), "refuses the request", "__TOKEN_PARAMETER"),
        (CallResult(status=429, error="HTTP 429: slow down"), "failed", "HTTP 429: slow down"),
    ],
)
def test_each_outcome_of_the_call_has_its_verdict_and_names_what_to_fix(call, verdict, fix):
    check = EndpointCheck("target", ENDPOINT, models=ModelList(status=404), call=call)
    assert check.verdict == verdict
    problems = check.problems()
    if fix is None:
        assert problems == []
    else:
        (problem,) = problems
        assert problem.subject == "target endpoint" and fix in problem.fix


def test_an_unreadable_key_file_is_named():
    check = EndpointCheck("strong", ENDPOINT, key_error="/run/secrets/key: No such file or directory")
    assert check.verdict == "no key"
    assert "CODECLM_STRONG__API_KEY_FILE" in str(check.problems()[0])


def test_an_answered_call_shows_its_latency_and_token_parameter():
    call = CallResult(latency_s=0.1234, token_parameter="max_completion_tokens", sends_temperature=False, model="x")
    lines = EndpointCheck("strong", ENDPOINT, ModelList(ids=("small-7b",)), call).lines()
    assert lines == [
        "endpoint strong: model small-7b at http://127.0.0.1:8000/v1 (openai)",
        "  models: the model is listed",
        "  call: answered by x in 123 ms; token parameter max_completion_tokens; "
        "no temperature (it takes only its default)",
    ]


@pytest.mark.parametrize(
    ("models", "text"),
    [
        (ModelList(ids=("a", "small-7b")), "the model is listed"),
        (ModelList(ids=tuple("abcdefg")), "the model is not among the 7 it lists (a, b, c, d, e, ...)"),
        (ModelList(status=404), "no model list"),  # no list is not a failure
        (ModelList(status=401), "no model list: HTTP 401"),
        (ModelList(error="no answer within 5s"), "no answer: no answer within 5s"),
    ],
)
def test_what_the_models_url_said(models, text):
    assert models.text("small-7b") == text


def test_model_ids_of_openai_and_anthropic_lists():
    assert model_ids({"object": "list", "data": [{"id": "a"}, {"id": "b"}]}) == ("a", "b")
    assert model_ids({"data": [{"type": "model", "id": "claude"}], "has_more": False}) == ("claude",)
    assert model_ids({"models": []}) is None
    assert model_ids(["a"]) is None


# -- the broker --------------------------------------------------------------------------------


def test_a_broker_that_does_not_answer_is_a_problem_missing_topics_are_not():
    down = BrokerCheck("127.0.0.1:1", "codeclm.", error="KafkaConnectionError: Unable to bootstrap")
    assert down.lines() == ["broker 127.0.0.1:1: not reachable: KafkaConnectionError: Unable to bootstrap"]
    (problem,) = down.problems()
    assert problem.subject == "broker" and "CODECLM_KAFKA__BOOTSTRAP_SERVERS" in problem.fix

    up = BrokerCheck(
        "127.0.0.1:9092", "codeclm.", present=("seeds", "decoded"), missing=("accepted",),
        partitions=(("seeds", 4), ("decoded", 1)),
    )  # fmt: skip
    assert up.problems() == []
    assert up.lines() == [
        "broker 127.0.0.1:9092: reachable; topics (prefix codeclm.): 2 of 3 exist",
        "  exist: seeds (4), decoded (1)",
        "  missing: accepted (the worker creates them at start, or `codeclm topics`)",
    ]


async def test_an_address_nothing_listens_on_is_reported_at_once():
    settings = overlay(Settings(), {"kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}"}})
    started = time.monotonic()
    broker = await check_broker(settings, timeout_s=3)
    assert broker.error is not None and broker.problems()
    assert time.monotonic() - started < 3


# -- the last line -----------------------------------------------------------------------------


def test_the_last_line_names_every_problem():
    assert summary_line([]) == "check passed: the broker and every endpoint answer"
    assert summary_line([], seeded=True).endswith("and the seed went through every stage")
    line = summary_line([Problem("broker", "start it"), Problem("strong endpoint", "set the key")])
    assert line == "check failed: fix broker: start it; strong endpoint: set the key"


# -- watching a call ---------------------------------------------------------------------------


class FakeClient:
    role = "strong"
    refused: str | None = None
    refused_status: int | None = None


async def test_watched_returns_the_result():
    async def answer() -> str:
        return "ok"

    assert await watched(answer(), [FakeClient()], 1) == "ok"


async def test_watched_stops_a_call_that_waits_for_a_refusal_to_be_fixed():
    client = FakeClient()
    cancelled = asyncio.Event()

    async def waits_for_a_fix() -> None:
        client.refused, client.refused_status = "HTTP 401: bad key", 401
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(Refused) as refused:
        await watched(waits_for_a_fix(), [client], 30)
    assert (refused.value.role, refused.value.status) == ("strong", 401)
    assert cancelled.is_set()


async def test_watched_gives_up_at_its_deadline():
    with pytest.raises(TimeoutError):
        await watched(asyncio.sleep(60), [FakeClient()], 0.1)


# -- probing an endpoint (the LLM double in this process) ---------------------------------------


async def probe(config: DoubleConfig, timeout_s: float = 2.0, **endpoint) -> EndpointCheck:
    async with LLMDouble(config) as double:
        settings = EndpointSettings(base_url=double.base_url, **{"model": "gpt-5-mini", "api_key": KEY, **endpoint})
        async with aiohttp.ClientSession() as session:
            return await check_endpoint("strong", settings, session, timeout_s, temperature=0.7)


async def test_an_endpoint_that_takes_max_completion_tokens_and_no_temperature_is_learned():
    config = DoubleConfig(
        api_key=KEY, known_models=["gpt-5-mini"], token_parameter="max_completion_tokens", fixed_temperature=True
    )
    check = await probe(config)
    assert check.verdict == "ok"
    assert check.models == ModelList(ids=("gpt-5-mini",), status=200)
    assert check.call is not None and check.call.token_parameter == "max_completion_tokens"
    assert check.call.sends_temperature is False


@pytest.mark.parametrize(
    ("config", "endpoint", "verdict"),
    [
        (DoubleConfig(api_key="another-key-0123456789"), {}, "wrong API key"),
        (DoubleConfig(known_models=["gpt-4o"]), {}, "unknown model (or URL)"),
    ],
)
async def test_a_refused_configuration_is_reported_without_waiting_for_a_fix(config, endpoint, verdict):
    started = time.monotonic()
    check = await probe(config, **endpoint)
    assert check.verdict == verdict
    assert check.call is not None and check.call.refused
    assert time.monotonic() - started < 2  # the client would wait refused_probe_s (60 s) for a fix


async def test_a_port_nothing_listens_on_is_down_without_a_call():
    endpoint = EndpointSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m")
    async with aiohttp.ClientSession() as session:
        check = await check_endpoint("target", endpoint, session, 2.0, temperature=0.7)
    assert check.verdict == "down" and check.call is None
    assert check.lines()[-1] == "  call: not made (nothing answers)"


async def test_azure_keeps_no_model_list_and_that_is_no_problem():
    async with LLMDouble(DoubleConfig(api_key=KEY, known_models=["my-gpt4o"])) as double:
        root = (double.base_url or "").removesuffix("/v1")
        endpoint = EndpointSettings(
            provider="azure", base_url=f"{root}/openai/deployments/my-gpt4o", model="my-gpt4o", api_key=KEY
        )
        async with aiohttp.ClientSession() as session:
            check = await check_endpoint("target", endpoint, session, 2.0, temperature=0.7)
    assert check.models is not None and check.models.text("my-gpt4o") == "no model list"
    assert check.verdict == "ok" and check.problems() == []
