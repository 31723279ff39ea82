"""The double over HTTP (llm/double/server.py): OpenAI-shaped replies, the endpoints, the knobs' faults."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import pytest_asyncio

from agents import decode
from llm.double.chat import chat_decode_instructions
from llm.double.faults import FIVE_XX_CYCLE, MALFORMED_TEXT, DoubleConfig
from llm.double.plain import decode_reply
from llm.double.replies import answer_for
from llm.double.server import LLMDouble
from tests.unit.llm.double.conversations import DECODE, META, TAILOR, prompt_text, user


@pytest_asyncio.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def chat(http: aiohttp.ClientSession, double: LLMDouble, text: str = "Hello?", **extra):
    payload = {"model": "strong", "messages": user(text), "temperature": 0.7, "max_tokens": 512, **extra}
    async with http.post(f"{double.base_url}/chat/completions", json=payload) as response:
        raw = await response.text()
        return response.status, response.headers, raw


async def get_json(http: aiohttp.ClientSession, double: LLMDouble, path: str, method: str = "GET", **kwargs):
    async with http.request(method, double.base_url.removesuffix("/v1") + path, **kwargs) as response:
        return response.status, await response.json()


@pytest.mark.asyncio
async def test_a_response_is_shaped_like_openais(http):
    async with LLMDouble() as double:
        status, _, raw = await chat(http, double, DECODE)
    body = json.loads(raw)
    assert status == 200
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "strong"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == decode_reply(f"{DECODE}")
    assert body["usage"]["prompt_tokens"] == len(DECODE.split())
    assert body["usage"]["completion_tokens"] == len(choice["message"]["content"].split())


@pytest.mark.asyncio
async def test_the_same_request_gets_the_same_reply(http):
    async with LLMDouble() as double:
        first = await chat(http, double, TAILOR)
        second = await chat(http, double, TAILOR)
    content = [json.loads(raw)["choices"][0]["message"]["content"] for _, _, raw in (first, second)]
    assert content[0] == content[1]


@pytest.mark.asyncio
async def test_models_stats_and_reset(http):
    async with LLMDouble() as double:
        status, models = await get_json(http, double, "/v1/models")
        assert status == 200 and models["data"][0]["id"]
        await chat(http, double, DECODE)
        await chat(http, double, "Why?")
        await chat(http, double, "Why?", messages="not a list")

        _, stats = await get_json(http, double, "/stats")
        assert stats["calls"] == 3
        assert stats["by_kind"] == {
            "judge": 0,
            "rubrics": 0,
            "tailor": 0,
            "augment": 0,
            "decode": 1,
            "encode": 0,
            "answer": 1,
        }
        assert stats["by_status"] == {"200": 2, "400": 1}
        assert stats["prompt_tokens"] == len(DECODE.split()) + 1
        assert stats["completion_tokens"] > 0
        assert (stats["in_flight"], stats["max_in_flight"]) == (0, 1)

        _, stats = await get_json(http, double, "/reset", method="POST")
        assert stats["calls"] == 0 and stats["by_status"] == {} and stats["prompt_tokens"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("knobs", "statuses"),
    [
        ({"rate_429": 1.0}, [429, 429, 429]),
        ({"rate_5xx": 1.0}, list(FIVE_XX_CYCLE) * 2),
        ({"down": True}, [503, 503]),
        ({"force_status": 404}, [404]),
        ({"api_key": "k"}, [401]),
        ({"rate_5xx": 1.0, "max_faults": 2}, [500, 502, 200, 200]),
        ({}, [200, 200]),
    ],
)
async def test_knobs_produce_the_statuses_asked(http, knobs, statuses):
    async with LLMDouble(DoubleConfig(**knobs)) as double:
        got = [(await chat(http, double))[0] for _ in statuses]
    assert got == statuses


@pytest.mark.asyncio
async def test_429s_carry_retry_after_when_configured(http):
    async with LLMDouble(DoubleConfig(rate_429=1.0, retry_after_s=2)) as double:
        status, headers, _ = await chat(http, double)
        double.configure(retry_after_s=None)
        _, headers_without, _ = await chat(http, double)
    assert (status, headers["Retry-After"]) == (429, "2")
    assert "Retry-After" not in headers_without


@pytest.mark.asyncio
async def test_fault_rates_are_roughly_the_rates_asked_and_repeat_with_the_seed(http):
    async def statuses(seed: int) -> list[int]:
        async with LLMDouble(DoubleConfig(rate_429=0.3, rate_5xx=0.2, random_seed=seed)) as double:
            return [(await chat(http, double))[0] for _ in range(200)]

    first, again, other = await statuses(1), await statuses(1), await statuses(2)
    assert first == again
    assert first != other
    assert 40 <= first.count(429) <= 80
    assert 20 <= sum(first.count(s) for s in FIVE_XX_CYCLE) <= 60


@pytest.mark.asyncio
async def test_bad_answers_are_the_kind_asked(http):
    async with LLMDouble(DoubleConfig(rate_malformed=1.0)) as double:
        _, _, malformed = await chat(http, double, DECODE)
        double.configure(rate_malformed=0.0, rate_empty_choices=1.0)
        _, _, empty = await chat(http, double, DECODE)
        double.configure(rate_empty_choices=0.0, rate_length=1.0)
        _, _, length = await chat(http, double, DECODE)
        double.configure(rate_length=0.0, rate_bad_json=1.0)
        status, _, bad_json = await chat(http, double, DECODE)
    assert json.loads(malformed)["choices"][0]["message"]["content"] == MALFORMED_TEXT
    assert json.loads(empty)["choices"] == []
    cut = json.loads(length)["choices"][0]
    assert cut["finish_reason"] == "length"
    assert decode_reply(DECODE).startswith(cut["message"]["content"])
    assert len(cut["message"]["content"]) < len(decode_reply(DECODE))
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(bad_json)


@pytest.mark.asyncio
async def test_max_tokens_cuts_the_reply(http):
    async with LLMDouble() as double:
        _, _, raw = await chat(http, double, DECODE, max_tokens=5)
    choice = json.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["message"]["content"].split()) == 5


@pytest.mark.asyncio
async def test_max_concurrency_turns_the_excess_away(http):
    async with LLMDouble(DoubleConfig(latency_ms=100, max_concurrency=3)) as double:
        results = await asyncio.gather(*(chat(http, double) for _ in range(8)))
        stats = double.stats()
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 200, 429, 429, 429, 429, 429]
    assert stats["by_status"] == {"200": 3, "429": 5}


@pytest.mark.asyncio
async def test_latency_is_applied(http):
    async with LLMDouble(DoubleConfig(latency_ms=150, jitter_ms=20)) as double:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(chat(http, double) for _ in range(5)))
        elapsed = loop.time() - started
    assert 0.13 <= elapsed < 0.5  # concurrent, not one after another


@pytest.mark.asyncio
async def test_control_changes_knobs_at_runtime(http):
    async with LLMDouble() as double:
        status, config = await get_json(http, double, "/control", method="POST", json={"down": True, "rate_429": 0.2})
        assert status == 200 and config["down"] is True and config["rate_429"] == 0.2
        assert (await chat(http, double))[0] == 503
        await get_json(http, double, "/control", method="POST", json={"down": False, "rate_429": 0.0})
        assert (await chat(http, double))[0] == 200
        for bad in ({"no_such_knob": 1}, {"rate_429": 2.0}, [1, 2]):
            status, error = await get_json(http, double, "/control", method="POST", json=bad)
            assert status == 400 and "bad control request" in error["error"]["message"]
        assert double.config.down is False


@pytest.mark.asyncio
async def test_control_switches_the_style(http):
    text = prompt_text(decode.build_prompt(META, n=3))

    async def content() -> str:
        status, _, raw = await chat(http, double, text)
        assert status == 200
        return json.loads(raw)["choices"][0]["message"]["content"]

    async with LLMDouble() as double:
        assert await content() == decode_reply(text)
        status, config = await get_json(http, double, "/control", method="POST", json={"style": "chat"})
        assert status == 200 and config["style"] == "chat"
        reply = await content()
        assert reply == answer_for("decode", user(text), "strong", "chat")
        assert decode.parse(reply, n=3) == tuple(chat_decode_instructions(text))
        status, _ = await get_json(http, double, "/control", method="POST", json={"style": "fancy"})
        assert status == 400 and double.config.style == "chat"
        await get_json(http, double, "/control", method="POST", json={"style": "plain"})
        assert await content() == decode_reply(text)
