"""The providers' quirks the double emulates (llm/double/providers.py, calls.py, server.py),
over raw HTTP: the token parameter, a fixed temperature, known models, the context length, where
the key goes, a gateway's headers, Azure OpenAI's and Anthropic's endpoints, each refused with
the provider's exact body; and what the last request carried."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from agents import decode, encode
from llm.double.cli import _parser, config_from
from llm.double.faults import DoubleConfig
from llm.double.plain import decode_reply
from llm.double.providers import redact_key
from llm.double.replies import answer_for
from llm.double.server import LLMDouble
from tests.unit.llm.double.conversations import DECODE, META, user

KEY = "sk-proj-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"  # 52 characters
AZURE_PATH = "/openai/deployments/{}/chat/completions"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest_asyncio.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def post(
    http: aiohttp.ClientSession, double: LLMDouble, path: str, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    """POST a JSON payload to a path of the double's root: status, response headers, body."""
    root = double.base_url.removesuffix("/v1")
    async with http.post(root + path, json=payload, headers=headers) as response:
        return response.status, response.headers, json.loads(await response.text())


async def get(http: aiohttp.ClientSession, double: LLMDouble, path: str, headers: dict[str, str] | None = None):
    async with http.get(double.base_url.removesuffix("/v1") + path, headers=headers) as response:
        return response.status, await response.json()


def chat_payload(text: str = "Hello?", **extra: Any) -> dict[str, Any]:
    return {"model": "strong", "messages": user(text), **extra}


async def chat(http, double, text: str = "Hello?", headers=None, **extra):
    return await post(http, double, "/v1/chat/completions", chat_payload(text, **extra), headers)


async def anthropic(http, double, payload=None, headers=ANTHROPIC_HEADERS, **extra):
    payload = payload or {"model": "claude-x", "max_tokens": 512, "messages": user("Hello?"), **extra}
    return await post(http, double, "/v1/messages", payload, headers)


def content(body: dict[str, Any]) -> str:
    return body["choices"][0]["message"]["content"]


def openai_error(message: str, type_="invalid_request_error", param=None, code=None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def anthropic_error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


# ---------------------------------------------------------------- the token parameter


@pytest.mark.asyncio
async def test_by_default_either_token_parameter_is_taken_and_cuts_the_reply(http):
    async with LLMDouble() as double:
        status_old, _, old = await chat(http, double, DECODE, max_tokens=5)
        status_new, _, new = await chat(http, double, DECODE, max_completion_tokens=4)
    assert (status_old, status_new) == (200, 200)
    assert len(content(old).split()) == 5 and old["choices"][0]["finish_reason"] == "length"
    assert len(content(new).split()) == 4 and new["choices"][0]["finish_reason"] == "length"


@pytest.mark.asyncio
async def test_a_model_that_takes_only_max_completion_tokens_refuses_max_tokens_as_openai_does(http):
    async with LLMDouble(DoubleConfig(token_parameter="max_completion_tokens")) as double:
        status, _, refused = await chat(http, double, DECODE, max_tokens=5)
        status_ok, _, taken = await chat(http, double, DECODE, max_completion_tokens=5)
    assert status == 400
    assert refused == openai_error(
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        param="max_tokens",
        code="unsupported_parameter",
    )
    assert status_ok == 200 and len(content(taken).split()) == 5


@pytest.mark.asyncio
async def test_an_older_server_refuses_max_completion_tokens_as_vllm_did(http):
    async with LLMDouble(DoubleConfig(token_parameter="max_tokens")) as double:
        status, _, refused = await chat(http, double, DECODE, max_completion_tokens=800)
        status_ok, _, taken = await chat(http, double, DECODE, max_tokens=3)
    assert status == 400
    assert refused == {  # no "error" wrapper: vLLM's own shape
        "object": "error",
        "message": "[{'type': 'extra_forbidden', 'loc': ('body', 'max_completion_tokens'), "
        "'msg': 'Extra inputs are not permitted', 'input': 800}]",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    assert status_ok == 200 and len(content(taken).split()) == 3


# ---------------------------------------------------------------- the temperature


@pytest.mark.asyncio
@pytest.mark.parametrize(("sent", "shown"), [(0.7, "0.7"), (0, "0"), (0.0, "0.0"), (2, "2")])
async def test_a_fixed_temperature_refuses_any_other_value_showing_it_as_sent(http, sent, shown):
    async with LLMDouble(DoubleConfig(fixed_temperature=True)) as double:
        status, _, refused = await chat(http, double, temperature=sent)
    assert status == 400
    assert refused == openai_error(
        f"Unsupported value: 'temperature' does not support {shown} with this model. "
        "Only the default (1) value is supported.",
        param="temperature",
        code="unsupported_value",
    )


@pytest.mark.asyncio
async def test_a_fixed_temperature_takes_1_or_none(http):
    async with LLMDouble(DoubleConfig(fixed_temperature=True)) as double:
        statuses = [(await chat(http, double, **extra))[0] for extra in ({}, {"temperature": 1}, {"temperature": 1.0})]
        double.configure(fixed_temperature=False)
        free = (await chat(http, double, temperature=0.7))[0]
    assert statuses == [200, 200, 200] and free == 200


# ---------------------------------------------------------------- models


@pytest.mark.asyncio
async def test_an_unknown_model_gets_openais_404_and_models_lists_the_known_ones(http):
    async with LLMDouble(DoubleConfig(known_models=["gpt-known", "strong"])) as double:
        status, _, refused = await post(
            http, double, "/v1/chat/completions", {"model": "gpt-x", "messages": user("Hi")}
        )
        ok = (await chat(http, double))[0]
        _, models = await get(http, double, "/v1/models")
    assert status == 404
    assert refused == openai_error(
        "The model `gpt-x` does not exist or you do not have access to it.", code="model_not_found"
    )
    assert ok == 200
    assert [m["id"] for m in models["data"]] == ["gpt-known", "strong"]
    assert models["object"] == "list" and models["data"][0]["object"] == "model"


@pytest.mark.asyncio
async def test_with_any_model_models_lists_those_asked_for_or_llm_double(http):
    async with LLMDouble() as double:
        _, before = await get(http, double, "/v1/models")
        await post(http, double, "/v1/chat/completions", {"model": "a", "messages": user("Hi")})
        await post(http, double, "/v1/chat/completions", {"model": "b", "messages": user("Hi")})
        await post(http, double, "/v1/chat/completions", {"model": "a", "messages": user("Hi")})
        _, after = await get(http, double, "/v1/models")
    assert [m["id"] for m in before["data"]] == ["llm-double"]
    assert [m["id"] for m in after["data"]] == ["a", "b"]


# ---------------------------------------------------------------- the context length


@pytest.mark.asyncio
async def test_a_prompt_over_the_context_length_gets_the_400_a_record_causes(http):
    async with LLMDouble(DoubleConfig(context_tokens=5)) as double:
        fits = (await chat(http, double, "one two three four five"))[0]
        status, _, refused = await chat(http, double, "one two three four five six seven")
    assert fits == 200 and status == 400
    assert refused == openai_error(
        "This model's maximum context length is 5 tokens. However, your messages resulted in 7 tokens. "
        "Please reduce the length of the messages.",
        param="messages",
        code="context_length_exceeded",
    )


# ---------------------------------------------------------------- keys


def test_keys_are_redacted_as_openai_shows_them():
    key = "sk-WRQsP" + "x" * 39 + "xQBt"  # a 51-character key, as in OpenAI's own 401s
    assert redact_key(key) == "sk-WRQsP" + "*" * 39 + "xQBt"
    assert redact_key(KEY) == KEY[:8] + "*" * (len(KEY) - 12) + KEY[-4:]
    assert redact_key("undefined") == "undefined"  # short: shown whole, as OpenAI does


@pytest.mark.asyncio
async def test_a_wrong_or_missing_bearer_key_gets_openais_401_with_the_key_redacted(http):
    wrong = "sk-wrong-0123456789-abcdefghijklmnop"
    async with LLMDouble(DoubleConfig(api_key=KEY)) as double:
        status, _, refused = await chat(http, double, headers={"Authorization": f"Bearer {wrong}"})
        missing_status, _, missing = await chat(http, double)
        ok = (await chat(http, double, headers={"Authorization": f"Bearer {KEY}"}))[0]
        models_refused = (await get(http, double, "/v1/models"))[0]
    assert status == 401
    assert refused == openai_error(
        f"Incorrect API key provided: {redact_key(wrong)}. "
        "You can find your API key at https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )
    assert wrong not in json.dumps(refused) and wrong[:8] in json.dumps(refused)
    assert missing_status == 401 and missing["error"]["message"].startswith("You didn't provide an API key.")
    assert missing["error"]["code"] is None
    assert ok == 200 and models_refused == 401


@pytest.mark.asyncio
async def test_the_401_still_echoes_the_request_headers_when_asked(http):
    async with LLMDouble(DoubleConfig(api_key=KEY, echo_headers=True)) as double:
        _, _, refused = await chat(http, double, headers={"Authorization": "Bearer sk-other-key-0000000000"})
    assert refused["error"]["code"] == "invalid_api_key"
    assert refused["error"]["request_headers"]["Authorization"] == "Bearer sk-other-key-0000000000"


@pytest.mark.asyncio
async def test_the_key_goes_where_auth_says_and_is_refused_in_that_providers_shape(http):
    async with LLMDouble(DoubleConfig(api_key=KEY, auth="api-key")) as double:
        ok = (await chat(http, double, headers={"api-key": KEY}))[0]
        status, _, azure = await chat(http, double, headers={"Authorization": f"Bearer {KEY}"})
        double.configure(auth="x-api-key")
        ok_anthropic = (await chat(http, double, headers={"x-api-key": KEY}))[0]
        wrong_status, _, wrong = await chat(http, double, headers={"x-api-key": "nope"})
        _, _, missing = await chat(http, double, headers={"Authorization": f"Bearer {KEY}"})
    assert (ok, ok_anthropic) == (200, 200)
    assert status == 401 and azure["error"]["code"] == "401"
    assert azure["error"]["message"].startswith("Access denied due to invalid subscription key or wrong API endpoint.")
    assert wrong_status == 401 and wrong == anthropic_error("authentication_error", "invalid x-api-key")
    assert missing == anthropic_error("authentication_error", "x-api-key header is required")


# ---------------------------------------------------------------- a gateway's headers


@pytest.mark.asyncio
async def test_required_headers_missing_get_401_and_wrong_get_403_without_showing_the_value(http):
    required = {"X-Team": "codeclm-secret-team"}
    async with LLMDouble(DoubleConfig(require_headers=required)) as double:
        missing_status, _, missing = await chat(http, double)
        wrong_status, _, wrong = await chat(http, double, headers={"X-Team": "other"})
        ok = (await chat(http, double, headers=required))[0]
        models = (await get(http, double, "/v1/models"))[0]
        anthropic_status, _, anthropic_body = await anthropic(http, double)
    assert (missing_status, wrong_status, ok, models, anthropic_status) == (401, 403, 200, 401, 401)
    assert missing == openai_error(
        "Authentication Error, the header X-Team is missing", type_="auth_error", param="None", code="401"
    )
    assert wrong["error"]["code"] == "403" and "X-Team" in wrong["error"]["message"]
    assert anthropic_body["error"]["type"] == "authentication_error"
    assert all("codeclm-secret-team" not in json.dumps(b) for b in (missing, wrong, anthropic_body))


# ---------------------------------------------------------------- Azure OpenAI


@pytest.mark.asyncio
async def test_azure_answers_as_the_chat_endpoint_with_the_deployment_as_model(http):
    path = AZURE_PATH.format("my-gpt") + "?api-version=2024-10-21"
    async with LLMDouble(DoubleConfig(api_key=KEY)) as double:
        status, _, body = await post(
            http, double, path, {"messages": user(DECODE), "max_tokens": 512}, {"api-key": KEY}
        )
        sent_path, sent_headers = double.last_path, double.last_headers
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "my-gpt"
    assert content(body) == decode_reply(DECODE)
    assert sent_path == path and sent_headers["api-key"] == KEY


@pytest.mark.asyncio
async def test_azure_faults_are_the_chat_endpoints(http):
    path = AZURE_PATH.format("my-gpt") + "?api-version=2024-10-21"
    async with LLMDouble(DoubleConfig(rate_5xx=1.0)) as azure, LLMDouble(DoubleConfig(rate_5xx=1.0)) as plain:
        from_azure = [await post(http, azure, path, {"messages": user("Hi")}) for _ in range(3)]
        from_chat = [await chat(http, plain) for _ in range(3)]
    assert [(s, b) for s, _, b in from_azure] == [(s, b) for s, _, b in from_chat]
    assert [s for s, _, _ in from_azure] == [500, 502, 503]


@pytest.mark.asyncio
async def test_azure_without_api_version_is_resource_not_found(http):
    async with LLMDouble() as double:
        status, _, body = await post(http, double, AZURE_PATH.format("my-gpt"), {"messages": user("Hi")})
    assert (status, body) == (404, {"error": {"code": "404", "message": "Resource not found"}})


@pytest.mark.asyncio
async def test_azure_refuses_a_wrong_key_and_an_unknown_deployment_in_its_shape(http):
    path = AZURE_PATH.format("{}") + "?api-version=2024-10-21"
    payload = {"messages": user("Hi")}
    async with LLMDouble(
        DoubleConfig(api_key=KEY, known_models=["my-gpt"], token_parameter="max_completion_tokens")
    ) as d:
        bearer_status, _, bearer = await post(
            http, d, path.format("my-gpt"), payload, {"Authorization": f"Bearer {KEY}"}
        )
        unknown_status, _, unknown = await post(http, d, path.format("other"), payload, {"api-key": KEY})
        old_status, _, old = await post(http, d, path.format("my-gpt"), {**payload, "max_tokens": 5}, {"api-key": KEY})
    assert bearer_status == 401 and bearer["error"]["code"] == "401"
    assert unknown_status == 404 and unknown["error"]["code"] == "DeploymentNotFound"
    assert old_status == 400 and old["error"]["code"] == "unsupported_parameter"  # OpenAI's body, as Azure passes it


# ---------------------------------------------------------------- Anthropic's Messages API


def as_anthropic(messages: list[dict[str, str]], *, blocks: bool = False) -> dict[str, Any]:
    """An OpenAI conversation as a Messages body: system messages become `system`."""
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")

    def text(s: str) -> Any:
        return [{"type": "text", "text": s}] if blocks else s

    turns = [{"role": m["role"], "content": text(m["content"])} for m in messages if m["role"] != "system"]
    return {"model": "claude-x", "max_tokens": 4096, "system": text(system), "messages": turns, "temperature": 0.7}


@pytest.mark.asyncio
@pytest.mark.parametrize("blocks", [False, True])
async def test_anthropic_replies_in_its_shape_with_what_the_chat_endpoint_answers(http, blocks):
    conversations = [decode.build_prompt(META, n=3), encode.build_prompt("Write a sonnet about rain.", max_skills=3)]
    async with LLMDouble() as double:
        for messages in conversations:
            status, _, body = await anthropic(http, double, as_anthropic(messages, blocks=blocks))
            _, _, chat_body = await post(
                http, double, "/v1/chat/completions", {"model": "claude-x", "messages": messages}
            )
            assert status == 200
            assert set(body) == {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
            assert body["id"].startswith("msg_") and (body["type"], body["role"]) == ("message", "assistant")
            assert body["model"] == "claude-x" and body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
            assert body["content"] == [{"type": "text", "text": content(chat_body)}]
            assert body["usage"] == {
                "input_tokens": chat_body["usage"]["prompt_tokens"],
                "output_tokens": chat_body["usage"]["completion_tokens"],
            }
        assert double.stats()["by_kind"]["decode"] == 2 and double.stats()["by_kind"]["encode"] == 2


@pytest.mark.asyncio
async def test_anthropic_stops_at_max_tokens(http):
    async with LLMDouble() as double:
        _, _, body = await anthropic(http, double, {"model": "claude-x", "max_tokens": 4, "messages": user(DECODE)})
    assert body["stop_reason"] == "max_tokens"
    assert body["content"][0]["text"] == " ".join(answer_for("decode", user(DECODE), "claude-x").split(" ")[:4])
    assert body["usage"]["output_tokens"] == 4


@pytest.mark.asyncio
async def test_anthropic_bad_answers_are_the_kind_asked(http):
    async with LLMDouble(DoubleConfig(rate_empty_choices=1.0)) as double:
        _, _, empty = await anthropic(http, double)
        double.configure(rate_empty_choices=0.0, rate_length=1.0)
        _, _, cut = await anthropic(http, double, {"model": "claude-x", "max_tokens": 512, "messages": user(DECODE)})
    assert empty["content"] == [] and empty["usage"]["output_tokens"] == 0
    assert cut["stop_reason"] == "max_tokens" and decode_reply(DECODE).startswith(cut["content"][0]["text"])


@pytest.mark.asyncio
async def test_anthropic_refuses_in_its_shape(http):
    async with LLMDouble(DoubleConfig(api_key=KEY, known_models=["claude-x"], context_tokens=3)) as double:
        keyed = {**ANTHROPIC_HEADERS, "x-api-key": KEY}
        no_version = await anthropic(http, double, headers={"x-api-key": KEY})
        no_key = await anthropic(http, double)
        wrong_key = await anthropic(http, double, headers={**ANTHROPIC_HEADERS, "x-api-key": "nope"})
        bearer = await anthropic(http, double, headers={**ANTHROPIC_HEADERS, "Authorization": f"Bearer {KEY}"})
        no_max = await anthropic(http, double, {"model": "claude-x", "messages": user("Hi")}, keyed)
        unknown = await anthropic(http, double, {"model": "claude-y", "max_tokens": 9, "messages": user("Hi")}, keyed)
        too_long = await anthropic(
            http, double, {"model": "claude-x", "max_tokens": 9, "messages": user("a b c d")}, keyed
        )
        ok = await anthropic(http, double, {"model": "claude-x", "max_tokens": 9, "messages": user("a b c")}, keyed)
    got = {
        name: (status, body)
        for name, (status, _, body) in {
            "no_version": no_version,
            "no_key": no_key,
            "wrong_key": wrong_key,
            "bearer": bearer,
            "no_max": no_max,
            "unknown": unknown,
            "too_long": too_long,
        }.items()
    }
    assert got == {
        "no_version": (400, anthropic_error("invalid_request_error", "anthropic-version: header is required")),
        "no_key": (401, anthropic_error("authentication_error", "x-api-key header is required")),
        "wrong_key": (401, anthropic_error("authentication_error", "invalid x-api-key")),
        "bearer": (401, anthropic_error("authentication_error", "x-api-key header is required")),
        "no_max": (400, anthropic_error("invalid_request_error", "max_tokens: Field required")),
        "unknown": (404, anthropic_error("not_found_error", "model: claude-y")),
        "too_long": (400, anthropic_error("invalid_request_error", "prompt is too long: 4 tokens > 3 maximum")),
    }
    assert ok[0] == 200


@pytest.mark.asyncio
async def test_anthropic_faults_are_its_429_500_529(http):
    async with LLMDouble(DoubleConfig(rate_429=1.0, retry_after_s=3)) as double:
        status, headers, limited = await anthropic(http, double)
        double.configure(rate_429=0.0, rate_5xx=1.0)
        five_xx = [await anthropic(http, double) for _ in range(3)]
        double.configure(rate_5xx=0.0, down=True)
        down_status, _, down = await anthropic(http, double)
        double.configure(down=False, force_status=529)
        forced_status, _, forced = await anthropic(http, double)
    assert (status, headers["retry-after"]) == (429, "3")
    assert limited == anthropic_error(
        "rate_limit_error", "This request would exceed your account's rate limit. Please try again later."
    )
    assert [(s, b) for s, _, b in five_xx] == [
        (500, anthropic_error("api_error", "Internal server error")),
        (529, anthropic_error("overloaded_error", "Overloaded")),
        (500, anthropic_error("api_error", "Internal server error")),
    ]
    assert down_status == 503 and down["error"]["type"] == "api_error"
    assert (forced_status, forced) == (529, anthropic_error("overloaded_error", "Overloaded"))


@pytest.mark.asyncio
async def test_anthropic_models_list_in_its_shape(http):
    async with LLMDouble(DoubleConfig(known_models=["claude-a", "claude-b"])) as double:
        status, models = await get(http, double, "/v1/models", ANTHROPIC_HEADERS)
    assert status == 200
    assert [m["id"] for m in models["data"]] == ["claude-a", "claude-b"]
    assert models["data"][0]["type"] == "model" and models["data"][0]["display_name"] == "claude-a"
    assert (models["has_more"], models["first_id"], models["last_id"]) == (False, "claude-a", "claude-b")


# ---------------------------------------------------------------- what the last request carried


@pytest.mark.asyncio
async def test_the_last_request_its_headers_and_path_are_kept(http):
    async with LLMDouble() as double:
        assert (double.last_request, double.last_headers, double.last_path) == (None, None, None)
        await chat(http, double, headers={"X-Trace": "t1"}, max_completion_tokens=7)
        assert double.last_request == chat_payload(max_completion_tokens=7)
        assert double.last_headers["X-Trace"] == "t1" and double.last_path == "/v1/chat/completions"
        await anthropic(http, double, headers={**ANTHROPIC_HEADERS, "x-api-key": "k"})
        assert double.last_path == "/v1/messages" and double.last_headers["x-api-key"] == "k"
        assert double.last_request["model"] == "claude-x"


# ---------------------------------------------------------------- the knobs: constructor, /control, CLI


@pytest.mark.asyncio
async def test_control_sets_the_provider_knobs_and_refuses_bad_values(http):
    knobs = {
        "token_parameter": "max_completion_tokens",
        "fixed_temperature": True,
        "known_models": ["m"],
        "context_tokens": 100,
        "auth": "x-api-key",
        "require_headers": {"X-Team": "t"},
    }
    async with LLMDouble() as double:
        status, _, config = await post(http, double, "/control", knobs)
        assert status == 200 and {k: config[k] for k in knobs} == knobs
        for bad in (
            {"token_parameter": "max_output_tokens"},
            {"auth": "basic"},
            {"known_models": "m"},
            {"context_tokens": 0},
            {"require_headers": ["X-Team"]},
        ):
            status, _, error = await post(http, double, "/control", bad)
            assert status == 400 and "bad control request" in error["error"]["message"], bad
        assert {k: getattr(double.config, k) for k in knobs} == knobs


def test_the_defaults_keep_todays_behaviour():
    config = DoubleConfig()
    assert (config.token_parameter, config.fixed_temperature, config.known_models) == ("any", False, None)
    assert (config.context_tokens, config.auth, config.require_headers) == (None, "bearer", {})


def test_every_provider_knob_has_a_flag():
    args = _parser().parse_args(
        [
            "--token-parameter", "max_tokens", "--fixed-temperature", "--known-models", "a", "b",
            "--context-tokens", "64", "--auth", "api-key", "--api-key", "k",
            "--require-headers", "X-Team=t", "X-Env=a=b",
        ]
    )  # fmt: skip
    config = config_from(args)
    assert (config.token_parameter, config.fixed_temperature, config.known_models) == ("max_tokens", True, ["a", "b"])
    assert (config.context_tokens, config.auth, config.api_key) == (64, "api-key", "k")
    assert config.require_headers == {"X-Team": "t", "X-Env": "a=b"}
    assert config_from(_parser().parse_args([])) == DoubleConfig()
    for bad in (["--token-parameter", "x"], ["--auth", "basic"], ["--require-headers", "novalue"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(bad)
