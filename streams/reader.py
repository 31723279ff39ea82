"""Reading the pipeline's topics from outside the pipeline (demo, tests, audits).

Reads with no consumer group (manual assignment from the beginning), so looking never moves
any stage's committed offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas import Record
from schemas.codec import DecodeError, decode
from streams.admin import client_options, ensure_topics, topic_partitions
from streams.settings import Settings
from streams.topics import record_type


async def read_records(
    settings: Settings,
    topics: Iterable[str],
    *,
    follow: bool = False,
    idle_timeout: float = 2.0,
) -> AsyncIterator[tuple[str, Record]]:
    """Yield (topic name without prefix, record) from the start of `topics`.

    Without `follow`, stops once every partition has been read to the end offset it had when
    reading began. Unreadable records are skipped (they are the dead-letter topic's business).
    """
    names = list(topics)
    await ensure_topics(settings)
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        counts = await topic_partitions(admin, [settings.topic(n) for n in names])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p) for topic, n in counts.items() for p in range(n)]
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions) if partitions else {}
        prefix = settings.kafka.topic_prefix
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_timeout * 1000) if not follow else 500)
            for tp, messages in batch.items():
                name = tp.topic.removeprefix(prefix)
                for message in messages:
                    try:
                        yield name, decode(record_type(name), message.value)
                    except DecodeError:
                        continue
            if not follow:
                positions = {tp: await consumer.position(tp) for tp in partitions}
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    return
    finally:
        await consumer.stop()


async def follow_until(
    settings: Settings,
    topics: Iterable[str],
    on_record: Callable[[str, Record], None],
    done: Callable[[], bool],
    timeout: float,
) -> bool:
    """Feed `on_record` with records as they arrive until `done()` or `timeout` seconds.
    `done()` is also asked twice a second, so it may watch other things (a child process) and
    raise. Returns whether `done()` became true."""

    async def consume() -> None:
        async for name, record in read_records(settings, topics, follow=True):
            on_record(name, record)

    async def watch() -> None:
        while not done():
            await asyncio.sleep(0.5)

    consumer, watcher = asyncio.ensure_future(consume()), asyncio.ensure_future(watch())
    try:
        finished, _ = await asyncio.wait({consumer, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            task.result()  # re-raise what went wrong in either
        return done()
    finally:
        for task in (consumer, watcher):
            task.cancel()
        await asyncio.gather(consumer, watcher, return_exceptions=True)
