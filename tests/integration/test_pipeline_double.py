"""20 seeds through every stage on the real embedded broker, with the LLM double."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from agents.pipeline import CONSERVATION_TOPICS
from schemas import AcceptedPair, Record, derive_id
from schemas.codec import encode
from streams.kafka.topic_io import follow_until, read_records
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import BadLine, read_seeds
from streams.settings import overlay

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


async def test_twenty_seeds_end_in_accepted_rejected_or_dead_letters(settings, llm_double, start_worker, tmp_path):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 5},
        },
    )
    worker = start_worker(settings)
    seeds = [s for s in read_seeds(ROOT / "examples" / "seeds.jsonl") if not isinstance(s, BadLine)][:20]
    assert len(seeds) == 20
    await feed_seeds(settings, seeds)

    ledger = Ledger()
    wanted = {s.id for s in seeds}

    def done() -> bool:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        return not ledger.incomplete(wanted)

    finished = await follow_until(settings, CONSERVATION_TOPICS, ledger.add, done, timeout=300)
    assert finished, f"unfinished seeds: {[a.summary() for a in ledger.incomplete(wanted)]}\n{worker.tail()}"

    # Conservation: per seed, instructions generated == accepted + rejected + dead-lettered.
    for seed in seeds:
        account = ledger.account(seed.id)
        assert account.seed_dead_reason is None, account.seed_dead_reason
        assert len(account.generated) == account.expected == 5
        assert account.balanced, account.summary()

    accepted = [p for a in ledger.seeds.values() for p in a.accepted.values()]
    rejected = sum(len(a.rejected) for a in ledger.seeds.values())
    assert accepted and rejected, "the double's scores give both verdicts"
    assert any(p.iteration > 1 for p in accepted), "some pairs came through tailor"

    # Lineage leads back to the seed, whose text the pair carries; the kept answer follows the
    # sign of the gap.
    seed_texts = {s.id: s.text for s in seeds}
    for pair in accepted:
        assert pair.seed_id in wanted
        assert pair.seed_text == seed_texts[pair.seed_id]
        assert pair.lineage[0] == pair.seed_id
        assert derive_id("meta", pair.seed_id) in pair.lineage
        assert pair.root_id in pair.lineage
        assert abs(pair.gap) > settings.pipeline.gap_threshold
        assert pair.response_source == ("strong" if pair.gap > 0 else "target")
        assert pair.llm_calls > 0 and pair.prompt_tokens > 0

    # Every sink record validates against the JSON Schema `codeclm schema` writes.
    out = tmp_path / "schema"
    subprocess.run([sys.executable, "-m", "streams.cli", "schema", "--out", str(out)], check=True, cwd=ROOT)
    schema = json.loads((out / "accepted.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for pair in accepted:
        validator.validate(json.loads(encode(pair)))


async def test_a_bad_seed_record_is_dead_lettered_and_the_rest_goes_on(settings, llm_double, start_worker):
    from aiokafka import AIOKafkaProducer

    from streams.kafka.admin import client_options, ensure_topics
    from streams.ops.seed_files import seed_from_text

    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2},
        },
    )
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings.kafka))
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("seeds"), b"\xff\xfe not json")
        await producer.send_and_wait(settings.topic("seeds"), b'{"text": 42}')
    finally:
        await producer.stop()
    good = seed_from_text("Explain recursion with an example.")
    await feed_seeds(settings, [good])
    start_worker(settings)

    ledger = Ledger()
    records: list[tuple[str, Record]] = []

    def add(topic: str, record: Record) -> None:
        records.append((topic, record))
        ledger.add(topic, record)

    assert await follow_until(
        settings,
        CONSERVATION_TOPICS,
        add,
        lambda: not ledger.incomplete({good.id}) and ledger.unattributed_dead == 2,
        timeout=120,
    )
    dead = [r for t, r in records if t == "deadletter" and not r.seed_id]
    assert {d.error_class for d in dead} == {"UnicodeDecodeError", "MissingText"}
    assert all(d.stage == "encode" and d.source_topic == settings.topic("seeds") for d in dead)
    assert any(d.original_encoding == "base64" for d in dead)  # invalid UTF-8 kept byte for byte
    assert ledger.account(good.id).balanced


async def test_reader_sees_what_was_produced(settings):
    from streams.kafka.admin import ensure_topics
    from streams.ops.seed_files import seed_from_text

    await ensure_topics(settings)
    seeds = [seed_from_text(f"seed number {i}") for i in range(7)]
    await feed_seeds(settings, seeds)
    got = [r async for _, r in read_records(settings, ["seeds"])]
    assert sorted(r.id for r in got) == sorted(s.id for s in seeds)
    assert all(isinstance(r, type(seeds[0])) for r in got)
    assert not any(isinstance(r, AcceptedPair) for r in got)
