"""`codeclm check`, the real command in its own process, against the real broker and the LLM double
(a stand-in for an OpenAI-compatible server, not a model; it runs in this test's process): it
passes and shows the token parameter each endpoint takes, runs a seed through every stage with
--seed, and fails naming what to fix for a broker down, an endpoint down, a wrong key and an
unknown model."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

import pytest

from llm.double import DoubleConfig, LLMDouble
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import free_port
from streams.settings import Settings, overlay, settings_env
from tests.paths import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

KEY = "sk-check-0123456789abcdef"
STRONG, TARGET = "gpt-5-mini", "small-7b"
# OpenAI's newer models: max_completion_tokens only, and no temperature but the default.
DOUBLE = DoubleConfig(
    api_key=KEY, known_models=[STRONG, TARGET], token_parameter="max_completion_tokens", fixed_temperature=True
)


@dataclass(frozen=True)
class Ran:
    code: int
    out: list[str]
    err: str

    @property
    def last(self) -> str:
        return self.out[-1]


async def codeclm_check(settings: Settings, *args: str) -> Ran:
    """`python -m streams.cli check ...` with the settings as CODECLM_* variables. Awaited, not
    run blocking: the double answering it runs on this process's event loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECLM_")}
    env.update(settings_env(settings), PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", "check", "--timeout", "3", *args,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode().splitlines(), err.decode())


def with_endpoints(settings: Settings, url: str, **changes: dict[str, object]) -> Settings:
    endpoint = {"base_url": url, "api_key": KEY}
    return overlay(
        settings,
        {
            "strong": {**endpoint, "model": STRONG, **changes.get("strong", {})},
            "target": {**endpoint, "model": TARGET, **changes.get("target", {})},
            **{k: v for k, v in changes.items() if k not in ("strong", "target")},
        },
    )


async def test_passes_against_the_double_and_shows_each_endpoints_token_parameter(settings):
    await ensure_topics(settings)
    async with LLMDouble(DOUBLE) as double:
        ran = await codeclm_check(with_endpoints(settings, double.base_url or ""))
    assert ran.code == 0, "\n".join(ran.out) + ran.err
    out = "\n".join(ran.out)
    assert (
        f"broker {settings.kafka.bootstrap_servers}: reachable; topics (prefix {settings.kafka.topic_prefix}): " in out
    )
    assert "11 of 11 exist" in out
    for model in (STRONG, TARGET):
        assert f"endpoint {'strong' if model == STRONG else 'target'}: model {model} at {double.base_url}" in out
    assert out.count("  models: the model is listed") == 2
    assert out.count("token parameter max_completion_tokens; no temperature") == 2
    assert "endpoint judge: the strong endpoint (checked above)" in out
    assert KEY not in out + ran.err
    assert ran.last == "check passed: the broker and every endpoint answer"


async def test_with_a_seed_every_stage_is_shown(settings):
    async with LLMDouble(DOUBLE) as double:
        ran = await codeclm_check(
            with_endpoints(settings, double.base_url or ""), "--seed", "Plan a week of vegetarian school lunches"
        )
    assert ran.code == 0, "\n".join(ran.out) + ran.err
    heads = [line.split(":")[0] for line in ran.out if not line.startswith(" ")]
    stages = heads[heads.index("seed") :]
    assert stages[:6] == ["seed", "encode", "decode", "contrast on instruction 1", "filter", "tailor"]
    out = "\n".join(ran.out)
    for shown in ("use case:", "skills:", "instruction 1:", "rubric 4:", "action:", "tailored instruction"):
        assert shown in out
    assert f"strong answer ({STRONG}):" in out and f"target answer ({TARGET}):" in out
    assert "judge (gpt-5-mini): strong " in out
    assert ran.last == "check passed: the broker and every endpoint answer, and the seed went through every stage"


@pytest.mark.parametrize(
    ("fault", "named"),
    [
        ("broker down", ["broker: nothing answers at 127.0.0.1:", "CODECLM_KAFKA__BOOTSTRAP_SERVERS"]),
        ("endpoint down", ["strong endpoint: down: nothing answers at http://127.0.0.1:", "CODECLM_STRONG__BASE_URL"]),
        ("wrong key", ["target endpoint: wrong API key (HTTP 401)", "CODECLM_TARGET__API_KEY"]),
        ("unknown model", ["target endpoint: unknown model (or URL) (HTTP 404)", "CODECLM_TARGET__MODEL"]),
    ],
)
async def test_fails_naming_what_to_fix(settings, fault, named):
    async with LLMDouble(DOUBLE) as double:
        url = double.base_url or ""
        nowhere = f"127.0.0.1:{free_port()}"  # an address nothing listens on
        broken = {
            "broker down": with_endpoints(settings, url, kafka={"bootstrap_servers": nowhere}),
            "endpoint down": with_endpoints(settings, url, strong={"base_url": f"http://{nowhere}/v1"}),
            "wrong key": with_endpoints(settings, url, target={"api_key": "sk-not-the-key-0123456789"}),
            "unknown model": with_endpoints(settings, url, target={"model": "no-such-model"}),
        }[fault]
        ran = await codeclm_check(broken, "--seed", "Plan a week of vegetarian school lunches")
    assert ran.code == 1, "\n".join(ran.out)
    assert ran.last.startswith("check failed: fix ")
    for text in named:
        assert text in ran.last
    subject = named[0].split(":")[0]
    for other in ("broker", "strong endpoint", "target endpoint", "settings", "seed run"):
        assert other == subject or f"{other}:" not in ran.last  # this problem only
    if fault != "broker down":
        assert "seed run: skipped until the endpoints are fixed" in ran.out
