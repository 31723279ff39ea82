"""Following the pipeline's topics from a test while things happen to it."""

from __future__ import annotations

import asyncio
from collections import Counter

from schemas import DeadLetter, Record
from streams.kafka.topic_io import read_records
from streams.ops.ledger import Ledger
from streams.settings import Settings

TOPICS = (
    "seeds",
    "metadata",
    "decoded",
    "basic",
    "duplicates",
    "tailored",
    "scored",
    "retry",
    "accepted",
    "rejected",
    "deadletter",
)


class Progress:
    """Follows every topic from the start (no consumer group) into a Ledger, counts each id's
    copies and keeps the dead letters. `start()` again begins from scratch (after a broker
    restart, say)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.ledger = Ledger()
        self.copies: dict[str, Counter[str]] = {t: Counter() for t in TOPICS}
        self.dead: dict[str, DeadLetter] = {}
        self.kept: dict[tuple[str, str], Record] = {}  # (topic, id): the first copy
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.ledger = Ledger()
        self.copies = {t: Counter() for t in TOPICS}
        self.dead = {}
        self.kept = {}
        self._task = asyncio.ensure_future(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _follow(self) -> None:
        async for topic, record in read_records(self.settings, TOPICS, follow=True):
            self.add(topic, record)

    def add(self, topic: str, record: Record) -> None:
        self.copies[topic][record.id] += 1
        self.ledger.add(topic, record)
        self.kept.setdefault((topic, record.id), record)
        if isinstance(record, DeadLetter):
            self.dead[record.id] = record

    def records_by_seed(self) -> dict[str, list[Record]]:
        """Every record seen (a copy on each topic), by the seed it came from."""
        out: dict[str, list[Record]] = {}
        for record in self.kept.values():
            out.setdefault(record.seed_id, []).append(record)
        return out

    def seen(self) -> int:
        return sum(len(c) for c in self.copies.values())

    def check(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()
