"""`codeclm augment`: new metadata from the use cases and skills on the metadata topic (the
rule and the order are agents/augment.py), sent back to that topic, where decode takes them.

`count` is a target: the number of augmented metadata records the topic should hold. A run
makes what is missing and no more, so running it again with the same target makes nothing;
a larger target makes only the difference, never a combination already made (ids are the
combination's hash, and every metadata on the topic is a combination seen). With the strong
model as the check, a combination it refused is dead-lettered (stage `augment`, the metadata
record as the original, so `codeclm deadletter --replay` can still send it to decode), and a
later run reads those dead letters and does not ask again: no call is paid twice. Checks are
asked concurrently, as many at a time as combinations are still wanted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from agents.augment import PURPOSE, STAGE_NAME, Candidate, augmented_record, candidates, check
from agents.base import StageFailure
from agents.prompt_sets import load_prompt_set
from llm.base import ChatModel
from schemas import DeadLetter, LLMCall, Metadata, Record, derive_id
from schemas.codec import encode, record_headers
from streams.kafka.admin import ensure_topics
from streams.kafka.topic_io import idempotent_producer, produce_all, read_records
from streams.settings import Settings

Check = Literal["rule", "model"]
CHECKS: tuple[Check, ...] = ("rule", "model")
REFUSED = "NotSensible"  # error class of a combination the strong model said No to


class AugmentStopped(Exception):
    """The strong model failed (after its retries); what it had answered is on the topics."""


@dataclass
class Seen:
    """What the topics hold: every metadata record, and the combinations refused before."""

    metadata: list[Metadata]
    refused: set[str]  # candidate ids dead-lettered by an earlier run's check

    @property
    def augmented(self) -> set[str]:
        return {m.id for m in self.metadata if m.augmented_from}


@dataclass
class Outcome:
    target: int
    already: int  # augmented metadata on the topic before this run
    available: int  # new combinations the rule allowed, before any check
    made: list[Metadata] = field(default_factory=list)
    refused: list[DeadLetter] = field(default_factory=list)
    calls: list[LLMCall] = field(default_factory=list)  # every check call, refused ones included

    @property
    def short(self) -> int:
        """How many the target still wants once this run is done (the rule ran out of combinations)."""
        return max(0, self.target - self.already - len(self.made))


async def read_seen(settings: Settings) -> Seen:
    metadata: dict[str, Metadata] = {}
    refused: set[str] = set()
    async for _, record in read_records(settings, ["metadata", "deadletter"]):
        if isinstance(record, Metadata):
            metadata.setdefault(record.id, record)
        elif isinstance(record, DeadLetter) and record.stage == STAGE_NAME:
            refused.add(record.seed_id)
    return Seen(list(metadata.values()), refused - set(metadata))  # a replayed refusal is metadata now


def plan(seen: Seen, *, target: int, max_skills: int) -> tuple[int, list[Candidate]]:
    """(how many augmented records are wanted now, the candidates in the order to take them)."""
    wanted = max(0, target - len(seen.augmented))
    pool = [c for c in candidates(seen.metadata, max_skills=max_skills) if c.id not in seen.refused]
    return wanted, pool


def refusal(record: Metadata, reason: str, error_class: str, attempts: int, metadata_topic: str) -> DeadLetter:
    """A combination the check refused, as a dead letter whose original is its metadata record
    (replaying it sends that record to decode all the same)."""
    return DeadLetter(
        id=derive_id("dead", STAGE_NAME, record.id),
        seed_id=record.id,
        parent_id=None,
        stage=STAGE_NAME,
        reason=reason,
        error_class=error_class,
        attempts=attempts,
        record_id=record.id,
        source_topic=metadata_topic,
        original=encode(record).decode(),
    )


async def augment(
    settings: Settings,
    *,
    target: int,
    check_with: Check = "rule",
    strong: ChatModel | None = None,
    on_made: Callable[[Metadata], None] = lambda record: None,
) -> Outcome:
    """Make augmented metadata up to `target` on the metadata topic (see the module's docstring).
    Raises AugmentStopped when the strong model fails; what it had answered is sent first."""
    if check_with == "model" and strong is None:
        raise ValueError("the model check needs the strong model")
    await ensure_topics(settings)
    seen = await read_seen(settings)
    wanted, pool = plan(seen, target=target, max_skills=settings.pipeline.max_skills)
    outcome = Outcome(target=target, already=len(seen.augmented), available=len(pool))
    producer = idempotent_producer(settings.kafka)
    await producer.start()
    try:
        while pool and len(outcome.made) < wanted:
            batch, pool = pool[: wanted - len(outcome.made)], pool[wanted - len(outcome.made) :]
            if check_with == "rule":
                verdicts = [Verdict(augmented_record(candidate)) for candidate in batch]
            else:
                assert strong is not None
                verdicts = list(await asyncio.gather(*(_verdict(strong, c, settings) for c in batch)))
            sent = [v.sent(settings) for v in verdicts if v.failure is None]
            await produce_all(producer, [_message(settings, record) for record in sent])
            for record in sent:
                if isinstance(record, Metadata):
                    outcome.calls.extend(record.llm_calls)
                    outcome.made.append(record)
                    on_made(record)
                else:
                    outcome.refused.append(record)
            outcome.calls.extend(c for v in verdicts if v.refusal is not None for c in v.record.llm_calls)
            failed = next((v.failure for v in verdicts if v.failure is not None), None)
            if failed is not None:
                raise AugmentStopped(failed)
    finally:
        await producer.stop()
    return outcome


@dataclass(frozen=True)
class Verdict:
    """What the check made of one candidate: its record (with the check's calls); a refusal
    (reason, error class) when it is not to be made; a failure when the model could not say."""

    record: Metadata
    refusal: tuple[str, str] | None = None
    attempts: int = 1
    failure: str | None = None

    def sent(self, settings: Settings) -> Metadata | DeadLetter:
        if self.refusal is None:
            return self.record
        reason, error_class = self.refusal
        return refusal(self.record, reason, error_class, self.attempts, settings.topic("metadata"))


async def _verdict(strong: ChatModel, candidate: Candidate, settings: Settings) -> Verdict:
    """The strong model's verdict. An answer that never says Yes or No is a refusal too
    (dead-lettered, so not asked again); a failing endpoint is a failure, which stops the run."""
    prompts = load_prompt_set(settings.pipeline.prompts)
    try:
        asked = await check(strong, candidate, settings.pipeline, prompts)
    except StageFailure as failure:
        record = augmented_record(candidate, prompts=prompts.ref)
        if failure.error_class != "ParseFailure":
            return Verdict(record, failure=failure.reason)
        return Verdict(record, (failure.reason, failure.error_class), failure.attempts)
    record = augmented_record(candidate, asked.calls, prompts.ref)
    if asked.value:
        return Verdict(record)
    reason = (
        f"{PURPOSE}: the strong model found that {candidate.use_case!r} with {', '.join(candidate.skills)} "
        "does not make sense together"
    )
    return Verdict(record, (reason, REFUSED), len(asked.calls))


def _message(settings: Settings, record: Record) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    topic = "metadata" if isinstance(record, Metadata) else "deadletter"
    return settings.topic(topic), record.id.encode(), encode(record), record_headers(record)
