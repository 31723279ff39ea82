"""The stages in pipeline order, and what their declarations say about the topics.

Each stage declares what it reads and writes where it is written (`agents/<stage>.py`,
`STAGE`); the topics and their records are `schemas/topics.py`. This module puts the two
together: which stage writes and reads each topic, and which topics account for a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents import contrast, decode, dedup, encode, tailor
from agents import filter as filter_stage
from agents.base import Role, Stage
from schemas.topics import TOPICS, TopicName, TopicSpec

STAGES: tuple[Stage, ...] = (
    encode.STAGE,
    decode.STAGE,
    dedup.STAGE,
    contrast.STAGE,
    filter_stage.STAGE,
    tailor.STAGE,
)
STAGE_BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}
STAGE_NAMES: tuple[str, ...] = tuple(STAGE_BY_NAME)
STAGE_INPUTS: dict[str, tuple[TopicName, ...]] = {stage.name: stage.inputs for stage in STAGES}
# The purposes of LLM calls (LLMCall.purpose) in pipeline order, the stage that makes each, and
# the stages that call an LLM at all.
PURPOSES: tuple[str, ...] = tuple(purpose for stage in STAGES for purpose in stage.purposes)
STAGE_OF_PURPOSE: dict[str, str] = {purpose: stage.name for stage in STAGES for purpose in stage.purposes}
ROLE_OF_PURPOSE: dict[str, Role] = {purpose: role for stage in STAGES for purpose, role in stage.calls.items()}
LLM_STAGES: tuple[str, ...] = tuple(stage.name for stage in STAGES if stage.purposes)

# Verdicts: each root instruction ends in exactly one of these (or a dead letter).
TERMINAL_TOPICS: tuple[TopicName, ...] = ("accepted", "rejected", "duplicates", "deadletter")
# What accounts for a run (streams.ops.ledger): every root as decode made it, and every ending.
CONSERVATION_TOPICS: tuple[TopicName, ...] = ("decoded", *TERMINAL_TOPICS)
# Who writes what no stage declares: seeds come from any producer, and the worker dead-letters
# what any stage (or `codeclm feed`) cannot process.
FEEDER = "feed (or any producer)"


@dataclass(frozen=True)
class TopicRow:
    """One row of the topic table: the topic, its record, and the stages on either side."""

    spec: TopicSpec
    written_by: tuple[str, ...]
    read_by: tuple[str, ...]


def topic_table() -> tuple[TopicRow, ...]:
    """Every topic in pipeline order, with who writes it and who reads it."""
    rows = []
    for spec in TOPICS:
        writers = tuple(s.name for s in STAGES if spec.name in s.outputs)
        if spec.name == "seeds":
            writers = (FEEDER,)
        elif spec.name == "deadletter":
            writers = ("feed", *STAGE_NAMES)
        rows.append(TopicRow(spec, writers, tuple(s.name for s in STAGES if spec.name in s.inputs)))
    return tuple(rows)
