"""`codeclm deadletter` on the real broker: seeds dead-lettered while the LLM refused every call
are summarised, then replayed into encode once it answers, and complete."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request

import pytest
from aiokafka import AIOKafkaProducer

from streams.kafka.admin import client_options, ensure_topics
from streams.ops.feeder import feed_seeds
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay
from tests.integration.commands import codeclm
from tests.integration.follow import Progress

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def control(url: str, **changes) -> None:
    request = urllib.request.Request(url.removesuffix("/v1") + "/control", data=json.dumps(changes).encode())
    urllib.request.urlopen(request, timeout=10).close()


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    return codeclm(settings, "deadletter", *args)


async def follow(settings, worker, until, what: str):
    progress = Progress(settings)
    progress.start()
    try:
        for _ in range(600):
            progress.check()
            assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
            if until(progress):
                return progress
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{worker.tail()}")
    finally:
        await progress.stop()


def finished(progress: Progress, seed_id: str) -> bool:
    """Every basic instruction of the seed has a verdict, a drop by dedup included (a dead
    letter of the seed itself, from before the replay, does not count)."""
    account = progress.ledger.account(seed_id)
    verdicts = set(account.accepted) | account.rejected | set(account.duplicates)
    return bool(account.generated) and account.generated <= verdicts


async def test_dead_letters_are_summarised_and_replayed_into_their_stage(settings, llm_double, start_worker):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2, "max_iterations": 2},
            "worker": {"http_enabled": False},
        },
    )
    control(llm_double, context_tokens=5)  # every prompt over the context length: the records' own fault
    await ensure_topics(settings)
    seeds = [seed_from_text(f"Summarise chapter {i} of the employee handbook.") for i in range(5)]
    await feed_seeds(settings, seeds)
    producer = AIOKafkaProducer(**client_options(settings.kafka))
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("seeds"), b"\xff\x01 not a seed")
    finally:
        await producer.stop()
    worker = start_worker(settings)
    await follow(settings, worker, lambda p: len(p.dead) == 6, "six dead letters")

    summary = cli(settings, "--json")
    assert summary.returncode == 0, summary.stderr
    report = json.loads(summary.stdout)
    groups = {(g["stage"], g["error_class"]): g for g in report["groups"]}
    assert report["total"] == 6
    assert groups[("encode", "LLMError")]["count"] == 5
    assert any("HTTP #" in reason for reason in groups[("encode", "LLMError")]["reasons"])
    assert groups[("encode", "UnicodeDecodeError")]["count"] == 1
    text = cli(settings)
    assert "6 dead letters" in text.stdout and "LLMError" in text.stdout

    assert cli(settings, "--replay", "dead-00000000000000000000").returncode == 1  # no such id

    control(llm_double, context_tokens=None)
    dry = cli(settings, "--replay-stage", "encode", "--reason-contains", "HTTP 400", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would replay") == 5
    replayed = cli(settings, "--replay-stage", "encode", "--reason-contains", "HTTP 400")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 5 dead letters" in replayed.stdout

    await follow(settings, worker, lambda p: all(finished(p, s.id) for s in seeds), "the replayed seeds")
    after = json.loads(cli(settings, "--json", "--show-replays").stdout)
    assert after["replayed"] == 5  # the replays are on record, on the replayed messages
    listed = cli(settings, "--list", "--show-replays", "--error-class", "LLMError").stdout.splitlines()
    assert len(listed) == 5 and all(line.endswith("(replayed)") for line in listed)
    assert worker.stop() == 0
