"""The dedup stage's decisions (agents/dedup/), without Kafka: what is kept, what is dropped
and why, serialised decisions, replays, catching up on instructions kept elsewhere."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from agents.dedup import Deduplicator, duplicate_record
from agents.dedup.embeddings import MiniLMEmbedder
from agents.dedup.index import Match
from schemas import DuplicateInstruction, Instruction, derive_id
from tests.unit.fakes import instruction

THRESHOLD = 0.9


def inst(index: int, text: str, metadata_id: str = "meta-x") -> Instruction:
    base = instruction()
    root = derive_id("inst", metadata_id, index)
    return base.model_copy(
        update={"id": root, "root_id": root, "metadata_id": metadata_id, "index": index, "text": text}
    )


class WordVectors:
    """A stand-in embedding: bag of words, so texts sharing most words are near duplicates.
    Records which thread ran it and the batch sizes."""

    def __init__(self):
        self.threads: set[int] = set()
        self.batches: list[int] = []

    def __call__(self, texts):
        self.threads.add(threading.get_ident())
        self.batches.append(len(texts))
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.casefold().split():
                out[row, sum(map(ord, word)) % 64] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


async def test_keeps_new_drops_exact_then_near_duplicates():
    dedup = Deduplicator(embed=WordVectors(), threshold=THRESHOLD)
    first = inst(0, "Plan a trip to Lisbon for four days on a budget")
    kept = await dedup.decide(first)
    assert kept.topic == "basic" and kept.record is first  # unchanged

    exact = await dedup.decide(inst(1, "plan a trip to lisbon for four  days on a budget"))
    assert exact.topic == "duplicates"
    record = exact.record
    assert isinstance(record, DuplicateInstruction)
    assert (record.duplicate_of, record.method, record.similarity, record.threshold) == (first.id, "exact", 1.0, None)
    assert record.duplicate_of_text == first.text and record.root_id == inst(1, "").root_id

    near = await dedup.decide(inst(2, "Plan a trip to Lisbon for four days on a tight budget"))
    assert near.topic == "duplicates" and near.record.method == "embedding"  # type: ignore[attr-defined]
    assert THRESHOLD <= near.record.similarity < 1.0 and near.record.threshold == THRESHOLD  # type: ignore[attr-defined]

    other = await dedup.decide(inst(3, "Explain how vaccines train the immune system"))
    assert other.topic == "basic"
    assert dedup.tally.kept == 2 and dedup.tally.dropped == {"exact": 1, "embedding": 1}


async def test_exact_only_without_embeddings():
    dedup = Deduplicator(embed=None, threshold=THRESHOLD)
    await dedup.decide(inst(0, "Plan a trip to Lisbon for four days on a budget"))
    near = await dedup.decide(inst(1, "Plan a trip to Lisbon for four days on a tight budget"))
    exact = await dedup.decide(inst(2, "PLAN a trip to Lisbon for four days on a budget"))
    assert (near.topic, exact.topic) == ("basic", "duplicates")
    assert dedup.threshold is None and exact.record.threshold is None  # type: ignore[attr-defined]


async def test_a_replay_of_a_kept_instruction_is_kept_again():
    dedup = Deduplicator(embed=WordVectors(), threshold=THRESHOLD)
    first = inst(0, "Plan a trip to Lisbon for four days on a budget")
    assert (await dedup.decide(first)).topic == "basic"
    assert (await dedup.decide(first)).topic == "basic"  # same id: a replay after a crash
    copy = inst(1, first.text)
    assert (await dedup.decide(copy)).topic == "duplicates"  # another root with the same text is not


async def test_near_duplicates_in_flight_at_once_cannot_both_pass():
    embed = WordVectors()
    dedup = Deduplicator(embed=embed, threshold=THRESHOLD)
    texts = [f"Write a cover letter for a junior data analyst role {'please ' * (n % 2)}" for n in range(12)]
    texts += [f"Unrelated request number {word}" for word in ("alpha", "bravo", "charlie")]
    emits = await asyncio.gather(*(dedup.decide(inst(n, t)) for n, t in enumerate(texts)))
    kept = [e.record for e in emits if e.topic == "basic"]
    assert [k.text for k in kept] == [texts[0], *texts[12:]]  # arrival order decides who is first
    # One round decided them all, its embeddings computed off the event loop, once per text.
    assert threading.get_ident() not in embed.threads
    assert sum(embed.batches) == 2 + 3


async def test_catch_up_brings_in_what_other_workers_kept():
    kept_elsewhere = [inst(0, "Describe how a heat pump warms a house", "meta-other")]
    calls = 0

    async def catch_up():
        nonlocal calls
        calls += 1
        return kept_elsewhere if calls == 1 else []

    dedup = Deduplicator(embed=WordVectors(), threshold=THRESHOLD, catch_up=catch_up)
    mine = await dedup.decide(inst(0, "describe how a heat pump warms a house"))
    assert mine.topic == "duplicates" and mine.record.duplicate_of == kept_elsewhere[0].id  # type: ignore[attr-defined]
    replayed = await dedup.decide(kept_elsewhere[0])  # its own record, replayed here: kept
    assert replayed.topic == "basic"
    assert calls == 2 and dedup.tally.caught_up == 1


async def test_a_failing_embedding_fails_the_records_of_its_round_and_the_next_round_goes_on():
    broken = True

    def embed(texts):
        if broken:
            raise RuntimeError("model gone")
        return WordVectors()(texts)

    dedup = Deduplicator(embed=embed, threshold=THRESHOLD)
    with pytest.raises(RuntimeError, match="model gone"):
        await dedup.decide(inst(0, "first text here"))
    broken = False
    assert (await dedup.decide(inst(0, "first text here"))).topic == "basic"


async def test_a_cancelled_round_hands_its_records_to_the_next_waiter():
    gate = threading.Event()

    def slow_embed(texts):
        gate.wait(5)
        return WordVectors()(texts)

    dedup = Deduplicator(embed=slow_embed, threshold=THRESHOLD)
    first = asyncio.ensure_future(dedup.decide(inst(0, "first text here")))
    await asyncio.sleep(0.05)  # first holds the lock, its embedding running
    second = asyncio.ensure_future(dedup.decide(inst(1, "a second different request")))
    await asyncio.sleep(0.05)
    first.cancel()
    gate.set()
    assert (await second).topic == "basic"
    with pytest.raises(asyncio.CancelledError):
        await first


def test_duplicate_record_ids_are_one_per_root():
    a = inst(4, "text")
    match = Match("inst-kept", "kept text", 0.93, "embedding")
    record = duplicate_record(a, match, 0.9)
    assert record.id == derive_id("duplicate", a.root_id) == duplicate_record(a, match, 0.9).id
    assert (record.parent_id, record.seed_id, record.metadata_id) == (a.id, a.seed_id, a.metadata_id)


async def test_with_the_real_model_paraphrases_go_and_other_requests_stay():
    dedup = Deduplicator(embed=MiniLMEmbedder().embed, threshold=THRESHOLD)
    texts = [
        "Write a Python function that reverses a string.",
        "Write a python function to reverse a string!",
        "Explain photosynthesis to a ten-year-old.",
        "Give me three tips for a job interview.",
    ]
    topics = [(await dedup.decide(inst(n, t))).topic for n, t in enumerate(texts)]
    assert topics == ["basic", "duplicates", "basic", "basic"]
