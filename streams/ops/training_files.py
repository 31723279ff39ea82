"""A downstream consumer of the sink: accepted pairs as training files.

Formats (one JSON object per line, each with the pair `id`):
- messages: `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}` (TRL, OpenAI fine-tuning)
- alpaca:   `{"instruction", "input", "output"}`
- sharegpt: `{"conversations": [{"from": "human", ...}, {"from": "gpt", ...}]}`

Reading is under the exporter's own consumer group (committed only after the lines are written
and flushed to disk, so a crash re-reads rather than loses) or from the beginning without a
group. Delivery to the sink is at-least-once, so lines are de-duplicated by pair id, also
across runs appending to the same file: the ids already in it are read first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import AcceptedPair
from schemas.codec import DecodeError, decode
from streams.kafka.admin import client_options, ensure_topics
from streams.kafka.topic_io import partitions_of
from streams.settings import Settings

FORMATS = ("messages", "alpaca", "sharegpt")


def format_pair(
    pair: AcceptedPair, fmt: str, system: str | None = None, attributes: tuple[str, ...] | bool = False
) -> dict[str, Any]:
    """One training example from one accepted pair; with `attributes` (True for all of them, or
    the names to keep), its seed's attributes too, under "attributes"."""
    example = _example(pair, fmt, system)
    if attributes is False:
        return example
    kept = (
        pair.attributes if attributes is True else {k: pair.attributes[k] for k in attributes if k in pair.attributes}
    )
    return {**example, "attributes": kept}


def _example(pair: AcceptedPair, fmt: str, system: str | None) -> dict[str, Any]:
    if fmt == "messages":
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": pair.instruction}, {"role": "assistant", "content": pair.response}]
        return {"id": pair.id, "messages": messages}
    if fmt == "alpaca":
        row = {"id": pair.id, "instruction": pair.instruction, "input": "", "output": pair.response}
        return {**row, "system": system} if system else row
    if fmt == "sharegpt":
        turns = [{"from": "system", "value": system}] if system else []
        turns += [{"from": "human", "value": pair.instruction}, {"from": "gpt", "value": pair.response}]
        return {"id": pair.id, "conversations": turns}
    raise ValueError(f"unknown format {fmt!r}; the formats are {', '.join(FORMATS)}")


@dataclass
class ExportStats:
    written: int = 0
    duplicates: int = 0
    unreadable: int = 0
    repaired_bytes: int = 0  # an incomplete last line removed from the output file


def ids_in_file(path: Path) -> tuple[set[str], int]:
    """Pair ids already written to `path`, and how many bytes of an incomplete last line (left by
    an export that was killed mid-write) were cut off so that appending starts on a clean line."""
    if not path.exists():
        return set(), 0
    ids: set[str] = set()
    with path.open("rb+") as f:
        good_end = 0
        for line in f:
            if not line.endswith(b"\n"):
                break
            good_end += len(line)
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                ids.add(row["id"])
        cut = f.seek(0, os.SEEK_END) - good_end
        if cut:
            f.truncate(good_end)
    return ids, cut


class SinkWriter:
    """Writes formatted pairs once each; `flush()` makes them durable before offsets are committed."""

    def __init__(
        self,
        out: IO[bytes],
        fmt: str,
        seen: set[str],
        system: str | None = None,
        attributes: tuple[str, ...] | bool = False,
    ):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; the formats are {', '.join(FORMATS)}")
        self.out = out
        self.fmt = fmt
        self.system = system
        self.attributes = attributes
        self.seen = seen
        self.stats = ExportStats()

    def write(self, value: bytes | None) -> None:
        try:
            pair = decode(AcceptedPair, value)
        except DecodeError:
            self.stats.unreadable += 1
            return
        if pair.id in self.seen:
            self.stats.duplicates += 1
            return
        self.seen.add(pair.id)
        self.out.write(orjson.dumps(format_pair(pair, self.fmt, self.system, self.attributes)) + b"\n")
        self.stats.written += 1

    def flush(self) -> None:
        self.out.flush()
        with contextlib.suppress(OSError, ValueError):  # a pipe or terminal: nothing to sync
            os.fsync(self.out.fileno())


async def export_sink(
    settings: Settings,
    writer: SinkWriter,
    *,
    group: str | None,
    follow: bool = False,
    stop: asyncio.Event | None = None,
    on_batch: Callable[[ExportStats], None] = lambda stats: None,
) -> ExportStats:
    """Read the sink (under `group`, or from the beginning without one) into `writer`.

    Without `follow`, returns once every partition is read up to the end offset it had when
    first seen; with it, until `stop` is set. With a group, offsets are committed after each
    batch has been written and flushed.
    """
    stop = stop or asyncio.Event()
    topic = settings.topic("accepted")
    await ensure_topics(settings)
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        if group:
            consumer.subscribe([topic])
        else:
            partitions = await partitions_of(settings.kafka, [topic])
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = {}
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            for messages in batch.values():
                for message in messages:
                    writer.write(message.value)
            if batch:
                writer.flush()
                if group:
                    await consumer.commit()  # the positions after what was just written
                on_batch(writer.stats)
            if not follow and await _caught_up(consumer, ends):
                break
    finally:
        await consumer.stop()
    return writer.stats


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether every assigned partition has been read to its end offset as first seen (a group
    member may get partitions late, after the rebalance; until then it is not caught up)."""
    assigned = consumer.assignment()
    if not assigned:
        return False
    new = [tp for tp in assigned if tp not in ends]
    if new:
        ends.update(await consumer.end_offsets(new))
    for tp in assigned:
        if await consumer.position(tp) < ends[tp]:
            return False
    return True
