"""Bad seed records on the real broker, property-based: each batch hypothesis draws (random
bytes, wrong types, missing fields, blank, huge or binary text, invalid UTF-8, null values,
any key including none) is produced in one go among good seeds. The worker never dies, every
bad record ends in the dead-letter topic with its reason and its original bytes, and the good
seeds around them complete."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from schemas import normalise_text
from schemas.codec import encode
from streams.kafka.admin import client_options, ensure_topics
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay
from tests.integration.follow import Progress
from tests.seed_strategies import BAD_SEED_CLASSES, bad_seed_values, good_texts, keys

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

batches = st.tuples(
    st.lists(st.tuples(keys, bad_seed_values), min_size=8, max_size=20),
    st.lists(st.tuples(keys, good_texts), min_size=2, max_size=4, unique_by=lambda kt: normalise_text(kt[1])),
)


async def produce(settings, records: list[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    """Send raw records in one go; their (partition, offset)s, in order."""
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all")
    await producer.start()
    try:
        # Kafka takes a null key or a null value, not both: a tombstone gets an empty key.
        futures = [
            await producer.send(settings.topic("seeds"), key=b"" if k is None and v is None else k, value=v)
            for k, v in records
        ]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def wait_until_accounted(settings, worker, bad: dict[tuple[int, int], bytes | None], good_ids: set[str]):
    progress = Progress(settings)
    progress.start()
    try:
        for _ in range(600):
            progress.check()
            assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
            dead = {(d.source_partition, d.source_offset): d for d in progress.dead.values()}
            if set(bad) <= set(dead) and not progress.ledger.incomplete(good_ids):
                return progress, dead
            await asyncio.sleep(0.2)
        raise AssertionError(f"not accounted for after 120 s: {len(set(bad) - set(dead))} bad records\n{worker.tail()}")
    finally:
        await progress.stop()


def test_bad_seed_records_are_dead_lettered_and_good_ones_go_through(settings, llm_double, start_worker):
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

    @hypothesis_settings(
        max_examples=3,
        deadline=None,
        phases=(Phase.explicit, Phase.generate),  # no shrinking against a broker: the unit test shrinks
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(batches)
    def check(batch):
        bad, good = batch
        seeds = [seed_from_text(text, "hypothesis") for _, text in good]
        records = list(bad) + [(key, encode(seed)) for (key, _), seed in zip(good, seeds, strict=True)]
        positions = asyncio.run(produce(settings, records))
        bad_at = dict(zip(positions[: len(bad)], (value for _, value in bad), strict=True))
        progress, dead = asyncio.run(wait_until_accounted(settings, worker, bad_at, {s.id for s in seeds}))

        for position, value in bad_at.items():
            letter = dead[position]
            assert letter.stage == "encode" and letter.source_topic == settings.topic("seeds")
            assert letter.reason and letter.error_class in BAD_SEED_CLASSES
            original = (
                letter.original.encode() if letter.original_encoding == "utf-8" else base64.b64decode(letter.original)
            )
            assert original == (value or b""), letter.reason
        for seed in seeds:
            account = progress.ledger.account(seed.id)
            assert account.balanced and account.seed_dead_reason is None and not account.dead, account.summary()

    check()
    assert worker.stop() == 0
