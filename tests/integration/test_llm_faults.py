"""The pipeline on the real broker while its LLM endpoint misbehaves: random faults of every
kind, then an outage (503 to everything), then the server process gone altogether
(connection refused). Stages pause while the endpoint is down and resume when it is back;
every seed completes and nothing is dead-lettered because of the outage."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request

import pytest

from streams.demo import wait_for_http
from streams.kafka.broker import free_port
from streams.ops.feeder import feed_seeds
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay
from tests.integration.follow import Progress

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

SEEDS = 30
FAULTS = {
    "random_seed": 11,
    "latency_ms": 20,
    "rate_429": 0.05,
    "retry_after_s": 0.05,
    "rate_5xx": 0.05,
    "rate_timeout": 0.01,
    "hang_s": 3.0,
    "rate_empty_choices": 0.02,
    "rate_bad_json": 0.02,
    "rate_malformed": 0.01,  # unparsable: the stage asks again (three asks in a row: one in a million)
}  # 10% of calls fail in a retryable way: 7 in a row (max_retries 6), one in ten million


def control(url: str, **changes) -> None:
    request = urllib.request.Request(
        url.removesuffix("/v1") + "/control", data=json.dumps(changes).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def start_double(processes, port: int, name: str):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FAULTS.items()]
    process = processes(name, [sys.executable, "-m", "llm.double", "--port", str(port), *flags])
    wait_for_http(f"http://127.0.0.1:{port}/v1/models", 30)
    return process


async def wait_for(condition, what: str, worker, timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}\n{worker.tail()}"
        await asyncio.sleep(0.2)


async def test_stages_pause_while_the_llm_is_down_and_finish_when_it_returns(settings, processes, start_worker):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    double = start_double(processes, port, "llm-double")
    endpoint = {"base_url": url, "timeout_s": 1.0, "max_retries": 6, "backoff_base_s": 0.05, "backoff_max_s": 0.5}
    settings = overlay(
        settings,
        {
            "strong": {**endpoint, "model": "double-strong"},
            "target": {**endpoint, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2, "max_iterations": 2},
            "worker": {"http_enabled": False},
        },
    )
    worker = start_worker(settings)
    seeds = [seed_from_text(f"Plan the week of team {i} around its {i % 5 + 2} deadlines.") for i in range(SEEDS)]
    await feed_seeds(settings, seeds)
    progress = Progress(settings)
    progress.start()
    wanted = {s.id for s in seeds}
    try:
        # Outage 1: the server answers 503 to everything, for a while.
        await wait_for(lambda: len(progress.copies["scored"]) >= 10, "first scored pairs", worker)
        control(url, down=True)
        await wait_for(lambda: "is down" in worker.log_path.read_text(), "the worker to see the outage", worker)
        await asyncio.sleep(3.0)  # longer than all of a call's retries (about 2 s here)
        control(url, down=False)
        await wait_for(lambda: "answers again" in worker.log_path.read_text(), "the worker to resume", worker)

        # Outage 2: the server process is gone (connection refused), then back on its port.
        await wait_for(lambda: len(progress.copies["scored"]) >= 30, "more scored pairs", worker)
        double.kill()
        await wait_for(lambda: worker.log_path.read_text().count("is down") >= 2, "the worker to see it gone", worker)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(start_double, processes, port, "llm-double-again")

        await wait_for(lambda: not progress.ledger.incomplete(wanted), "every seed to complete", worker)
        progress.check()
    finally:
        await progress.stop()

    log = worker.log_path.read_text()
    assert log.count("answers again") >= 2
    assert not progress.dead, [d.reason for d in progress.dead.values()][:5]
    for seed in seeds:
        account = progress.ledger.account(seed.id)
        assert account.balanced and account.seed_dead_reason is None, account.summary()
    assert worker.stop() == 0
