"""The worker's HTTP endpoint, served by a real worker process on the embedded broker."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.pipeline import CONSERVATION_TOPICS, STAGE_INPUTS
from streams.kafka.topic_io import follow_until
from streams.ops.consumer_lag import lag_report
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import seed_from_text
from streams.runtime.http import URL_FILE, url_of_worker
from streams.settings import overlay, settings_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

URL_LINE = re.compile(r"HTTP endpoint on (http://\S+)")


def endpoint_url(worker, timeout: float = 60) -> str:
    """The URL the worker logged (it picked a free port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        found = URL_LINE.search(worker.log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"the worker logged no HTTP endpoint:\n{worker.tail()}")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def count(found: dict, name: str, **labels: str) -> float:
    """A counter's value; a labelled counter appears once it was first incremented."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def with_double(settings, llm_double, **worker):
    return overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2},
            "worker": {"http_port": 0, **worker},
        },
    )


async def test_metrics_lag_and_health_of_a_worker_that_ran_seeds(settings, llm_double, start_worker):
    settings = with_double(settings, llm_double)
    worker = start_worker(settings)
    url = endpoint_url(worker)
    assert url_of_worker(settings.worker.data_dir / URL_FILE) == url  # where `codeclm status` looks
    # Seeds that differ in words: the LLM double gives seeds differing only in a digit one
    # metadata, and dedup would keep a single seed's instructions (maybe with no accepted pair).
    topics = ("a garden shed", "a school trip", "a bakery menu", "a chess club")
    seeds = [seed_from_text(f"Plan the budget of {topic} for next spring") for topic in topics]
    await feed_seeds(settings, seeds)
    ledger = Ledger()
    assert await follow_until(
        settings,
        CONSERVATION_TOPICS,
        ledger.add,
        lambda: not ledger.incomplete({s.id for s in seeds}),
        timeout=120,
    ), worker.tail()
    accepted = sum(len(a.accepted) for a in ledger.seeds.values())
    rejected = sum(len(a.rejected) for a in ledger.seeds.values())

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200
            assert (await r.json()) == {"status": "ok", "stages": list(STAGE_INPUTS)}
        # Wait for the last commits (faust commits every few seconds): lag 0 everywhere.
        for _ in range(60):
            async with http.get(f"{url}/lag") as r:
                assert r.status == 200
                lag = await r.json()
            if lag["total_lag"] == 0:
                break
            await asyncio.sleep(0.5)
        assert lag["total_lag"] == 0 and [s["stage"] for s in lag["stages"]] == list(STAGE_INPUTS)
        broker = await lag_report(settings)
        assert [s["log_end"] for s in lag["stages"]] == [s.log_end for s in broker.stages]
        async with http.get(f"{url}/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()

    found = samples(text)
    for stage in STAGE_INPUTS:
        assert value(found, "codeclm_records_total", stage=stage, outcome="processed") > 0, stage
        assert value(found, "codeclm_stage_lag", stage=stage) == 0
    assert value(found, "codeclm_records_total", stage="encode", outcome="processed") == len(seeds)
    assert count(found, "codeclm_verdicts_total", verdict="accept") == accepted > 0
    assert count(found, "codeclm_verdicts_total", verdict="reject") == rejected
    assert count(found, "codeclm_verdicts_total", verdict="retry") > 0
    for role in ("strong", "target"):
        assert value(found, "codeclm_llm_requests_total", role=role, outcome="ok") > 0
        assert value(found, "codeclm_llm_tokens_total", role=role, kind="prompt") > 0
        assert value(found, "codeclm_llm_latency_seconds_count", role=role) > 0
        assert value(found, "codeclm_llm_in_flight", role=role) == 0
    assert value(found, "codeclm_lag_up") == 1
    assert value(
        found, "codeclm_partition_log_end_offset", stage="encode", topic=settings.topic("seeds"), partition="0"
    ) == (broker.stage("encode").partitions[0].log_end)


async def test_off_loopback_needs_a_token_and_lag_shows_stages_this_worker_does_not_run(
    settings, llm_double, processes
):
    token = "s3cret-token-for-test"
    settings = with_double(settings, llm_double, http_host="0.0.0.0", http_token=token)
    env = {**settings_env(settings), "PYTHONUNBUFFERED": "1"}
    # Only decode runs here: nothing reads the seeds.
    worker = processes("worker", [sys.executable, "-m", "streams.cli", "worker", "--stage", "decode"], env)
    url = endpoint_url(worker).replace("0.0.0.0", "127.0.0.1")
    await feed_seeds(settings, [seed_from_text(f"waiting seed {i}") for i in range(7)])

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200  # open for liveness probes; it tells nothing
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            for path in ("/metrics", "/lag"):
                async with http.get(url + path, headers=headers) as r:
                    assert r.status == 401, (path, headers)
                    assert r.headers["WWW-Authenticate"] == "Bearer"
                    assert token not in await r.text()
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{url}/metrics", headers=auth) as r:
            assert r.status == 200
            found = samples(await r.text())
        async with http.get(f"{url}/lag", headers=auth) as r:
            lag = await r.json()
    # This worker runs decode only: the seeds wait for encode, and its metrics still show them.
    assert value(found, "codeclm_stage_lag", stage="encode") == 7
    assert lag["stages"][0]["lag"] == 7
    assert token not in worker.log_path.read_text(errors="replace")


def test_a_worker_refuses_to_listen_off_loopback_without_a_token(settings):
    settings = overlay(settings, {"worker": {"http_host": "127.0.0.1"}})
    env = {**settings_env(settings), "CODECLM_WORKER__HTTP_HOST": "0.0.0.0"}
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "http_host 0.0.0.0 is not loopback: set http_token" in out.stderr
