"""The dedup stage's I/O: which embeddings it runs with, and reading back the `basic` topic so
its index holds every instruction ever kept (agents/dedup.py makes the decisions).

One `DedupService` per worker that runs the stage, started before the stage app and stopped
after it; `process` (the stage's entry in streams.app.STAGE_PROCESS) finds it here.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from agents.base import Emit, StageContext
from agents.dedup import Deduplicator, Embed
from agents.embeddings import INSTALL_HINT, MODEL_PACKAGE, missing_packages
from agents.near_dup import text_key
from schemas import Instruction
from schemas.codec import DecodeError, decode
from streams import metrics
from streams.admin import client_options, topic_partitions
from streams.settings import Settings

log = logging.getLogger("codeclm.dedup")

RETRY_MAX_S = 5.0
CACHE_FILE = "dedup-embeddings.sqlite"  # in the worker's data directory
_ACTIVE: DedupService | None = None


class EmbeddingsUnavailable(RuntimeError):
    """dedup.embeddings is "on" and the `neardup` extra or the model package is missing."""


def embedder(settings: Settings) -> Embed | None:
    """The embedding function the settings ask for, None for the exact pass alone. "on"
    without the packages fails here, at worker start, rather than at the first record."""
    choice = settings.dedup.embeddings
    if not settings.dedup.enabled or choice == "off":
        return None
    missing = missing_packages()
    if missing:
        if choice == "on":
            raise EmbeddingsUnavailable(
                f"dedup.embeddings is 'on' (CODECLM_DEDUP__EMBEDDINGS) but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}"
            )
        log.info("dedup: exact matches only (embeddings 'auto': %s not installed)", ", ".join(missing))
        return None
    from agents.embeddings import MiniLMEmbedder

    model = MiniLMEmbedder()
    log.info(
        "dedup: exact matches, then all-MiniLM-L6-v2 embeddings at cosine >= %g (embeddings %r)",
        settings.dedup.similarity_threshold,
        choice,
    )
    return model.embed


class EmbeddingCache:
    """Embeddings by text, in SQLite in the worker's data directory: after a restart the index
    is rebuilt from `basic` without embedding every kept instruction again (minutes for a
    long run). Wraps an embed function; called from one worker thread at a time (the dedup
    lock serialises the calls), so one connection serves them all."""

    def __init__(self, path: Path, embed: Embed):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.embed = embed
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS embedding (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self.hits = 0

    def __call__(self, texts: Sequence[str]) -> Any:
        import numpy as np

        if not texts:
            return self.embed(texts)
        keys = [f"{MODEL_PACKAGE}:{text_key(t)}" for t in texts]
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), 500):  # below SQLite's limit on bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT key, vector FROM embedding WHERE key IN ({marks})", chunk))
        missing = [n for n, key in enumerate(keys) if key not in found]
        if missing:
            fresh = self.embed([texts[n] for n in missing])
            rows = [(keys[n], np.asarray(v, dtype=np.float32).tobytes()) for n, v in zip(missing, fresh, strict=True)]
            self.db.executemany("INSERT OR IGNORE INTO embedding VALUES (?, ?)", rows)
            found.update(rows)
        self.hits += len(keys) - len(missing)
        return np.stack([np.frombuffer(found[key], dtype=np.float32) for key in keys])

    def close(self) -> None:
        self.db.close()


class BasicReader:
    """Each call returns the instructions added to `basic` since the previous call (from the
    start the first time), read up to the end offsets the broker has at the time of the call."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.topic("basic")
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            **client_options(self.settings.kafka), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def __call__(self) -> list[Instruction]:
        delay = 0.2
        while True:
            try:
                return await self._read_new()
            except KafkaError as exc:  # the broker is away: decide nothing until it is back
                log.warning("dedup: reading %s failed (%s); retrying in %.1fs", self.topic, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _read_new(self) -> list[Instruction]:
        consumer = self.consumer
        assert consumer is not None, "BasicReader.start first"
        if not self.partitions:
            admin = AIOKafkaAdminClient(**client_options(self.settings.kafka))
            await admin.start()
            try:
                count = (await topic_partitions(admin, [self.topic])).get(self.topic)
            finally:
                await admin.close()
            if not count:
                raise KafkaError(f"topic {self.topic} has no partitions with a leader yet")
            self.partitions = [TopicPartition(self.topic, p) for p in range(count)]
            consumer.assign(self.partitions)
            await consumer.seek_to_beginning(*self.partitions)
        ends = await consumer.end_offsets(self.partitions)
        out: list[Instruction] = []
        while any([await consumer.position(tp) < ends[tp] for tp in self.partitions]):
            batch = await consumer.getmany(*self.partitions, timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    try:
                        out.append(decode(Instruction, message.value))
                    except DecodeError:
                        continue  # nothing unreadable reaches basic from dedup; not ours to judge
        return out


class DedupService(mode.Service):
    """The worker's Deduplicator and its reader of the basic topic."""

    def __init__(self, settings: Settings, **kwargs):
        global _ACTIVE
        super().__init__(**kwargs)
        self.settings = settings
        self.reader: BasicReader | None = None
        self.dedup: Deduplicator | None = None
        self.ready = asyncio.Event()
        _ACTIVE = self
        self.cache: EmbeddingCache | None = None
        if settings.dedup.enabled:
            self.reader = BasicReader(settings)
            embed = embedder(settings)
            if embed is not None:
                embed = self.cache = EmbeddingCache(settings.worker.data_dir / CACHE_FILE, embed)
            self.dedup = Deduplicator(embed=embed, threshold=settings.dedup.similarity_threshold, catch_up=self.reader)
        else:
            log.info("dedup: off (dedup.enabled is false): every instruction goes on to contrast")

    async def on_start(self) -> None:
        if self.reader is not None:
            await self.reader.start()
        self.ready.set()

    async def on_stop(self) -> None:
        self.ready.clear()
        if self.reader is not None:
            await self.reader.stop()
        if self.cache is not None:
            self.cache.close()


async def process(instruction: Instruction, ctx: StageContext) -> list[Emit]:
    service = _ACTIVE
    if service is None:
        raise RuntimeError("the dedup stage runs without its DedupService (streams.worker makes it)")
    await service.ready.wait()  # the stage app may start before the service
    if service.dedup is None:
        emit = Emit("basic", instruction)
    else:
        emit = await service.dedup.decide(instruction)
        metrics.DEDUP_INDEX_SIZE.set(len(service.dedup.index))
    if emit.topic == "duplicates":
        metrics.DEDUP_DECISIONS.labels(getattr(emit.record, "method", "exact")).inc()
    else:
        metrics.DEDUP_DECISIONS.labels("kept").inc()
    return [emit]
