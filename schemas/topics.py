"""The pipeline's topics in pipeline order, each with the record it holds: the one topic table.

Which stage writes and which reads each topic is declared by the stages themselves
(`agents/<stage>.py`, `STAGE`); `agents.pipeline` puts the two together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from schemas import records as r
from schemas.codec import decode
from schemas.seed_input import read_seed

TopicName = Literal[
    "seeds",
    "metadata",
    "decoded",
    "duplicates",
    "basic",
    "tailored",
    "scored",
    "retry",
    "accepted",
    "rejected",
    "deadletter",
]


@dataclass(frozen=True)
class TopicSpec:
    name: TopicName
    record: type[r.Record]
    holds: str
    partitions: int | None = None  # None: kafka.partitions (the setting)
    read: Callable[[bytes | None], r.Record] | None = None  # None: the codec, strictly


TOPICS: tuple[TopicSpec, ...] = (
    # any producer's seeds: a full record, an object with "text", or plain text
    TopicSpec("seeds", r.Seed, "seed instructions fed by the user", read=read_seed),
    TopicSpec("metadata", r.Metadata, "use case and skills of each seed"),
    # one partition: one dedup consumer sees every new instruction, in order
    TopicSpec("decoded", r.Instruction, "basic instructions, iteration 1, as decode made them", partitions=1),
    TopicSpec("duplicates", r.DuplicateInstruction, "basic instructions too similar to one already kept, dropped"),
    TopicSpec("basic", r.Instruction, "basic instructions, iteration 1, that go on to contrast"),
    TopicSpec("tailored", r.Instruction, "harder instructions, iteration 2+"),
    TopicSpec("scored", r.ScoredPair, "instructions with strong and target answers and judge scores"),
    TopicSpec("retry", r.ScoredPair, "scored pairs whose gap was too small, sent back to tailor"),
    TopicSpec("accepted", r.AcceptedPair, "the sink: instruction-response pairs to train on"),
    TopicSpec("rejected", r.RejectedInstruction, "instructions still too easy after the last iteration"),
    TopicSpec("deadletter", r.DeadLetter, "records that could not be processed, with the reason"),
)
assert tuple(t.name for t in TOPICS) == get_args(TopicName), "TopicName lists the topics in table order"

TOPIC_BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}


def record_type(topic: str) -> type[r.Record]:
    return TOPIC_BY_NAME[topic].record


def decode_on(topic: str, raw: bytes | None) -> r.Record:
    """The record a value of `topic` holds (DecodeError with the reason when none)."""
    spec = TOPIC_BY_NAME[topic]
    return spec.read(raw) if spec.read is not None else decode(spec.record, raw)
