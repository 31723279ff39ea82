"""API keys never leave the worker: not in its log, not in any record, not in dead letters, even
when the LLM server echoes the request headers (Authorization included) in its error bodies, and
when it refuses a key: then the endpoint's calls wait, and the log says why without the key."""

from __future__ import annotations

import asyncio
import sys
import urllib.request

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.demo import wait_for_http
from streams.kafka.admin import client_options, topic_partitions
from streams.kafka.broker import free_port
from streams.ops.feeder import feed_seeds
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay
from tests.integration.follow import TOPICS, Progress

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

STRONG_KEY = "sk-strong-4f9a1c77e0b2-SECRET"  # the key the server expects
TARGET_KEY = "sk-target-88d0c3b19e5a-SECRET"  # a wrong key, from a key file: refused until the server takes any


async def raw_topics(settings) -> bytes:
    """Every key, value and header on every pipeline topic, as bytes."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        counts = await topic_partitions(admin, [settings.topic(t) for t in TOPICS])
    finally:
        await admin.close()
    partitions = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    blob = bytearray()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            for messages in (await consumer.getmany(*pending, timeout_ms=1000)).values():
                for m in messages:
                    blob += (m.key or b"") + (m.value or b"") + b"".join(v for _, v in m.headers or ())
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return bytes(blob)


async def test_api_keys_never_reach_logs_records_or_dead_letters(settings, processes, start_worker, tmp_path):
    port = free_port()
    processes(
        "llm-double",
        [sys.executable, "-m", "llm.double", "--port", str(port), "--api-key", STRONG_KEY, "--echo-headers",
         "--rate-5xx", "0.2", "--random-seed", "3"],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    wait_for_http(url + "/models", 30)
    key_file = tmp_path / "target.key"
    key_file.write_text(TARGET_KEY + "\n")
    settings = overlay(
        settings,
        {
            "strong": {"base_url": url, "model": "double-strong", "api_key": STRONG_KEY, "backoff_max_s": 0.2},
            "target": {"base_url": url, "model": "double-target", "api_key_file": str(key_file), "refused_probe_s": 1},
            "pipeline": {"instructions_per_metadata": 2, "max_iterations": 2},
            "worker": {"http_enabled": False, "log_level": "debug"},
        },
    )
    worker = start_worker(settings)
    # Names, not digits: seeds that differ only in a digit get one metadata from the LLM
    # double, and dedup would drop all but one seed's instructions before they reach the target.
    names = ("Atlas", "Borealis", "Cygnus", "Draco")
    seeds = [seed_from_text(f"Write the release notes for version {name}.") for name in names]
    await feed_seeds(settings, seeds)
    progress = Progress(settings)
    progress.start()
    try:
        # Every target call is refused (401, echoing our headers): the target's calls wait, and
        # the worker says so once, with what the server answered.
        for _ in range(300):
            assert worker.popen.poll() is None, worker.tail()
            if "target endpoint" in worker.log_path.read_text() and "refuses the configuration" in worker.tail(400):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        progress.check()
        assert not progress.dead, [d.reason for d in progress.dead.values()]  # nothing dead-lettered for it
        urllib.request.urlopen(
            urllib.request.Request(url.removesuffix("/v1") + "/control", data=b'{"api_key": null}'), timeout=10
        ).close()  # the server takes any key now: the waiting calls go on
        for _ in range(600):
            progress.check()
            assert worker.popen.poll() is None, worker.tail()
            if not progress.ledger.incomplete({s.id for s in seeds}):
                break
            await asyncio.sleep(0.2)
    finally:
        await progress.stop()
    assert worker.stop() == 0

    assert not progress.ledger.incomplete({s.id for s in seeds})
    log = worker.log_path.read_text()
    assert "refuses the configuration: HTTP 401" in log and "takes the configuration again" in log
    for secret in (STRONG_KEY, TARGET_KEY):
        assert secret not in log
        assert secret.encode() not in await raw_topics(settings)
        assert all(secret not in d.model_dump_json() for d in progress.dead.values())
