"""Rich metadata on the real embedded broker with the LLM double: encode extracts a domain, a
difficulty and format constraints, decode's prompt carries them, and the accepted pairs keep
them."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents import decode, encode
from agents.pipeline import TERMINAL_TOPICS
from llm.double import answer_for, count_tokens
from schemas import AcceptedPair, Instruction, Metadata, MetadataSummary, Record
from streams.kafka.topic_io import follow_until
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import BadLine, read_seeds
from streams.settings import overlay

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
N = 2  # instructions per metadata


async def test_rich_metadata_flows_from_encode_through_decode_to_the_accepted_pairs(settings, llm_double, start_worker):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": N, "max_iterations": 2, "rich_metadata": True},
        },
    )
    worker = start_worker(settings)
    seeds = [s for s in read_seeds(ROOT / "examples" / "seeds.jsonl") if not isinstance(s, BadLine)][:4]
    await feed_seeds(settings, seeds)

    ledger = Ledger()
    metadata: dict[str, Metadata] = {}
    first_basic: dict[str, Instruction] = {}  # per metadata, the index-0 record: it carries decode's call

    def add(topic: str, record: Record) -> None:
        ledger.add(topic, record)
        if isinstance(record, Metadata):
            metadata[record.id] = record
        elif isinstance(record, Instruction) and record.iteration == 1 and record.index == 0:
            first_basic[record.metadata_id] = record

    wanted = {s.id for s in seeds}

    def done() -> bool:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        return not ledger.incomplete(wanted)

    # decoded holds every basic instruction, kept or dropped by dedup; a root ends in a verdict topic.
    finished = await follow_until(settings, ("metadata", "decoded", *TERMINAL_TOPICS), add, done, timeout=240)
    assert finished, f"unfinished seeds: {[a.summary() for a in ledger.incomplete(wanted)]}\n{worker.tail()}"
    assert len(metadata) == len(seeds)

    # encode: every field is the one the double gave for the rich prompt, parsed.
    for meta in metadata.values():
        prompt = encode.build_prompt(meta.seed_text, max_skills=settings.pipeline.max_skills, rich=True)
        expected = encode.parse(answer_for("encode", prompt, "double-strong"), max_skills=3, rich=True)
        assert meta.metadata == expected
        assert meta.metadata.domain and meta.metadata.difficulty in ("easy", "medium", "hard")
        assert meta.metadata.format_constraints

    # decode: the prompt it sent was the rich one. The double counts a prompt's tokens as its
    # words, so the call's prompt_tokens tell the rich prompt from the paper's.
    assert set(first_basic) == set(metadata)
    for meta_id, basic in first_basic.items():
        summary = metadata[meta_id].metadata
        assert basic.metadata == summary
        (call,) = [c for c in basic.llm_calls if c.purpose == "decode"]
        rich_words = _words(decode.build_prompt(summary, n=N, rich=True))
        assert rich_words != _words(decode.build_prompt(summary, n=N))
        assert call.prompt_tokens == rich_words

    # the sink: each accepted pair carries its seed's rich metadata.
    accepted: list[AcceptedPair] = [p for a in ledger.seeds.values() for p in a.accepted.values()]
    assert accepted, "the double's scores accept some pairs"
    by_seed: dict[str, MetadataSummary] = {m.seed_id: m.metadata for m in metadata.values()}
    for pair in accepted:
        assert pair.metadata == by_seed[pair.seed_id]
        assert pair.metadata.domain and pair.metadata.difficulty and pair.metadata.format_constraints


def _words(messages: list[dict[str, str]]) -> int:
    return sum(count_tokens(m["content"]) for m in messages)
