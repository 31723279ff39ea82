"""The pipeline's topics in pipeline order, each with the record it holds.

seeds -encode-> metadata -decode-> decoded -dedup-> basic --+
                                      \\-> duplicates          +-contrast-> scored -filter-> accepted (sink)
                      tailored <-tailor- retry <-------------+                       \\-> rejected
deadletter: anything that could not be processed, with the reason and the original bytes

`decoded` has one partition, so one dedup consumer sees every new instruction, in order.
Each root instruction ends in exactly one verdict (accepted, rejected, duplicates) or a dead
letter: follow `decoded` (every root) and TERMINAL_TOPICS to account for a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import (
    AcceptedPair,
    DeadLetter,
    DuplicateInstruction,
    Instruction,
    Metadata,
    Record,
    RejectedInstruction,
    ScoredPair,
    Seed,
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    record: type[Record]
    holds: str
    partitions: int | None = None  # None: kafka.partitions (the setting)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("seeds", Seed, "seed instructions fed by the user"),
    TopicSpec("metadata", Metadata, "use case and skills of each seed (encode)"),
    TopicSpec("decoded", Instruction, "basic instructions, iteration 1, as decode made them (decode)", partitions=1),
    TopicSpec(
        "duplicates", DuplicateInstruction, "basic instructions too similar to one already kept, dropped (dedup)"
    ),
    TopicSpec("basic", Instruction, "basic instructions, iteration 1, that go on to contrast (dedup)"),
    TopicSpec("tailored", Instruction, "harder instructions, iteration 2+ (tailor)"),
    TopicSpec("scored", ScoredPair, "instructions with strong and target answers and judge scores (contrast)"),
    TopicSpec("retry", ScoredPair, "scored pairs whose gap was too small, sent back to tailor (filter)"),
    TopicSpec("accepted", AcceptedPair, "the sink: instruction-response pairs to train on (filter)"),
    TopicSpec("rejected", RejectedInstruction, "instructions still too easy after the last iteration (filter)"),
    TopicSpec("deadletter", DeadLetter, "records that could not be processed, with the reason"),
)

TOPIC_BY_NAME = {t.name: t for t in TOPICS}

# Each stage: its input topics. Stage order is pipeline order.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "encode": ("seeds",),
    "decode": ("metadata",),
    "dedup": ("decoded",),
    "contrast": ("basic", "tailored"),
    "filter": ("scored",),
    "tailor": ("retry",),
}

# Verdicts: each root instruction ends in exactly one of these (or a dead letter).
TERMINAL_TOPICS = ("accepted", "rejected", "duplicates", "deadletter")
# What accounts for a run (streams.ledger): every root as decode made it, and every ending.
CONSERVATION_TOPICS = ("decoded", *TERMINAL_TOPICS)


def record_type(topic: str) -> type[Record]:
    return TOPIC_BY_NAME[topic].record
