"""Downstream consumers of the sink on the embedded broker: `codeclm export` (groups, restarts,
formats), Kafka's own console consumer (not Python) against the JSON Schema, and export groups
attaching and detaching while the pipeline runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.pipeline import CONSERVATION_TOPICS
from schemas import AcceptedPair, MetadataSummary
from schemas.codec import encode
from streams.kafka.admin import client_options, ensure_topics
from streams.kafka.topic_io import follow_until
from streams.ops.consumer_lag import lag_report
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay, settings_env
from tests.integration.kafka_tool import CONSOLE_CONSUMER, run_kafka_tool

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
EXPORT = [sys.executable, "-m", "streams.cli", "export"]


def pair(n: int) -> AcceptedPair:
    return AcceptedPair(
        id=f"pair-{n:04d}",
        seed_id=f"seed-{n % 3}",
        parent_id=f"scored-{n}",
        root_id=f"basic-{n}",
        iteration=1 + n % 4,
        instruction=f"Exported question {n}?",
        response=f"Exported answer {n}.",
        response_source="strong" if n % 2 else "target",
        strong_score=8.5,
        target_score=4.0,
        gap=4.5,
        metadata=MetadataSummary(use_case="testing", skills=("checking",)),
        lineage=(f"seed-{n % 3}", f"basic-{n}", f"scored-{n}"),
        llm_calls=6,
        prompt_tokens=300,
        completion_tokens=120,
    )


async def send(settings, values: list[tuple[bytes | None, bytes]]) -> None:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all")
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(settings.topic("accepted"), key=key, value=value)
    finally:
        await producer.stop()


def export(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXPORT, *args],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def ids(path: Path) -> list[str]:
    return [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()]


async def test_export_groups_resume_formats_and_duplicates(settings, tmp_path):
    pairs = [pair(n) for n in range(20)]
    # At-least-once: some pairs arrive twice; a record that is no pair is skipped, not fatal.
    await send(settings, [(p.id.encode(), encode(p)) for p in pairs + pairs[:5]] + [(None, b"garbage")])

    for fmt, key in (("messages", "messages"), ("alpaca", "output"), ("sharegpt", "conversations")):
        out = tmp_path / f"{fmt}.jsonl"
        done = export(settings, "--from-beginning", "--format", fmt, "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert "wrote 20 pairs" in done.stderr and "5 duplicates skipped" in done.stderr, done.stderr
        rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        assert sorted(r["id"] for r in rows) == sorted(p.id for p in pairs)
        assert all(key in r for r in rows)
    rows = {r["id"]: r for r in map(orjson.loads, (tmp_path / "messages.jsonl").read_bytes().splitlines())}
    assert rows["pair-0007"]["messages"] == [
        {"role": "user", "content": "Exported question 7?"},
        {"role": "assistant", "content": "Exported answer 7."},
    ]

    group = f"{settings.worker.app_id}-trainer"
    out = tmp_path / "trainer.jsonl"
    assert "wrote 20 pairs" in export(settings, "--group", group, "--out", str(out)).stderr
    assert "wrote 0 pairs" in export(settings, "--group", group, "--out", str(out)).stderr  # committed
    more = [pair(n) for n in range(20, 24)]
    await send(settings, [(p.id.encode(), encode(p)) for p in more + pairs[:2]])
    resumed = export(settings, "--group", group, "--out", str(out))
    assert "wrote 4 pairs" in resumed.stderr and "2 duplicates skipped" in resumed.stderr
    assert sorted(ids(out)) == sorted(p.id for p in pairs + more)

    # A new run appending to the same file, from the beginning: the file's ids are known.
    with out.open("ab") as f:
        f.write(b'{"id": "pair-0099", "mess')  # what a killed export leaves behind
    again = export(settings, "--from-beginning", "--out", str(out))
    assert "removed an incomplete last line" in again.stderr
    assert "wrote 0 pairs" in again.stderr and "31 duplicates skipped" in again.stderr  # 24 pairs, 7 repeats
    assert len(ids(out)) == 24

    to_stdout = export(settings, "--from-beginning", "--format", "alpaca")
    assert len(to_stdout.stdout.splitlines()) == 24
    refused = export(settings, "--format", "alpaca")
    assert refused.returncode == 2 and "one of the arguments --group --from-beginning is required" in refused.stderr


async def test_kafkas_console_consumer_reads_the_sink_and_every_record_fits_the_schema(settings, tmp_path):
    pairs = [pair(n) for n in range(6)]
    await send(settings, [(p.id.encode(), encode(p)) for p in pairs])
    subprocess.run(
        [sys.executable, "-m", "streams.cli", "schema", "--out", str(tmp_path / "schema")], check=True, cwd=ROOT
    )
    schema = json.loads((tmp_path / "schema" / "accepted.schema.json").read_text())

    result = run_kafka_tool(
        CONSOLE_CONSUMER,
        "--bootstrap-server",
        settings.kafka.bootstrap_servers,
        "--topic",
        settings.topic("accepted"),
        "--from-beginning",
        "--max-messages",
        str(len(pairs)),
        "--timeout-ms",
        "30000",
        "--formatter-property",
        "print.key=true",
        "--formatter-property",
        "key.separator=\t",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(pairs), result.stdout + result.stderr
    validator = jsonschema.Draft202012Validator(schema)
    seen = set()
    for line in lines:
        key, value = line.split("\t", 1)
        record = json.loads(value)
        validator.validate(record)
        assert key == record["id"]  # keyed by pair id
        seen.add(record["id"])
    assert seen == {p.id for p in pairs}


async def test_export_groups_attach_and_detach_while_the_pipeline_runs(
    settings, llm_double, start_worker, processes, tmp_path
):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 3},
        },
    )
    await ensure_topics(settings)
    worker = start_worker(settings)
    env = {**settings_env(settings), "PYTHONUNBUFFERED": "1"}

    def attach(name: str, group: str, out: Path):
        return processes(name, [*EXPORT, "--group", group, "--follow", "--out", str(out)], env)

    a_out, b_out = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a = attach("export-a", f"{settings.worker.app_id}-a", a_out)
    seeds = [seed_from_text(f"Attach and detach seed {i}: explain a sorting algorithm") for i in range(10)]
    await feed_seeds(settings, seeds[:5])
    b = attach("export-b", f"{settings.worker.app_id}-b", b_out)
    await asyncio.sleep(3)
    b.popen.send_signal(signal.SIGINT)  # detach b mid-run ...
    assert b.popen.wait(30) == 0, b.tail()
    await feed_seeds(settings, seeds[5:])
    b2 = attach("export-b-again", f"{settings.worker.app_id}-b", b_out)  # ... and attach it again

    ledger = Ledger()

    def done() -> bool:
        assert worker.popen.poll() is None, worker.tail()
        return not ledger.incomplete({s.id for s in seeds})

    assert await follow_until(settings, CONSERVATION_TOPICS, ledger.add, done, 180)
    accepted = {p.id for account in ledger.seeds.values() for p in account.accepted.values()}
    assert accepted and all(ledger.account(s.id).balanced for s in seeds)

    for _ in range(120):  # the exporters follow the sink: wait until they have written every pair
        if a_out.exists() and b_out.exists() and set(ids(a_out)) >= accepted and set(ids(b_out)) >= accepted:
            break
        await asyncio.sleep(0.5)
    for export_process in (a, b2):
        export_process.popen.send_signal(signal.SIGINT)
        assert export_process.popen.wait(30) == 0, export_process.tail()
    # Each group has every pair exactly once, whatever the detaching and re-attaching.
    assert sorted(ids(a_out)) == sorted(accepted)
    assert sorted(ids(b_out)) == sorted(accepted)
    # The pipeline's own groups went on untouched: all caught up, and the sink was only read.
    report = await lag_report(settings)
    assert all(stage.committed > 0 for stage in report.stages)
