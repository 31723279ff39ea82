"""The chat client against a real LLM double on 127.0.0.1: retries, limits, and keys kept secret."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime

import aiohttp
import pytest
import pytest_asyncio
from pydantic import SecretStr

from llm.base import LLMError
from llm.client import (
    OpenAIChatClient,
    backoff_delay,
    build_clients,
    open_session,
    parse_retry_after,
    redact,
)
from llm.double import DoubleConfig, LLMDouble, chat_body
from llm.local import free_port
from llm.metrics import ENDPOINT_REFUSED
from llm.wire import MalformedResponseError, parse_chat_response
from streams.settings import EndpointSettings

MESSAGES = [{"role": "user", "content": "What is a monad?"}]
# Small waits so the suite is fast; max_retries 3 leaves room for the faults the tests inject.
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0, "max_retries": 3}
SECRET = "sk-test-0123456789-SECRET"


@pytest_asyncio.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest_asyncio.fixture
async def double():
    async with LLMDouble(DoubleConfig(random_seed=7)) as d:
        yield d


def client_for(
    double: LLMDouble, session: aiohttp.ClientSession, *, pause_when_down: bool = True, role: str = "llm", **overrides
) -> OpenAIChatClient:
    assert double.base_url is not None
    return OpenAIChatClient(
        EndpointSettings(base_url=double.base_url, model="strong", **{**FAST, **overrides}),
        session,
        pause_when_down=pause_when_down,
        role=role,
    )


async def ask(client: OpenAIChatClient, max_tokens: int = 256):
    return await client.complete(MESSAGES, temperature=0.3, max_tokens=max_tokens)


class RecordingSleep:
    """Stands in for asyncio.sleep to see the delays the client chose."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


# ---------------------------------------------------------------- success


@pytest.mark.asyncio
async def test_success_carries_text_usage_and_parameters(double, session):
    completion = await client_for(double, session).complete(MESSAGES, temperature=0.3, max_tokens=256, sample=5)

    assert completion.text.startswith("Answer from strong:")
    assert completion.model == "strong"
    assert completion.prompt_tokens == 4  # words of "What is a monad?"
    assert completion.completion_tokens == len(completion.text.split())
    assert completion.finish_reason == "stop"
    assert completion.attempts == 1
    assert completion.latency_s > 0
    assert double.last_request == {"model": "strong", "messages": MESSAGES, "temperature": 0.3, "max_tokens": 256}


@pytest.mark.asyncio
async def test_max_tokens_reaches_the_server(double, session):
    completion = await ask(client_for(double, session), max_tokens=3)

    assert completion.finish_reason == "length"
    assert completion.completion_tokens == 3


# ---------------------------------------------------------------- retries


@pytest.mark.asyncio
async def test_429_waits_as_long_as_retry_after_says(double, session):
    double.configure(rate_429=1.0, retry_after_s=0.3, max_faults=1)
    started = time.monotonic()
    completion = await ask(client_for(double, session, backoff_max_s=0.1))  # caps Retry-After at 0.4 s
    waited = time.monotonic() - started

    assert completion.attempts == 2
    assert 0.3 <= waited < 0.5  # the computed backoff would have been at most 0.01 s
    assert double.stats()["by_status"] == {"200": 1, "429": 1}


@pytest.mark.asyncio
async def test_retry_after_is_capped_at_four_backoff_maxima(double, session):
    double.configure(rate_429=1.0, retry_after_s=30, max_faults=1)
    sleep = RecordingSleep()
    client = OpenAIChatClient(EndpointSettings(base_url=double.base_url, model="m", **FAST), session, sleep=sleep)

    await ask(client)

    assert sleep.delays == [pytest.approx(FAST["backoff_max_s"] * 4)]


@pytest.mark.asyncio
async def test_429_without_retry_after_backs_off_with_jitter(double, session):
    double.configure(rate_429=1.0, max_faults=3)
    sleep = RecordingSleep()
    client = OpenAIChatClient(EndpointSettings(base_url=double.base_url, model="m", **FAST), session, sleep=sleep)

    completion = await ask(client)

    assert completion.attempts == 4
    caps = [min(FAST["backoff_max_s"], FAST["backoff_base_s"] * 2**i) for i in range(3)]
    assert len(sleep.delays) == 3
    assert all(0 <= d <= cap for d, cap in zip(sleep.delays, caps, strict=True))


@pytest.mark.asyncio
async def test_server_errors_are_retried_until_an_answer(double, session):
    double.configure(rate_5xx=1.0, max_faults=3)

    completion = await ask(client_for(double, session))

    assert completion.attempts == 4
    assert double.stats()["by_status"] == {"200": 1, "500": 1, "502": 1, "503": 1}


@pytest.mark.asyncio
async def test_exhausted_retries_raise_with_the_attempt_count(double, session):
    double.configure(rate_5xx=1.0)

    with pytest.raises(LLMError) as caught:
        await ask(client_for(double, session, max_retries=2, pause_when_down=False))

    assert caught.value.attempts == 3
    assert caught.value.status == 503  # the third of 500, 502, 503
    assert caught.value.retryable
    assert double.stats()["calls"] == 3


@pytest.mark.asyncio
async def test_a_hanging_request_times_out_and_is_retried(double, session):
    double.configure(rate_timeout=1.0, hang_s=5.0, max_faults=1)
    started = time.monotonic()

    completion = await ask(client_for(double, session, timeout_s=0.2))

    assert completion.attempts == 2
    assert 0.2 <= time.monotonic() - started < 2.0


@pytest.mark.asyncio
async def test_timeouts_until_the_end_raise_without_a_status(double, session):
    double.configure(rate_timeout=1.0, hang_s=5.0)

    with pytest.raises(LLMError) as caught:
        await ask(client_for(double, session, timeout_s=0.1, max_retries=1, pause_when_down=False))

    assert caught.value.attempts == 2
    assert caught.value.status is None
    assert caught.value.retryable
    assert "timed out" in str(caught.value)


@pytest.mark.asyncio
async def test_a_server_that_comes_back_is_reached(double, session):
    """Down (503 to everything) while the first tries run, toggled up over /control."""
    double.configure(down=True)
    client = client_for(double, session, backoff_base_s=0.05, backoff_max_s=0.05, max_retries=20)
    call = asyncio.create_task(ask(client))
    while double.stats()["calls"] < 2:
        await asyncio.sleep(0.01)
    async with session.post(double.base_url.removesuffix("/v1") + "/control", json={"down": False}) as response:
        assert response.status == 200

    completion = await call

    assert completion.attempts >= 3
    assert double.stats()["by_status"]["503"] == completion.attempts - 1


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["rate_empty_choices", "rate_bad_json"])
async def test_a_200_without_an_answer_is_retried(double, session, fault):
    double.configure(**{fault: 1.0, "max_faults": 1})

    completion = await ask(client_for(double, session))

    assert completion.attempts == 2
    assert completion.text.startswith("Answer from strong:")


@pytest.mark.asyncio
async def test_connection_refused_is_retried_then_raised(session):
    endpoint = EndpointSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", **{**FAST, "max_retries": 2})

    with pytest.raises(LLMError) as caught:
        await ask(OpenAIChatClient(endpoint, session, pause_when_down=False))

    assert caught.value.attempts == 3
    assert caught.value.status is None
    assert "connection error" in str(caught.value)


@pytest.mark.asyncio
async def test_an_unprocessable_request_fails_at_once(double, session):
    double.configure(force_status=422)

    with pytest.raises(LLMError) as caught:
        await ask(client_for(double, session))

    assert (caught.value.status, caught.value.attempts, caught.value.retryable) == (422, 1, False)
    assert "HTTP 422" in str(caught.value)
    assert double.stats()["calls"] == 1


@pytest.mark.asyncio
async def test_a_prompt_over_the_context_length_fails_its_record_at_once(double, session):
    double.configure(context_tokens=3)

    with pytest.raises(LLMError) as caught:
        await ask(client_for(double, session))

    assert (caught.value.status, caught.value.attempts) == (400, 1)
    assert "maximum context length is 3 tokens" in str(caught.value)
    assert double.stats()["calls"] == 1


def refused(role: str = "strong") -> list[tuple[str, ...]]:
    """The label sets of the refusal gauge now set for `role`."""
    return [
        tuple(sample.labels.values())
        for metric in ENDPOINT_REFUSED.collect()
        for sample in metric.samples
        if sample.labels.get("role") == role and sample.value == 1
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "knob"), [(401, {"api_key": SECRET}), (404, {"known_models": ["other-model"]})])
async def test_a_refused_configuration_makes_calls_wait_not_fail_until_it_is_fixed(
    double, session, caplog, status, knob
):
    caplog.set_level(logging.INFO, logger="codeclm.llm")
    double.configure(**knob)
    client = client_for(
        double, session, role="strong", refused_probe_s=0.05, api_key=SecretStr("sk-wrong-key-0123456789")
    )
    calls = [asyncio.ensure_future(ask(client)) for _ in range(5)]
    await asyncio.sleep(0.5)

    assert not any(c.done() for c in calls)  # waiting, not failing their records
    assert client.refused is not None and f"HTTP {status}" in client.refused
    assert [label[1] for label in refused()] == [str(status)]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "refuses the configuration" in errors[0].getMessage()
    assert ("API key" if status == 401 else "CODECLM_STRONG__MODEL") in errors[0].getMessage()
    tries = double.stats()["calls"]
    assert tries < 5 + 0.5 / 0.05 + 5  # one try per probe interval, not a storm

    double.configure(api_key=None, known_models=None)  # the configuration is fixed
    completions = await asyncio.wait_for(asyncio.gather(*calls), 5)
    assert all(c.text for c in completions)
    assert client.refused is None and refused() == []
    assert "sk-wrong-key-0123456789" not in caplog.text


@pytest.mark.asyncio
async def test_a_400_every_call_gets_is_a_refusal_and_one_that_others_do_not_get_fails_its_record(
    double, session, monkeypatch
):
    monkeypatch.setattr("llm.client.AMBIGUOUS_400_WAIT_S", 0.2)
    client = client_for(double, session, refused_probe_s=0.05)
    double.configure(force_status=400)
    calls = [asyncio.ensure_future(ask(client)) for _ in range(4)]
    await asyncio.sleep(0.5)
    assert not any(c.done() for c in calls) and client.refused is not None  # three in a row: refused
    double.configure(force_status=None)
    await asyncio.wait_for(asyncio.gather(*calls), 5)

    # alone, with no other call to tell, an ambiguous 400 fails its own record after a short wait
    double.configure(force_status=400)
    with pytest.raises(LLMError) as caught:
        await ask(client)
    assert caught.value.status == 400 and client.refused is None


@pytest.mark.asyncio
async def test_the_endpoint_that_takes_max_completion_tokens_is_learned_once(double, session, caplog):
    caplog.set_level(logging.WARNING, logger="codeclm.llm")
    double.configure(token_parameter="max_completion_tokens")
    client = client_for(double, session)
    assert client.token_parameter == "max_tokens"

    first = await ask(client, max_tokens=7)
    assert client.token_parameter == "max_completion_tokens"
    assert double.last_request["max_completion_tokens"] == 7 and "max_tokens" not in double.last_request
    await asyncio.gather(*(ask(client) for _ in range(3)))

    assert first.attempts == 2 and double.stats()["by_status"] == {"200": 4, "400": 1}  # one 400, ever
    assert len([r for r in caplog.records if "max_completion_tokens" in r.getMessage()]) == 1


@pytest.mark.asyncio
async def test_an_endpoint_that_takes_no_temperature_gets_none(double, session):
    double.configure(fixed_temperature=True)
    client = client_for(double, session)
    await ask(client)
    await ask(client)
    assert "temperature" not in double.last_request
    assert double.stats()["by_status"] == {"200": 2, "400": 1}


@pytest.mark.asyncio
async def test_a_configured_token_parameter_is_sent_from_the_first_call(double, session):
    double.configure(token_parameter="max_completion_tokens")
    await ask(client_for(double, session, token_parameter="max_completion_tokens"))
    assert double.stats()["by_status"] == {"200": 1}


# ---------------------------------------------------------------- concurrency


@pytest.mark.asyncio
async def test_the_semaphore_bounds_requests_in_flight(double, session):
    double.configure(latency_ms=20)
    client = client_for(double, session, max_in_flight=5)
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(client.in_flight)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    completions = await asyncio.gather(*(ask(client) for _ in range(50)))
    watcher.cancel()

    assert len(completions) == 50
    assert double.stats()["max_in_flight"] == 5  # bounded, and the bound was used
    assert max(seen) <= 5
    assert client.in_flight == 0


@pytest.mark.asyncio
async def test_no_slot_is_held_while_waiting_to_retry(double, session):
    """With one slot, a call sleeping on Retry-After must not block another call."""
    double.configure(rate_429=1.0, retry_after_s=0.3, max_faults=1)
    client = client_for(double, session, max_in_flight=1, backoff_max_s=0.1)
    finished: list[str] = []

    async def named(name: str) -> None:
        await ask(client)
        finished.append(name)

    first = asyncio.create_task(named("rate-limited"))
    while double.stats()["calls"] < 1:
        await asyncio.sleep(0.005)
    await asyncio.gather(first, named("second"))

    assert finished == ["second", "rate-limited"]


# ---------------------------------------------------------------- secrets


@pytest.mark.asyncio
async def test_the_key_is_sent_as_a_bearer_token(session):
    async with LLMDouble(DoubleConfig(api_key=SECRET)) as double:
        completion = await ask(client_for(double, session, api_key=SecretStr(SECRET)))

    assert completion.attempts == 1


@pytest.mark.asyncio
async def test_the_key_never_appears_in_errors_or_logs(session, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="codeclm.llm")
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    async with LLMDouble(DoubleConfig(api_key="another-key-0123456789", echo_headers=True)) as double:
        client = client_for(double, session, api_key_file=key_file, pause_when_down=False, refused_probe_s=0.05)
        waiting = asyncio.ensure_future(ask(client))  # 401, body echoing our Authorization header
        await asyncio.sleep(0.3)
        refusal = client.refused
        double.configure(api_key=None)
        await asyncio.wait_for(waiting, 5)
        double.configure(rate_5xx=1.0)
        with pytest.raises(LLMError) as failed:  # 500s echoing headers, logged on each retry
            await ask(client)

    assert refusal is not None and "HTTP 401" in refusal
    assert failed.value.attempts == FAST["max_retries"] + 1
    assert "HTTP 500: server error" in str(failed.value)  # what the body said, not the headers it echoed
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == FAST["max_retries"]
    for text in (refusal, str(failed.value), repr(failed.value), repr(client)):
        assert SECRET not in text
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_redact_removes_the_key_and_any_bearer_token():
    text = '{"Authorization": "Bearer abc.def", "x": "key=s3cr3t"}'
    assert redact(text, "s3cr3t") == '{"Authorization": "Bearer ***", "x": "key=***"}'


# ---------------------------------------------------------------- faults, and how the client adapts


class ScriptedServer:
    """A tiny chat server for faults the LLM double has no knob for: `handler(request, n)`
    answers the n-th request (from 0) and may return None for the double's normal answer."""

    def __init__(self, handler):
        self.handler = handler
        self.requests = 0
        self._runner = None
        self.base_url = ""

    async def __aenter__(self):
        from aiohttp import web

        async def chat(request):
            n = self.requests
            self.requests += 1
            body = await request.json()
            reply = await self.handler(request, n, body)
            if reply is not None:
                return reply
            return web.json_response(
                chat_body(body["model"], f"answer {n}", finish_reason="stop", prompt_tokens=len(body["messages"]))
            )

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc):
        await self._runner.cleanup()


def client_of(server: ScriptedServer, session, *, pause_when_down: bool = True, **overrides) -> OpenAIChatClient:
    endpoint = EndpointSettings(base_url=server.base_url, model="strong", **{**FAST, **overrides})
    return OpenAIChatClient(endpoint, session, pause_when_down=pause_when_down)


@pytest.mark.asyncio
async def test_rate_limits_never_use_up_the_retries(double, session):
    # Ten 429s in a row with max_retries 3: the server asked to wait, so the call waits.
    double.configure(rate_429=1.0, retry_after_s=0.0, max_faults=10)

    completion = await ask(client_for(double, session, max_retries=3, pause_when_down=False))

    assert completion.attempts == 11
    assert double.stats()["by_status"] == {"200": 1, "429": 10}


@pytest.mark.asyncio
async def test_a_connection_reset_mid_request_is_retried(session):
    async def reset_twice(request, n, body):
        if n < 2:
            request.transport.close()  # the peer hangs up before answering
        return None

    async with ScriptedServer(reset_twice) as server:
        completion = await ask(client_of(server, session))

    assert completion.attempts == 3
    assert completion.text == "answer 2"


@pytest.mark.asyncio
async def test_an_oversized_answer_fails_at_once_with_the_reason(session):
    from aiohttp import web

    async def huge(request, n, body):
        return web.json_response(chat_body("strong", "x " * 200_000, finish_reason="stop", prompt_tokens=1))

    async with ScriptedServer(huge) as server:
        client = OpenAIChatClient(
            EndpointSettings(base_url=server.base_url, model="m", **FAST), session, max_response_bytes=100_000
        )
        with pytest.raises(LLMError) as caught:
            await ask(client)

    assert (caught.value.attempts, caught.value.retryable) == (1, False)
    assert "oversized response: more than 100000 bytes" in str(caught.value)


@pytest.mark.asyncio
async def test_a_truncated_answer_is_returned_as_is_and_counted(double, session):
    from llm.metrics import TRUNCATED

    double.configure(rate_length=1.0)
    before = TRUNCATED.labels("llm")._value.get()

    completion = await ask(client_for(double, session))

    assert completion.finish_reason == "length"
    assert completion.text.startswith("Answer from strong:") and completion.attempts == 1
    assert TRUNCATED.labels("llm")._value.get() == before + 1


@pytest.mark.asyncio
async def test_unparsable_output_is_asked_again_then_dead_lettered(double, session):
    from agents.base import Budget, StageFailure
    from agents.base import ask as stage_ask
    from agents.contrast import parse_judge

    BUDGET = Budget(temperature=0.0, max_tokens=64, attempts=3, reask_temperature=0.7)
    client = client_for(double, session)
    double.configure(rate_malformed=1.0, max_faults=1)  # one garbled answer, then good ones
    judge_prompt = [
        {"role": "user", "content": "[The Start of Assistant 1's Answer]\na\n[The End of Assistant 1's Answer]"}
    ]
    asked = await stage_ask(
        client,
        judge_prompt,
        parse_judge,
        purpose="judge",
        budget=BUDGET,
    )
    # the garbled answer was paid for too: both calls are on the record
    assert [c.attempts for c in asked.calls] == [1, 1] and double.stats()["calls"] == 2

    double.configure(rate_malformed=1.0, max_faults=None)  # garbled for good
    with pytest.raises(StageFailure) as caught:
        await stage_ask(
            client,
            judge_prompt,
            parse_judge,
            purpose="judge",
            budget=BUDGET,
        )
    assert caught.value.error_class == "ParseFailure" and caught.value.attempts == 3
    assert "lorem ipsum" in caught.value.reason  # the raw answer is kept


@pytest.mark.asyncio
async def test_concurrency_halves_on_429s_and_creeps_back_up(double, session):
    double.configure(latency_ms=10, max_concurrency=4, retry_after_s=0.02)
    client = client_for(double, session, max_in_flight=32)

    completions = await asyncio.gather(*(ask(client) for _ in range(120)))

    assert len(completions) == 120
    squeezed = client.concurrency_limit
    assert squeezed <= 8  # from 32, close to what the server takes
    rate_limited = double.stats()["by_status"].get("429", 0)
    # Kept at 32 in flight, the 116 waiting calls would each retry every 20 ms for the 0.3 s
    # the server needs: some 1,700 429s. Adapting, about one per request.
    assert rate_limited <= 2 * 120

    double.configure(max_concurrency=None)
    for _ in range(10):
        await asyncio.gather(*(ask(client) for _ in range(32)))
    assert client.concurrency_limit > squeezed + 5  # recovered toward 32


@pytest.mark.asyncio
async def test_calls_wait_while_the_endpoint_is_down_and_all_finish_when_it_returns(double, session):
    double.configure(down=True)
    waiting = most_waiting = 0

    async def sleep(delay: float) -> None:  # the length of the waits is not under test: who waits is
        nonlocal waiting, most_waiting
        waiting += 1
        if client._outage.probes >= 3:  # well into the outage, past the callers' own backoffs
            most_waiting = max(most_waiting, waiting)
        await asyncio.sleep(0.005)
        waiting -= 1

    endpoint = EndpointSettings(base_url=double.base_url, model="strong", **{**FAST, "max_retries": 2})
    client = OpenAIChatClient(endpoint, session, sleep=sleep)

    calls = [asyncio.create_task(ask(client)) for _ in range(20)]
    while client._outage.probes < 10:
        await asyncio.sleep(0.001)
    assert client.down
    assert most_waiting == 1  # one caller at a time waits for its turn to probe; the others queue
    assert not any(c.done() for c in calls)  # nobody failed: they wait

    double.configure(down=False)
    completions = await asyncio.gather(*calls)

    assert len(completions) == 20 and not client.down


@pytest.mark.asyncio
async def test_a_request_that_fails_while_others_succeed_is_not_an_outage(session):
    from aiohttp import web

    async def poison(request, n, body):
        if "poison" in body["messages"][0]["content"]:
            return web.json_response({"error": "boom"}, status=500)
        return None

    async with ScriptedServer(poison) as server:
        client = client_of(server, session, max_retries=3)

        stop = asyncio.Event()

        async def healthy_traffic():
            while not stop.is_set():
                await ask(client)

        traffic = [asyncio.create_task(healthy_traffic()) for _ in range(4)]
        with pytest.raises(LLMError) as caught:
            await client.complete([{"role": "user", "content": "poison"}], temperature=0.0, max_tokens=8)
        stop.set()
        await asyncio.gather(*traffic)

    assert caught.value.attempts == 4 and caught.value.status == 500
    assert not client.down


# ---------------------------------------------------------------- pure parts


USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


def body(content="hi", *, usage=USAGE, model="m", finish_reason="stop"):
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
    result = {"id": "x", "object": "chat.completion", "model": model, "choices": [choice]}
    if usage is not None:
        result["usage"] = usage
    return result


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (body(), ("hi", "m", 12, 7, "stop")),
        (body(usage=None), ("hi", "m", 0, 0, "stop")),
        (body(usage={"prompt_tokens": 3}), ("hi", "m", 3, 0, "stop")),
        ({**body(), "usage": None}, ("hi", "m", 0, 0, "stop")),
        (body(content="", finish_reason="length"), ("", "m", 12, 7, "length")),
        (body(finish_reason=None), ("hi", "m", 12, 7, None)),
        (body(model=None), ("hi", "fallback", 12, 7, "stop")),
        (body(content="  line 1\nline 2  "), ("  line 1\nline 2  ", "m", 12, 7, "stop")),
    ],
)
def test_parse_chat_response(raw, expected):
    c = parse_chat_response(raw, latency_s=0.5, attempts=2, fallback_model="fallback")
    assert (c.text, c.model, c.prompt_tokens, c.completion_tokens, c.finish_reason) == expected
    assert (c.latency_s, c.attempts, c.cached) == (0.5, 2, False)


@pytest.mark.parametrize(
    "raw",
    [
        {**body(), "choices": []},
        {"id": "x"},
        {**body(), "choices": None},
        {**body(), "choices": ["text"]},
        {**body(), "choices": [{"message": {"role": "assistant"}}]},
        {**body(), "choices": [{"message": {"role": "assistant", "content": None}}]},
        {**body(), "choices": [{"text": "legacy completions shape"}]},
        [body()],
        "not an object",
    ],
)
def test_parse_chat_response_rejects_bodies_without_an_answer(raw):
    with pytest.raises(MalformedResponseError):
        parse_chat_response(raw, latency_s=0.1, attempts=1)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("3", 3.0),
        ("0.25", 0.25),
        ("-1", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        ("soon", None),
    ],
)
def test_parse_retry_after(header, expected):
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected


def test_backoff_grows_to_its_cap_with_full_jitter():
    rng = random.Random(1)
    for retry in range(10):
        cap = min(2.0, 0.1 * 2**retry)
        delays = [backoff_delay(retry, base_s=0.1, max_s=2.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # the whole range is used, not a fixed step


@pytest.mark.asyncio
async def test_build_clients_reuses_strong_as_judge_unless_configured(session):
    def endpoint(model: str) -> EndpointSettings:
        return EndpointSettings(base_url="http://127.0.0.1:9/v1", model=model)

    strong, target, judge = build_clients(endpoint("big"), endpoint("small"), None, session)
    assert (strong.model, target.model) == ("big", "small")
    assert judge is strong

    strong, _, judge = build_clients(endpoint("big"), endpoint("small"), endpoint("critic"), session)
    assert judge is not strong
    assert judge.model == "critic"


@pytest.mark.parametrize("unset", ["base_url", "model"])
@pytest.mark.asyncio
async def test_a_client_is_never_built_for_an_endpoint_without_a_url_or_a_model(session, unset):
    values = {"base_url": "http://127.0.0.1:9/v1", "model": "m", unset: None}
    with pytest.raises(ValueError, match="the target endpoint needs a base_url and a model"):
        OpenAIChatClient(EndpointSettings(**values), session, role="target")


@pytest.mark.asyncio
async def test_open_session_pools_enough_connections_for_every_endpoint():
    strong = EndpointSettings(max_in_flight=100)
    async with open_session(strong, EndpointSettings(max_in_flight=30), strong) as s:
        assert s.connector is not None
        assert s.connector.limit == 130  # the judge shares the strong endpoint


@pytest.mark.asyncio
async def test_an_endpoint_cap_bounds_the_completion_tokens_asked_for(double, session):
    capped = OpenAIChatClient(
        EndpointSettings(base_url=double.base_url, model="target", max_tokens_cap=24), session, role="target"
    )
    await capped.complete(MESSAGES, temperature=0.3, max_tokens=256)
    assert double.last_request["max_tokens"] == 24
    await capped.complete(MESSAGES, temperature=0.3, max_tokens=10)
    assert double.last_request["max_tokens"] == 10


@pytest.mark.asyncio
async def test_calls_sent_before_the_endpoint_taught_the_token_parameter_are_sent_again(double, session):
    double.configure(token_parameter="max_completion_tokens", fixed_temperature=True, latency_ms=20)
    client = client_for(double, session)
    completions = await asyncio.gather(*(ask(client) for _ in range(8)))  # all sent before the first 400 came
    assert all(c.text for c in completions)
    assert client.token_parameter == "max_completion_tokens"
