"""Every provider style against the LLM double (a test stand-in for each provider's server, not a
model): the pipeline completes, with each provider's token parameter and auth header on the
wire; and a configuration an endpoint refuses dead-letters nothing and waits for the fix."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from agents.pipeline import CONSERVATION_TOPICS
from llm.double import DoubleConfig, LLMDouble
from streams.kafka.topic_io import follow_until, read_records
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import seed_from_text
from streams.runtime.http import URL_FILE, url_of_worker
from streams.settings import Settings, overlay

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

KEYS = {"openai": "sk-openai-0123456789abcdef", "azure": "azure-key-0123456789", "anthropic": "sk-ant-0123456789"}
PIPELINE = {"instructions_per_metadata": 2, "max_iterations": 2, "judge_passes": 2}


def _root(url: str) -> str:
    return url.removesuffix("/v1")


def _endpoint(style: str, double: LLMDouble) -> dict[str, object]:
    """The settings a user writes for each provider (README: one block per provider)."""
    url = double.base_url
    assert url is not None
    return {
        # OpenAI's newer models: max_completion_tokens and no temperature but 1, learned on the fly
        "openai": {"base_url": url, "model": "gpt-5-mini", "api_key": KEYS["openai"]},
        "azure": {
            "provider": "azure",
            "base_url": f"{_root(url)}/openai/deployments/my-gpt4o",
            "model": "my-gpt4o",
            "api_key": KEYS["azure"],
        },
        "anthropic": {"provider": "anthropic", "base_url": url, "model": "claude-sonnet", "api_key": KEYS["anthropic"]},
        # vLLM, Ollama, llama.cpp: OpenAI's API with max_tokens and no key
        "vllm": {"base_url": url, "model": "meta-llama/Llama-3-8B-Instruct"},
        # a LiteLLM proxy: its own key header
        "litellm": {"base_url": url, "model": "team-model", "headers": {"x-litellm-api-key": "litellm-0123456789"}},
    }[style]


def _double(style: str) -> DoubleConfig:
    return {
        "openai": DoubleConfig(
            api_key=KEYS["openai"],
            token_parameter="max_completion_tokens",
            fixed_temperature=True,
            known_models=["gpt-5-mini"],
        ),
        "azure": DoubleConfig(api_key=KEYS["azure"], known_models=["my-gpt4o"]),
        "anthropic": DoubleConfig(api_key=KEYS["anthropic"], known_models=["claude-sonnet"]),
        "vllm": DoubleConfig(token_parameter="max_tokens", known_models=["meta-llama/Llama-3-8B-Instruct"]),
        "litellm": DoubleConfig(require_headers={"x-litellm-api-key": "litellm-0123456789"}),
    }[style]


async def _run(settings: Settings, start_worker, seeds: int, tag: str) -> Ledger:
    worker = start_worker(settings)
    fed = [seed_from_text(f"Plan the {tag} budget of team {i} for the spring quarter") for i in range(seeds)]
    await feed_seeds(settings, fed)
    ledger, wanted = Ledger(), {s.id for s in fed}

    def done() -> bool:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        return not ledger.incomplete(wanted)

    assert await follow_until(settings, CONSERVATION_TOPICS, ledger.add, done, 180), worker.tail()
    for seed in fed:
        account = ledger.account(seed.id)
        assert account.seed_dead_reason is None and account.balanced and not account.dead, account.summary()
    return ledger


@pytest.mark.parametrize(
    "roles", [("openai", "azure", "anthropic"), ("anthropic", "vllm", "litellm")], ids=lambda r: "+".join(r)
)
async def test_the_pipeline_completes_with_each_providers_parameters_and_headers_on_the_wire(
    settings, start_worker, roles
):
    strong, target, judge = roles
    async with LLMDouble(_double(strong)) as d1, LLMDouble(_double(target)) as d2, LLMDouble(_double(judge)) as d3:
        doubles = dict(zip(("strong", "target", "judge"), (d1, d2, d3), strict=True))
        sections = {role: _endpoint(style, doubles[role]) for role, style in zip(doubles, roles, strict=True)}
        settings = overlay(settings, {**sections, "pipeline": PIPELINE})
        await _run(settings, start_worker, seeds=2, tag="+".join(roles))

        for (role, double), style in zip(doubles.items(), roles, strict=True):
            headers, body, path = double.last_headers or {}, double.last_request or {}, double.last_path or ""
            statuses = double.stats()["by_status"]
            if style == "openai":
                assert headers.get("Authorization") == f"Bearer {KEYS['openai']}"
                assert "max_completion_tokens" in body and "max_tokens" not in body and "temperature" not in body
                # learned from the first 400s: the token parameter, then the temperature; only the
                # calls already on their way (the two seeds' encode calls) got them too
                assert 2 <= statuses.get("400", 0) <= 4
            elif style == "azure":
                assert headers.get("api-key") == KEYS["azure"] and "Authorization" not in headers
                assert path.startswith("/openai/deployments/my-gpt4o/chat/completions?api-version=")
            elif style == "anthropic":
                assert headers.get("x-api-key") == KEYS["anthropic"] and headers.get("anthropic-version")
                assert path == "/v1/messages" and "max_tokens" in body
            elif style == "vllm":
                assert "max_tokens" in body and "Authorization" not in headers
            else:
                assert headers.get("x-litellm-api-key") == "litellm-0123456789"
            assert set(statuses) <= {"200", "400"}, (role, statuses)


async def _metrics(settings: Settings) -> str:
    """The worker's /metrics; empty while it has not yet started its HTTP endpoint."""
    url = url_of_worker(settings.worker.data_dir / URL_FILE)
    if url is None:
        return ""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        return await response.text()


async def _wait_for_metric(settings: Settings, text: str, worker, timeout: float = 90) -> None:
    """Until `text` is in the worker's /metrics: a loaded machine starts a worker slowly."""
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in await _metrics(settings):
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        assert asyncio.get_running_loop().time() < deadline, f"no {text!r} in /metrics after {timeout} s"
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("mistake", ["wrong key", "unknown model"])
async def test_a_refused_configuration_dead_letters_nothing_and_the_fix_completes_every_seed(
    settings, start_worker, mistake
):
    async with LLMDouble(DoubleConfig(api_key=KEYS["openai"], known_models=["gpt-4o"])) as double:
        good = {"base_url": double.base_url, "model": "gpt-4o", "api_key": KEYS["openai"]}
        wrong = {**good, "api_key": "sk-wrong-0123456789abcd"} if mistake == "wrong key" else {**good, "model": "gpt-4"}
        target = {**good, "model": "gpt-4o", "refused_probe_s": 1.0}
        broken = overlay(
            settings, {"strong": {**wrong, "refused_probe_s": 1.0}, "target": target, "pipeline": PIPELINE}
        )
        worker = start_worker(broken, "worker-broken")
        seeds = [seed_from_text(f"Write the {mistake} onboarding checklist for team {i}") for i in range(3)]
        await feed_seeds(broken, seeds)
        status = "401" if mistake == "wrong key" else "404"
        await _wait_for_metric(broken, f'codeclm_llm_endpoint_refused{{reason="HTTP {status}', worker)
        await asyncio.sleep(3)  # every seed tried, and tried again after the probe interval (1 s)
        assert "refuses the configuration" in worker.tail(200)
        assert worker.popen.poll() is None
        dead = [r async for _, r in read_records(broken, ["deadletter"])]
        assert dead == []  # nothing dead-lettered for a configuration mistake
        worker.stop()

        fixed = overlay(settings, {"strong": good, "target": target, "pipeline": PIPELINE})
        start_worker(fixed, "worker-fixed")
        ledger, wanted = Ledger(), {s.id for s in seeds}
        assert await follow_until(fixed, CONSERVATION_TOPICS, ledger.add, lambda: not ledger.incomplete(wanted), 180)
        assert all(ledger.account(s.id).balanced and not ledger.account(s.id).dead for s in seeds)
