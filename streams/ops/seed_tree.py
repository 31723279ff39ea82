"""One seed's tree, from the records on the topics: its metadata, each basic instruction and
every iteration it went through (the instruction, both scores and the gap, the verdict), and
its dead letters. A root that starts at metadata (fed with `feed --metadata`, or made by
augmentation) is traced the same way by its metadata id. Pure: the records come in, text
comes out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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
from schemas.topics import TOPICS

# Topics that say something about a seed's tree: all but `basic` (`decoded` holds every basic
# instruction, `basic` only the ones dedup kept; `retry` tells which iterations went back).
TRACE_TOPICS = tuple(t.name for t in TOPICS if t.name != "basic")


@dataclass
class RootTrace:
    """One basic instruction and what became of it."""

    instructions: dict[int, Instruction] = field(default_factory=dict)  # by iteration
    scored: dict[int, ScoredPair] = field(default_factory=dict)
    retried: set[int] = field(default_factory=set)  # iterations sent back to tailor
    accepted: AcceptedPair | None = None
    rejected: RejectedInstruction | None = None
    duplicate: DuplicateInstruction | None = None
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass
class SeedTrace:
    seed_id: str
    seed: Seed | None = None
    metadata: Metadata | None = None
    roots: dict[str, RootTrace] = field(default_factory=dict)
    seed_dead: list[DeadLetter] = field(default_factory=list)  # encode or decode failed

    @property
    def found(self) -> bool:
        return self.seed is not None or self.metadata is not None or bool(self.roots) or bool(self.seed_dead)


def build(seed_id: str, records: Iterable[tuple[str, Record]]) -> SeedTrace:
    trace = SeedTrace(seed_id)
    for topic, record in records:
        if record.seed_id != seed_id:
            continue
        if isinstance(record, Seed):
            trace.seed = record
        elif isinstance(record, Metadata):
            trace.metadata = record
        elif isinstance(record, Instruction):
            trace.roots.setdefault(record.root_id, RootTrace()).instructions[record.iteration] = record
        elif isinstance(record, ScoredPair):
            root = trace.roots.setdefault(record.root_id, RootTrace())
            root.scored[record.iteration] = record
            if topic == "retry":
                root.retried.add(record.iteration)
        elif isinstance(record, AcceptedPair):
            trace.roots.setdefault(record.root_id, RootTrace()).accepted = record
        elif isinstance(record, RejectedInstruction):
            trace.roots.setdefault(record.root_id, RootTrace()).rejected = record
        elif isinstance(record, DuplicateInstruction):
            trace.roots.setdefault(record.root_id, RootTrace()).duplicate = record
        elif isinstance(record, DeadLetter):
            if record.root_id:
                root = trace.roots.setdefault(record.root_id, RootTrace())
                if all(d.id != record.id for d in root.dead):
                    root.dead.append(record)
            elif all(d.id != record.id for d in trace.seed_dead):
                trace.seed_dead.append(record)
    return trace


def render(trace: SeedTrace, width: int = 100) -> str:
    if not trace.found:
        return f"no records of seed {trace.seed_id}"
    lines = [root_line(trace, width)]
    for d in trace.seed_dead:
        lines.append(f"  DEAD LETTER ({d.stage}, {d.error_class}): {_cut(d.reason, width)}")
    if trace.metadata is not None:
        m = trace.metadata.metadata
        lines.append(f"  metadata {trace.metadata.id}: use case {m.use_case!r}; skills {', '.join(m.skills)}")
    roots = sorted(trace.roots.items(), key=lambda kv: (_index(kv[1]), kv[0]))
    for root_id, root in roots:
        basic = root.instructions.get(1)
        label = f"{basic.index + 1}/{basic.siblings}" if basic else "?"
        lines.append(f"  instruction {label} {root_id}: {verdict_of(root)}")
        for iteration in sorted(set(root.instructions) | set(root.scored)):
            inst = root.instructions.get(iteration)
            how = "basic" if iteration == 1 else f"tailored with {inst.applied_action!r}" if inst else "tailored"
            text = _cut(inst.text, width) if inst else "(instruction record not found)"
            lines.append(f"    iteration {iteration} ({how}): {text}")
            scored = root.scored.get(iteration)
            if scored is not None:
                then = "retry" if iteration in root.retried else ""
                lines.append(
                    f"      scores: strong {scored.strong_score:g}, target {scored.target_score:g}, "
                    f"gap {scored.gap:+g}{' -> ' + then if then else ''}"
                )
        if root.accepted is not None:
            a = root.accepted
            lines.append(f"    accepted {a.id} (iteration {a.iteration}, {a.response_source} answer, gap {a.gap:+g})")
        if root.rejected is not None:
            lines.append(f"    rejected: {_cut(root.rejected.reason, width)}")
        if root.duplicate is not None:
            lines.append(f"    {_cut(duplicate_reason(root.duplicate), width)}")
        for d in root.dead:
            lines.append(f"    DEAD LETTER ({d.stage}, {d.error_class}): {_cut(d.reason, width)}")
    return "\n".join(lines)


def root_line(trace: SeedTrace, width: int) -> str:
    """What the tree starts at: the seed, or metadata with no seed before it."""
    meta = trace.metadata
    if trace.seed is None and meta is not None and meta.is_root:
        how = (
            f"made by augmentation from {' + '.join(meta.augmented_from)}" if meta.augmented_from else "fed as metadata"
        )
        return f"metadata root {trace.seed_id}: {how} (no seed)"
    return f"seed {trace.seed_id}: {_cut(trace.seed.text if trace.seed else '(seed record not found)', width)}"


def verdict_of(root: RootTrace) -> str:
    if root.accepted is not None:
        return "accepted"
    if root.rejected is not None:
        return "rejected"
    if root.duplicate is not None:
        return "dropped as a duplicate"
    if root.dead:
        return "dead-lettered"
    return "in progress (no verdict yet)"


def duplicate_reason(d: DuplicateInstruction) -> str:
    how = "same text" if d.method == "exact" else f"cosine {d.similarity:.3f} >= {d.threshold:g}"
    return f"duplicate of {d.duplicate_of} ({how}): {d.duplicate_of_text}"


def _index(root: RootTrace) -> int:
    basic = root.instructions.get(1)
    return basic.index if basic else 1_000_000


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
