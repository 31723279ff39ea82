"""Reading and writing topics from outside a stage's consumer group: the one place for it.

- `partitions_of`: a topic's partitions, once every one has a leader;
- `read_messages`: everything on some topics from their start, with no consumer group (so looking
  never moves a stage's committed offsets), to the end offsets they had when reading began, or
  on and on with `follow`;
- `TopicTail`: what a topic gained since the previous call (the dedup stage's catch-up);
- `read_records`, `follow_until`: the pipeline's records on its topics, decoded;
- `produce_all`: send and wait until the broker has acknowledged every record;
- `retry_until_broker_answers`: call again, with capped backoff, while the broker is away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, RecordMetadata

from schemas import Record
from schemas.codec import DecodeError
from schemas.topics import decode_on
from streams.kafka.admin import client_options, ensure_topics, topic_partitions
from streams.settings import KafkaSettings, Settings

T = TypeVar("T")
RETRY_MAX_S = 5.0  # the longest wait between tries while the broker is away


async def partitions_of(kafka: KafkaSettings, topics: Iterable[str]) -> list[TopicPartition]:
    """The partitions of `topics` (full names) whose partitions all have a leader."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        counts = await topic_partitions(admin, list(topics))
    finally:
        await admin.close()
    return [TopicPartition(topic, p) for topic, count in counts.items() for p in range(count)]


def consumer_without_group(kafka: KafkaSettings, **options: Any) -> AIOKafkaConsumer:
    """A consumer that belongs to no group and commits nothing: it reads what it is assigned."""
    return AIOKafkaConsumer(
        **client_options(kafka), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **options
    )


async def read_messages(
    kafka: KafkaSettings,
    topics: Iterable[str],
    *,
    follow: bool = False,
    idle_timeout: float = 2.0,
    **consumer_options: Any,
) -> AsyncIterator[ConsumerRecord]:
    """Every message of `topics` (full names) from their start. Without `follow`, stops once
    every partition is read to the end offset it had when reading began."""
    partitions = await partitions_of(kafka, topics)
    consumer = consumer_without_group(kafka, **consumer_options)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions) if partitions else {}
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while follow or remaining:
            batch = await consumer.getmany(timeout_ms=500 if follow else int(idle_timeout * 1000))
            for messages in batch.values():
                for message in messages:
                    yield message
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:  # read to the end, or its tail compacted away
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def end_offsets(kafka: KafkaSettings, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The log-end offset of every partition of `topics` (full names)."""
    partitions = await partitions_of(kafka, topics)
    consumer = consumer_without_group(kafka)
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()


async def read_records(
    settings: Settings, topics: Iterable[str], *, follow: bool = False, idle_timeout: float = 2.0
) -> AsyncIterator[tuple[str, Record]]:
    """(topic name without prefix, record) from the start of the pipeline's `topics` (the
    topics are created first if missing). Unreadable records are skipped: they are the
    dead-letter topic's business."""
    await ensure_topics(settings)
    prefix = settings.kafka.topic_prefix
    names = [settings.topic(name) for name in topics]
    async for message in read_messages(settings.kafka, names, follow=follow, idle_timeout=idle_timeout):
        name = message.topic.removeprefix(prefix)
        try:
            yield name, decode_on(name, message.value)
        except DecodeError:
            continue


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


class TopicTail:
    """Each call returns the messages a topic gained since the previous call (from its start the
    first time), read up to the end offsets the broker has at the time of the call. While the
    broker is away a call waits for it: a caller that needs everything gets nothing less."""

    def __init__(self, kafka: KafkaSettings, topic: str, log: logging.Logger):
        self.kafka = kafka
        self.topic = topic
        self.log = log
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        self.consumer = consumer_without_group(self.kafka)
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def __call__(self) -> list[ConsumerRecord]:
        return await retry_until_broker_answers(self._read_new, what=f"reading {self.topic}", log=self.log)

    async def _read_new(self) -> list[ConsumerRecord]:
        consumer = self.consumer
        assert consumer is not None, "TopicTail.start first"
        if not self.partitions:
            partitions = await partitions_of(self.kafka, [self.topic])
            if not partitions:
                raise KafkaError(f"topic {self.topic} has no partitions with a leader yet")
            self.partitions = partitions
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(self.partitions)
        out: list[ConsumerRecord] = []
        while any([await consumer.position(tp) < ends[tp] for tp in self.partitions]):
            batch = await consumer.getmany(*self.partitions, timeout_ms=500)
            for messages in batch.values():
                out.extend(messages)
        return out


def idempotent_producer(kafka: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica and never writes a retried batch twice."""
    return AIOKafkaProducer(**client_options(kafka), acks="all", enable_idempotence=True, **options)


async def produce_all(
    producer: AIOKafkaProducer, records: Iterable[tuple[str, bytes | None, bytes, Sequence[tuple[str, bytes]] | None]]
) -> list[RecordMetadata]:
    """Send (topic, key, value, headers) records and wait until the broker acknowledged each;
    a refusal is raised."""
    futures = [
        await producer.send(topic, key=key, value=value, headers=headers) for topic, key, value, headers in records
    ]
    return list(await asyncio.gather(*futures))


async def retry_until_broker_answers(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    log: logging.Logger,
    errors: tuple[type[BaseException], ...] = (KafkaError,),
    fatal: tuple[type[BaseException], ...] = (),
    first_delay_s: float = 0.2,
) -> T:
    """`call()` again and again, with backoff capped at RETRY_MAX_S, while `errors` say the
    broker is away; nothing is skipped meanwhile. `fatal` errors (a record the broker will
    never take) are raised at once."""
    delay = first_delay_s
    while True:
        try:
            return await call()
        except fatal:
            raise
        except errors as exc:
            log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
