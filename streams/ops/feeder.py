"""The one feeder: what the readers of streams.ops.seed_files yield (or any seeds) go to the
seeds topic, bad lines to the dead-letter topic, seeds already fed are skipped, at an optional
rate. `codeclm feed`, the demo, the bench and the tests all feed through it. User-written
metadata (streams.ops.metadata_files) goes the same way to the metadata topic (`topic`).

Duplicates are found from the topic itself: seeds (and metadata) are keyed by their id, so
reading the topic's keys (values are not even decoded) tells which it holds; no second topic
has to be kept in step with it. The ids are kept in memory while feeding, so a seed repeated inside
the input is sent once too. What the topic no longer holds (past its retention) can be fed
again; give the seeds topic `cleanup.policy=compact` to remember every seed (keyed by id,
compaction keeps one record per seed).

Reading runs in a thread (files, standard input, a followed file that waits for more lines);
sending runs on the event loop, a batch at a time, and waits for the broker's ack of each.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, cast

from aiokafka import AIOKafkaProducer

from schemas import DeadLetter, Record, derive_id
from schemas.codec import encode, original_payload, record_headers
from schemas.topics import TopicName
from streams.kafka.admin import ensure_topics
from streams.kafka.topic_io import idempotent_producer, read_messages
from streams.ops.seed_files import BadLine
from streams.settings import Settings

FeedItem = Record | BadLine  # a Seed (or a root Metadata) to send, or a bad input line

_DONE = object()
MAX_UNACKED = 10_000  # sends waiting for the broker's ack before feeding waits for them


@dataclass
class FeedStats:
    read: int = 0  # records read (fed + duplicates)
    fed: int = 0
    duplicates: int = 0
    bad: int = 0


async def fed_ids(settings: Settings, topic: TopicName = "seeds") -> set[str]:
    """Ids of the records on a topic now (the seeds topic's: its seeds): its record keys, read
    without a consumer group."""
    messages = read_messages(settings.kafka, [settings.topic(topic)], max_partition_fetch_bytes=4 << 20)
    return {m.key.decode("utf-8", "replace") async for m in messages if m.key}


def bad_line_record(bad: BadLine, source: str) -> DeadLetter:
    """A bad input line as a dead letter of stage "feed", with the original line."""
    original, encoding = original_payload(bad.raw.encode("utf-8", "surrogateescape"))
    return DeadLetter(
        id=derive_id("dead", "feed", source, bad.line, original),
        seed_id="",
        parent_id=None,
        stage="feed",
        reason=f"{source} line {bad.line}: {bad.reason}",
        error_class=bad.error_class,
        record_id=f"{source}:{bad.line}",
        original=original,
        original_encoding=cast(Literal["utf-8", "base64"], encoding),
    )


class RateLimit:
    """At most `per_second` sends per second, evenly spaced; time spent idle is not saved up
    for a burst afterwards (None: no limit)."""

    def __init__(self, per_second: float | None, clock: Callable[[], float] = time.monotonic):
        self.per_second = per_second
        self.clock = clock
        self.next_slot: float | None = None

    def delay(self) -> float:
        """Seconds to wait before the next send."""
        if not self.per_second:
            return 0.0
        now = self.clock()
        slot = now if self.next_slot is None else max(self.next_slot, now)
        self.next_slot = slot + 1 / self.per_second
        return slot - now


class Feeder:
    """Sends items to `topic` (seeds, or metadata for user-written metadata), bad lines to the
    dead-letter topic. `on_bad(line)` and `on_progress(stats)` let the caller report."""

    def __init__(
        self,
        settings: Settings,
        source: str,
        *,
        topic: TopicName = "seeds",
        allow_duplicates: bool = False,
        rate: float | None = None,
        on_bad: Callable[[BadLine], None] = lambda bad: None,
        on_progress: Callable[[FeedStats], None] = lambda stats: None,
        on_fed: Callable[[Record], None] = lambda record: None,
    ):
        self.settings = settings
        self.source = source
        self.topic = topic
        self.allow_duplicates = allow_duplicates
        self.rate = RateLimit(rate)
        self.on_bad = on_bad
        self.on_progress = on_progress
        self.on_fed = on_fed
        self.stats = FeedStats()
        self.known: set[str] = set()
        self._unacked: deque[asyncio.Future] = deque()

    async def run(self, items: Iterator[FeedItem], stop: threading.Event | None = None) -> FeedStats:
        """Feed every item; returns when `items` ends (a followed input ends once `stop` is set)."""
        created = await ensure_topics(self.settings)
        if not self.allow_duplicates and self.settings.topic(self.topic) not in created:  # new: holds nothing
            self.known = await fed_ids(self.settings, self.topic)
        producer = idempotent_producer(self.settings.kafka, linger_ms=5)
        await producer.start()
        stop = stop or threading.Event()
        reader = ThreadedReader(items, stop)
        try:
            while not stop.is_set() and (chunk := await reader.next_chunk()) is not None:
                for item in chunk:
                    if stop.is_set():  # what was read and not sent is sent by the next feed of the input
                        break
                    await self._send(producer, item)
                self.on_progress(self.stats)
            while self._unacked:
                await self._unacked.popleft()
        finally:
            reader.close()
            await producer.stop()
        self.on_progress(self.stats)
        return self.stats

    async def _send(self, producer: AIOKafkaProducer, item: FeedItem) -> None:
        record: Record
        topic: TopicName
        if isinstance(item, BadLine):
            self.stats.bad += 1
            self.on_bad(item)
            record = bad_line_record(item, self.source)
            topic = "deadletter"
        else:
            self.stats.read += 1
            if item.id in self.known:
                self.stats.duplicates += 1
                return
            if not self.allow_duplicates:
                self.known.add(item.id)
            wait = self.rate.delay()
            if wait:
                await asyncio.sleep(wait)
            record, topic = item, self.topic
            self.stats.fed += 1
            self.on_fed(item)
        future = await producer.send(
            self.settings.topic(topic), key=record.id.encode(), value=encode(record), headers=record_headers(record)
        )
        self._unacked.append(future)
        while len(self._unacked) > MAX_UNACKED or (self._unacked and self._unacked[0].done()):
            await self._unacked.popleft()  # raises if the broker refused it


async def feed_seeds(
    settings: Settings,
    items: Iterable[FeedItem],
    *,
    source: str = "api",
    topic: TopicName = "seeds",
    allow_duplicates: bool = False,
    rate: float | None = None,
    on_fed: Callable[[Record], None] = lambda record: None,
) -> FeedStats:
    """Feed seeds (and bad lines, as dead letters) from code: the demo, the bench, the tests;
    with `topic="metadata"`, root metadata records."""
    feeder = Feeder(settings, source, topic=topic, allow_duplicates=allow_duplicates, rate=rate, on_fed=on_fed)
    return await feeder.run(iter(list(items)))


class ThreadedReader:
    """Runs a (possibly blocking) iterator in a thread; hands its items over in chunks of what
    is ready, so a followed file's new lines are sent at once and a big file in large batches."""

    def __init__(self, items: Iterator[FeedItem], stop: threading.Event, chunk: int = 1000):
        self.stop = stop
        self.chunk = chunk
        self._queue: queue.Queue = queue.Queue(maxsize=10 * chunk)
        self._closed = False
        self._ended = False
        self._thread = threading.Thread(target=self._read, args=(items,), name="feed-reader", daemon=True)
        self._thread.start()

    def _read(self, items: Iterator[FeedItem]) -> None:
        try:
            for item in items:
                if not self._put(item) or self.stop.is_set():
                    break
            self._put(_DONE)
        except Exception as exc:  # crosses the thread: the event loop side raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._closed:
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _get(self) -> object:
        while not self._closed:
            try:
                return self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
        return _DONE

    async def next_chunk(self) -> list[FeedItem] | None:
        """The items ready now (waiting for the first); None once the input has ended."""
        if self._ended:
            return None
        items = [await asyncio.to_thread(self._get)]
        while len(items) < self.chunk:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        out: list[FeedItem] = []
        for item in items:
            if item is _DONE:
                self._ended = True
                break
            if isinstance(item, Exception):
                self._ended = True
                raise item
            out.append(item)  # type: ignore[arg-type]
        return out

    def close(self) -> None:
        self._closed = True
        self.stop.set()
        self._thread.join(timeout=2)
