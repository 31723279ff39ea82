"""Records that can evolve, on the real broker: every record of a finished run is copied to a fresh
set of topics with fields this version does not know added to it and to each object inside it,
as a later codeclm might write them. The published JSON Schemas accept each copy; a worker on
the copies reads every one at every stage, dead-letters none for its added fields and accounts
for every seed; and every command that reads the topics works on them and agrees with the
original run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import jsonschema
import pytest

from agents.pipeline import CONSERVATION_TOPICS, STAGES
from schemas import SCHEMA_VERSION, AcceptedPair, DeadLetter
from schemas.codec import RECORD_TYPE_HEADER, SCHEMA_VERSION_HEADER, DecodeError, record_headers
from schemas.topics import TOPICS, decode_on
from streams.kafka.admin import ensure_topics
from streams.kafka.topic_io import follow_until, idempotent_producer, produce_all, read_messages, read_records
from streams.ops.consumer_lag import LagReport, lag_report
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import seed_from_text
from streams.settings import Settings, overlay
from tests.integration.commands import codeclm
from tests.later_records import ADDED, with_added_fields
from tests.paths import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(420)]

NOT_UTF8 = b"\xff\xfe not a seed"


async def run_to_the_end(settings: Settings, seed_ids: set[str], worker) -> Ledger:
    ledger = Ledger()

    def done() -> bool:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        return not ledger.incomplete(seed_ids)

    assert await follow_until(settings, CONSERVATION_TOPICS, ledger.add, done, 180), worker.tail()
    return ledger


async def read_to_the_end(settings: Settings, worker, timeout: float = 180) -> LagReport:
    """Until every stage's group has committed every record of its inputs."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (report := await lag_report(settings)).total > 0:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        assert asyncio.get_running_loop().time() < deadline, f"lag {report.total} after {timeout} s\n{worker.tail()}"
        await asyncio.sleep(1)
    return report


async def copy_with_added_fields(source: Settings, target: Settings) -> dict[str, list[bytes]]:
    """Every record of `source`'s topics onto `target`'s, each with fields added; what was
    written, by topic. A value that is no record (the bad seed) is copied as it is."""
    await ensure_topics(target)
    names = {source.topic(t.name): t.name for t in TOPICS}
    records, written = [], {}
    async for message in read_messages(source.kafka, list(names)):
        topic = names[message.topic]
        try:
            record = decode_on(topic, message.value)
        except DecodeError:
            value, headers = message.value, None
        else:
            # what codeclm wrote (the worker, the feeder) names its record type and version in headers
            assert dict(message.headers) == {
                RECORD_TYPE_HEADER: type(record).__name__.encode(),
                SCHEMA_VERSION_HEADER: str(SCHEMA_VERSION).encode(),
            }, (topic, message.headers)
            value, headers = with_added_fields(record), record_headers(record)
        records.append((target.topic(topic), message.key, value, headers))
        written.setdefault(topic, []).append(value)
    producer = idempotent_producer(target.kafka)
    await producer.start()
    try:
        await produce_all(producer, records)
    finally:
        await producer.stop()
    return written


def test_records_with_added_fields_go_through_every_stage_and_every_command(
    settings, llm_double, start_worker, tmp_path
):
    first = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2, "max_iterations": 2},
            "worker": {"http_enabled": False},
        },
    )
    seeds = [seed_from_text(f"Explain how to review a {topic} change") for topic in ("database", "network")]
    wanted = {s.id for s in seeds}
    worker = start_worker(first, "worker-first")

    async def first_run() -> Ledger:
        await feed_seeds(first, seeds)
        producer = idempotent_producer(first.kafka)
        await producer.start()
        await produce_all(producer, [(first.topic("seeds"), None, NOT_UTF8, None)])
        await producer.stop()
        return await run_to_the_end(first, wanted, worker)

    asyncio.run(first_run())
    assert worker.stop() == 0

    # The same run as a later codeclm would have written it, on topics of their own.
    later = overlay(
        first,
        {
            "kafka": {"topic_prefix": f"later-{first.kafka.topic_prefix}"},
            "worker": {"app_id": f"{first.worker.app_id}-later"},
        },
    )
    written = asyncio.run(copy_with_added_fields(first, later))
    assert {"seeds", "metadata", "basic", "scored", "accepted", "deadletter"} <= set(written)

    schema_dir = tmp_path / "schema"
    subprocess.run([sys.executable, "-m", "streams.cli", "schema", "--out", str(schema_dir)], check=True, cwd=ROOT)
    for spec in TOPICS:
        validator = jsonschema.Draft202012Validator(json.loads((schema_dir / f"{spec.name}.schema.json").read_text()))
        for value in written.get(spec.name, []):
            if value != NOT_UTF8:
                assert ADDED.encode() in value
                validator.validate(json.loads(value))

    # Every stage reads the copies (each input topic holds them), to the end, and every seed
    # stays accounted for.
    worker = start_worker(later, "worker-later")
    drained = asyncio.run(read_to_the_end(later, worker))
    later_ledger = asyncio.run(run_to_the_end(later, wanted, worker))
    assert worker.stop() == 0
    assert {s.stage for s in drained.stages if s.committed > 0} == {stage.name for stage in STAGES}
    for seed in seeds:
        account = later_ledger.account(seed.id)
        assert account.balanced and not account.dead, account.summary()

    async def dead_letters() -> list[DeadLetter]:
        out = []
        async for message in read_messages(later.kafka, [later.topic("deadletter")]):
            letter = decode_on("deadletter", message.value)
            assert isinstance(letter, DeadLetter)
            out.append(letter)
        return out

    # Only the bad seed is dead (its copied letter and the later worker's own), none for a field.
    assert {(d.stage, d.error_class) for d in asyncio.run(dead_letters())} == {("encode", "UnicodeDecodeError")}

    # Every command that reads the topics, on the copies.
    accepted = asyncio.run(accepted_ids(first))
    assert accepted, "the double accepted no pair: nothing on the sink to check"
    audit = codeclm(later, "audit")
    assert audit.returncode == 0 and "conservation holds" in audit.stdout, audit.stdout + audit.stderr
    for fmt in ("messages", "alpaca", "sharegpt"):
        export = codeclm(later, "export", "--from-beginning", "--format", fmt, "--attributes")
        assert export.returncode == 0, export.stderr
        assert {json.loads(line)["id"] for line in export.stdout.splitlines()} == accepted
    report = codeclm(later, "report", "--no-embeddings", "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["overview"]["accepted"] == len(accepted) and summary["overview"]["seeds"] == len(seeds)
    trace = codeclm(later, "trace", seeds[0].id)
    assert trace.returncode == 0 and seeds[0].text in trace.stdout, trace.stderr
    listed = codeclm(later, "deadletter", "--list")
    assert listed.returncode == 0 and "UnicodeDecodeError" in listed.stdout, listed.stderr
    lag = codeclm(later, "lag", "--app-id", later.worker.app_id)
    assert lag.returncode == 0, lag.stderr
    augment = codeclm(later, "augment", "--count", "2", "--dry-run")
    assert augment.returncode == 0, augment.stdout + augment.stderr
    refeed = tmp_path / "seeds.txt"
    refeed.write_text("".join(f"{s.text}\n" for s in seeds))
    fed = codeclm(later, "feed", str(refeed))
    assert fed.returncode == 0 and f"{len(seeds)} already fed" in fed.stdout, fed.stdout + fed.stderr


async def accepted_ids(settings: Settings) -> set[str]:
    return {r.id async for _, r in read_records(settings, ["accepted"]) if isinstance(r, AcceptedPair)}
