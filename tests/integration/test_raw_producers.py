"""Seeds from producers that are not `codeclm feed`, on the real broker: a plain Kafka producer
writing `{"text"}` objects, plain text values and objects with fields of their own. Each
completes, its attributes on every record it led to, and the sink's pairs carry them; an id
that does not match its text and an attributes object over the bound are dead-lettered with
their reasons."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from schemas import AcceptedPair, RejectedInstruction, seed_id_for
from schemas.seed_input import MAX_ATTRIBUTES_BYTES
from streams.kafka.admin import ensure_topics
from streams.kafka.topic_io import follow_until, idempotent_producer, produce_all
from streams.settings import overlay
from tests.integration.follow import TOPICS, Progress

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

# (value as the producer writes it, the seed's text, the attributes it should carry)
GOOD = [
    (b'{"text": "What are good habits for reviewing a pull request?"}', None, {}),
    (b"Explain the CAP theorem\n", "Explain the CAP theorem", {}),  # as `echo ... | kcat -P` sends it
    (
        b'{"text": "Write a limerick about a cat who codes", "category": "writing", "priority": 5}',
        None,
        {"category": "writing", "priority": 5},
    ),
    (
        b'{"text": "How do I undo my last git commit?", "source": "support-bot", "attributes": {"tenant": "acme"}}',
        None,
        {"tenant": "acme"},
    ),
]
MISMATCHED_ID = b'{"id": "seed-00000000000000000000", "text": "Summarise the plot of Hamlet"}'
OVERSIZED = orjson.dumps({"text": "Name three sorting algorithms", "notes": "x" * MAX_ATTRIBUTES_BYTES})


def seed_text(value: bytes, text: str | None) -> str:
    return text if text is not None else orjson.loads(value)["text"]


def test_seeds_from_a_plain_producer_complete_with_their_attributes(settings, llm_double, start_worker):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2, "max_iterations": 2},
            "worker": {"http_enabled": False},
        },
    )
    asyncio.run(ensure_topics(settings))
    worker = start_worker(settings)
    expected = {seed_id_for(seed_text(v, t)): attributes for v, t, attributes in GOOD}
    values = [v for v, _, _ in GOOD] + [MISMATCHED_ID, OVERSIZED]

    async def produce_and_follow() -> Progress:
        producer = idempotent_producer(settings.kafka)  # aiokafka as any producer uses it: raw bytes, no key
        await producer.start()
        try:
            await produce_all(producer, [(settings.topic("seeds"), None, value, None) for value in values])
        finally:
            await producer.stop()
        progress = Progress(settings)

        def done() -> bool:
            assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
            return len(progress.dead) >= 2 and not progress.ledger.incomplete(set(expected))

        finished = await follow_until(settings, TOPICS, progress.add, done, timeout=180)
        assert finished, f"not done after 180 s: {progress.ledger.incomplete(set(expected))}\n{worker.tail()}"
        return progress

    progress = asyncio.run(produce_and_follow())
    by_seed = progress.records_by_seed()

    for seed_id, attributes in expected.items():
        account = progress.ledger.account(seed_id)
        assert account.balanced and not account.dead and account.seed_dead_reason is None, account.summary()
        records = by_seed[seed_id]
        assert {type(r).__name__ for r in records} >= {"Seed", "Metadata", "Instruction", "ScoredPair"}
        assert all(r.attributes == attributes for r in records), [(type(r).__name__, r.attributes) for r in records]
        assert any(isinstance(r, AcceptedPair | RejectedInstruction) for r in records)
    accepted = [r for rs in by_seed.values() for r in rs if isinstance(r, AcceptedPair)]
    assert accepted, "the double accepted no pair: nothing on the sink to check"
    assert all(p.attributes == expected[p.seed_id] for p in accepted)

    letters = {d.error_class: d for d in progress.dead.values()}
    assert set(letters) == {"IdMismatch", "AttributesTooLarge"}
    mismatch = letters["IdMismatch"]
    assert mismatch.stage == "encode" and mismatch.original.encode() == MISMATCHED_ID
    assert (
        "does not match the text" in mismatch.reason and seed_id_for("Summarise the plot of Hamlet") in mismatch.reason
    )
    too_large = letters["AttributesTooLarge"]
    assert f"at most {MAX_ATTRIBUTES_BYTES}" in too_large.reason and too_large.original.encode() == OVERSIZED
    assert worker.stop() == 0
