"""Conservation accounting: does every seed end in terminal records that can be counted?

Pure bookkeeping fed with records read from the topics (copies from replays are fine:
everything is counted by id). A seed is complete when it was dead-lettered whole (encode or
decode failed), or when decode's `siblings` basic instructions all have a verdict: accepted,
rejected, dropped as a duplicate, or dead-lettered. Feed it agents.pipeline.CONSERVATION_TOPICS:
`decoded` holds every basic instruction, `basic` only those dedup kept.

Metadata that starts a root itself (a user fed it, or augmentation made it; `seed_id` is its
own id) is accounted the same way, from the metadata record instead of a seed (give the
ledger the metadata topic too, and an account knows such a root by `root_metadata`). A
combination that augmentation's model check refused is no root: it is kept apart (`refused`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agents.augment import STAGE_NAME as AUGMENT_STAGE
from schemas import (
    AcceptedPair,
    DeadLetter,
    DuplicateInstruction,
    Instruction,
    Metadata,
    Record,
    RejectedInstruction,
    Seed,
)


@dataclass
class SeedAccount:
    seed_id: str
    text: str | None = None
    expected: int | None = None  # basic instructions decode said it made (siblings)
    generated: set[str] = field(default_factory=set)  # root ids seen on `decoded` (or `basic`)
    accepted: dict[str, AcceptedPair] = field(default_factory=dict)  # by root id
    rejected: set[str] = field(default_factory=set)
    duplicates: dict[str, DuplicateInstruction] = field(default_factory=dict)  # by root id (dedup)
    dead: set[str] = field(default_factory=set)
    seed_dead_reason: str | None = None  # encode or decode failed: no instructions at all
    root_metadata: Metadata | None = None  # the metadata that started the root, when no seed did

    @property
    def terminal(self) -> set[str]:
        return set(self.accepted) | self.rejected | set(self.duplicates) | self.dead

    @property
    def complete(self) -> bool:
        if self.seed_dead_reason is not None:
            return True
        return self.expected is not None and len(self.generated) == self.expected and self.generated <= self.terminal

    @property
    def balanced(self) -> bool:
        """generated == accepted + rejected + duplicates + dead-lettered, and no root has two verdicts."""
        endings = len(self.accepted) + len(self.rejected) + len(self.duplicates) + len(self.dead)
        return self.generated == self.terminal and len(self.generated) == endings

    def summary(self) -> str:
        if self.seed_dead_reason is not None:
            return f"dead-lettered whole: {self.seed_dead_reason}"
        return (
            f"{len(self.generated)} instructions: {len(self.accepted)} accepted, {len(self.rejected)} rejected, "
            f"{len(self.duplicates)} duplicates, {len(self.dead)} dead-lettered"
        )


@dataclass
class Ledger:
    seeds: dict[str, SeedAccount] = field(default_factory=dict)
    unattributed_dead: int = 0  # dead letters of records too broken to name a seed
    seen_ids: set[str] = field(default_factory=set)
    duplicates: Counter[str] = field(default_factory=Counter)  # topic -> repeated ids
    refused: dict[str, DeadLetter] = field(default_factory=dict)  # augmentation's refused combinations, by id

    def account(self, seed_id: str) -> SeedAccount:
        return self.seeds.setdefault(seed_id, SeedAccount(seed_id))

    def add(self, topic: str, record: Record) -> None:
        key = f"{topic}:{record.id}"
        if key in self.seen_ids:
            self.duplicates[topic] += 1
            return
        self.seen_ids.add(key)
        if isinstance(record, DeadLetter) and not record.seed_id:
            self.unattributed_dead += 1
            return
        if isinstance(record, DeadLetter) and record.stage == AUGMENT_STAGE:
            self.refused[record.seed_id] = record
            return
        account = self.account(record.seed_id)
        if isinstance(record, Seed):
            account.text = record.text
        elif isinstance(record, Metadata) and record.is_root:
            account.root_metadata = record
        elif isinstance(record, Instruction) and record.iteration == 1:
            account.generated.add(record.root_id)
            account.expected = record.siblings
        elif isinstance(record, AcceptedPair):
            account.accepted[record.root_id] = record
        elif isinstance(record, RejectedInstruction):
            account.rejected.add(record.root_id)
        elif isinstance(record, DuplicateInstruction):
            account.duplicates[record.root_id] = record
        elif isinstance(record, DeadLetter):
            if record.root_id is not None:
                account.dead.add(record.root_id)
            else:
                account.seed_dead_reason = f"{record.stage}: {record.reason}"

    def incomplete(self, seed_ids: set[str] | None = None) -> list[SeedAccount]:
        ids = seed_ids if seed_ids is not None else set(self.seeds)
        return [self.account(s) for s in sorted(ids) if not self.account(s).complete]
