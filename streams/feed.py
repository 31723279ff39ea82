"""Reading seed instructions from files and producing them to the seeds topic."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from schemas import Seed, seed_id_for
from schemas.codec import encode
from streams.admin import client_options, ensure_topics
from streams.settings import Settings

TEXT_FIELDS = ("text", "instruction", "prompt", "question", "query")


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str
    raw: str


def seed_from_text(text: str, source: str | None = None) -> Seed:
    text = text.strip()
    return Seed(id=seed_id_for(text), seed_id=seed_id_for(text), parent_id=None, text=text, source=source)


def parse_jsonl_line(line: str, number: int, source: str, text_field: str | None = None) -> Seed | BadLine:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return BadLine(number, f"not JSON: {exc}", line)
    if isinstance(obj, str):
        text = obj
    elif isinstance(obj, dict):
        fields = (text_field,) if text_field else TEXT_FIELDS
        found = next((obj[f] for f in fields if isinstance(obj.get(f), str)), None)
        if found is None:
            return BadLine(number, f"no text field (looked for {', '.join(fields)})", line)
        text = found
    else:
        return BadLine(number, f"expected a JSON object or string, got {type(obj).__name__}", line)
    if not text.strip():
        return BadLine(number, "empty text", line)
    return seed_from_text(text, f"{source}:{number}")


def read_seeds(path: Path, text_field: str | None = None) -> Iterator[Seed | BadLine]:
    """Seeds from a JSONL file (one object per line) or a text file (one instruction per line)."""
    jsonl = path.suffix in {".jsonl", ".json", ".ndjson"}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if jsonl:
                yield parse_jsonl_line(line, number, path.name, text_field)
            else:
                yield seed_from_text(line, f"{path.name}:{number}")


async def produce_seeds(settings: Settings, seeds: Iterable[Seed]) -> int:
    """Send seeds (keyed by seed id) and wait until the broker has every one."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all", enable_idempotence=True)
    await producer.start()
    sent = 0
    try:
        futures = []
        for seed in seeds:
            futures.append(await producer.send(settings.topic("seeds"), key=seed.id.encode(), value=encode(seed)))
            sent += 1
        for future in futures:
            await future
    finally:
        await producer.stop()
    return sent
