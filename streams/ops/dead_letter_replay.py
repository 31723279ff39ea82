"""Dead letters: what went wrong where (a summary), and putting chosen ones back into their
stage (replay).

A replay re-produces the original bytes to the topic the record was read from, keyed as the
pipeline keys it, with headers saying which dead letter it replays and when: the record of
the replay lives on the replayed message itself, and `replays()` finds it again. Ids are
deterministic, so a replayed record that now succeeds yields the same ids it would have the
first time.
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from schemas import DeadLetter
from streams.kafka.admin import ensure_topics
from streams.kafka.topic_io import idempotent_producer, produce_all, read_messages, read_records
from streams.settings import Settings

REPLAY_OF = "codeclm-replay-of"
REPLAYED_AT = "codeclm-replayed-at"
CUT_MARK = re.compile(r"\[original cut to its first \d+ of \d+ bytes\]")  # see streams.runtime.stage_app.kept_original
_VARYING = re.compile(r"\b(?:[a-z]+-[0-9a-f]{20}|\d+(?:\.\d+)?)\b")


async def read_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every dead letter on the topic, one per id (a replayed failure repeats its id)."""
    letters: dict[str, DeadLetter] = {}
    async for _, record in read_records(settings, ["deadletter"]):
        assert isinstance(record, DeadLetter)
        letters[record.id] = record
    return list(letters.values())


def reason_kind(reason: str, width: int = 90) -> str:
    """A reason with its ids and numbers blanked, so like failures group together."""
    return _VARYING.sub("#", " ".join(reason.split()))[:width]


@dataclass(frozen=True)
class SummaryRow:
    stage: str
    error_class: str
    count: int
    reasons: tuple[tuple[str, int], ...]  # the commonest reason kinds and their counts


def summarise(letters: Iterable[DeadLetter], top: int = 3) -> list[SummaryRow]:
    groups: dict[tuple[str, str], Counter[str]] = {}
    for letter in letters:
        groups.setdefault((letter.stage, letter.error_class), Counter())[reason_kind(letter.reason)] += 1
    rows = [
        SummaryRow(stage, error_class, sum(kinds.values()), tuple(kinds.most_common(top)))
        for (stage, error_class), kinds in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r.count, r.stage, r.error_class))


def select(
    letters: Iterable[DeadLetter],
    *,
    ids: Iterable[str] | None = None,
    stage: str | None = None,
    reason_contains: str | None = None,
    error_class: str | None = None,
) -> list[DeadLetter]:
    wanted = set(ids) if ids is not None else None
    return [
        d
        for d in letters
        if (wanted is None or d.id in wanted)
        and (stage is None or d.stage == stage)
        and (reason_contains is None or reason_contains.casefold() in d.reason.casefold())
        and (error_class is None or d.error_class == error_class)
    ]


@dataclass(frozen=True)
class Replay:
    """What re-producing one dead letter means: its topic, key, value and headers."""

    letter: DeadLetter
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def replay_of(letter: DeadLetter, now: float) -> Replay | str:
    """The replay of a dead letter, or why there can be none."""
    if not letter.source_topic:
        return "the dead letter does not name the topic it came from"
    if CUT_MARK.search(letter.reason):
        return "only the head of the original was kept (it was too large)"
    value = letter.original.encode() if letter.original_encoding == "utf-8" else base64.b64decode(letter.original)
    key = letter.record_id.encode() if letter.record_id else None
    if key is None and not value:
        key = letter.id.encode()  # Kafka takes a null key or a null value, not both
    headers = ((REPLAY_OF, letter.id.encode()), (REPLAYED_AT, f"{now:.3f}".encode()))
    return Replay(letter, letter.source_topic, key, value, headers)


async def replay(settings: Settings, replays: list[Replay]) -> list[tuple[Replay, int, int]]:
    """Produce the replays and wait until the broker has each; (replay, partition, offset)."""
    await ensure_topics(settings)
    producer = idempotent_producer(settings.kafka)
    await producer.start()
    try:
        sent = await produce_all(producer, ((r.topic, r.key, r.value, list(r.headers)) for r in replays))
    finally:
        await producer.stop()
    return [(r, metadata.partition, metadata.offset) for r, metadata in zip(replays, sent, strict=True)]


async def replays(settings: Settings, topics: Iterable[str]) -> dict[str, float]:
    """Dead letter id -> when it was last replayed, from the replay headers on `topics`."""
    found: dict[str, float] = {}
    async for message in read_messages(settings.kafka, sorted(set(topics))):
        headers = dict(message.headers or ())
        if REPLAY_OF in headers:
            at = float(headers.get(REPLAYED_AT, b"0") or 0)
            dead_id = headers[REPLAY_OF].decode()
            found[dead_id] = max(at, found.get(dead_id, 0.0))
    return found


def now() -> float:
    return time.time()
