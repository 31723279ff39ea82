"""What the report reads: a run's records from the topics, and the sentence embedder if installed."""

from __future__ import annotations

import importlib
from datetime import datetime

from schemas import Record
from schemas.topics import TOPIC_BY_NAME
from streams.kafka.topic_io import read_records
from streams.report.figures import NOT_COMPUTED_EMBEDDINGS, REPORT_TOPICS, Embed
from streams.settings import Settings


def report_topics() -> list[str]:
    """The report's topics this version of the pipeline has (`decoded`, `duplicates` came later)."""
    return [name for name in REPORT_TOPICS if name in TOPIC_BY_NAME]


async def read_run(settings: Settings) -> list[tuple[str, Record]]:
    """Every record on the report's topics, from the beginning (no consumer group)."""
    return [(topic, record) async for topic, record in read_records(settings, report_topics())]


def load_embedder() -> tuple[Embed | None, str | None]:
    """(embed, None) when the `neardup` extra and its model are installed, else (None, why not)."""
    try:
        module = importlib.import_module("agents.dedup.embeddings")
    except ImportError:
        return None, NOT_COMPUTED_EMBEDDINGS
    missing: list[str] = getattr(module, "missing_packages", list)()
    if missing:
        return None, f"{NOT_COMPUTED_EMBEDDINGS} (missing: {', '.join(missing)})"
    embed = getattr(module, "embed", None)
    if embed is None:
        embed = module.MiniLMEmbedder().embed
    return embed, None


def parse_time(value: str) -> float:
    """Unix seconds, or an ISO 8601 time (without a zone it is local time), as unix seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"{value!r} is neither unix seconds nor an ISO 8601 time (2024-05-01T12:00:00)") from None
