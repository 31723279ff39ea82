"""Conservation of a run, from the records on the topics (streams/ops/ledger.py does the counting):
every root (a seed, or metadata fed as metadata or made by augmentation) produced its basic
instructions or was dead-lettered whole, and every basic instruction ended in exactly one
verdict (accepted, rejected, or dropped by dedup as a duplicate) or a dead letter.
Anything else is named as missing. A dead letter later resolved by a replay (the same root or
seed now has a verdict) counts as resolved, not as a second ending. Augmentation is accounted
on its own line: each augmented metadata made, decoded, complete or dead-lettered, and each
combination the strong model refused."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agents.pipeline import CONSERVATION_TOPICS
from schemas import Metadata, Record, Seed
from streams.ops.ledger import Ledger, SeedAccount

AUDIT_TOPICS = ("seeds", "metadata", *CONSERVATION_TOPICS)


@dataclass
class Augmentation:
    """What became of metadata augmentation's records (`codeclm augment`)."""

    made: int = 0  # augmented metadata on the metadata topic: each is there for decode
    decoded: int = 0  # decode made their basic instructions
    complete: int = 0  # every one of those instructions ended (verdict or dead letter)
    dead: int = 0  # dead-lettered whole (decode failed)
    refused: int = 0  # combinations the strong model's check refused (dead letters of stage augment)


@dataclass
class Audit:
    seeds: int = 0  # roots that start at a seed
    instructions: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0  # dropped by dedup before contrast
    dead_lettered: int = 0  # instructions whose only ending is a dead letter
    seeds_dead: int = 0  # roots (seeds or metadata) dead-lettered whole (encode or decode)
    resolved_by_replay: int = 0  # dead letters whose record has a verdict since
    unattributed_dead: int = 0  # dead letters of records too broken to name a seed
    metadata_roots: int = 0  # roots that start at metadata: fed with --metadata, or augmented
    augmentation: Augmentation = field(default_factory=Augmentation)
    missing: list[str] = field(default_factory=list)  # what breaks conservation, one line each

    @property
    def ok(self) -> bool:
        return not self.missing


def audit(records: Iterable[tuple[str, Record]], seed_ids: set[str] | None = None) -> Audit:
    """The audit of every root, or of `seed_ids` (seed or metadata-root ids) only."""
    ledger = Ledger()
    seeds: set[str] = set()
    with_metadata: set[str] = set()
    for topic, record in records:
        ledger.add(topic, record)
        if isinstance(record, Seed):
            seeds.add(record.seed_id)
        elif isinstance(record, Metadata):
            with_metadata.add(record.seed_id)
    from_metadata = {root for root, account in ledger.seeds.items() if account.root_metadata is not None}
    roots = seeds | from_metadata
    wanted = seed_ids if seed_ids is not None else roots | set(ledger.seeds)
    result = Audit(
        seeds=len(wanted - from_metadata),
        metadata_roots=len(wanted & from_metadata),
        unattributed_dead=ledger.unattributed_dead,
    )
    refused = set(ledger.refused) if seed_ids is None else set(ledger.refused) & seed_ids
    result.augmentation.refused = len(refused - from_metadata)
    result.resolved_by_replay += len(refused & from_metadata)  # refused, then replayed to decode
    for seed_id in sorted(wanted):
        account = ledger.account(seed_id)
        _count_augmented(result.augmentation, account)
        duplicates = set(account.duplicates)
        verdicts = set(account.accepted) | account.rejected | duplicates
        result.instructions += len(account.generated)
        result.accepted += len(set(account.accepted) & account.generated)
        result.rejected += len(account.rejected & account.generated)
        result.duplicates += len(duplicates & account.generated)
        result.dead_lettered += len((account.dead - verdicts) & account.generated)
        result.resolved_by_replay += len(account.dead & verdicts)
        if account.seed_dead_reason is not None:
            if account.generated:
                result.resolved_by_replay += 1  # dead-lettered once, instructions since
            else:
                result.seeds_dead += 1
                continue
        if seed_id not in roots and seed_ids is not None and not account.generated:
            result.missing.append(f"{seed_id}: no record of this seed at all")
            continue
        if not account.generated:
            what = "no basic instructions" if seed_id in with_metadata else "no metadata"
            result.missing.append(f"{seed_id}: {what} and no dead letter")
            continue
        if account.expected is not None and len(account.generated) < account.expected:
            result.missing.append(
                f"{seed_id}: {account.expected - len(account.generated)} of {account.expected} basic instructions "
                "never reached the decoded topic"
            )
        endings = {"accepted": set(account.accepted), "rejected": account.rejected, "a duplicate": duplicates}
        for root in sorted(verdicts):
            had = [name for name, roots in endings.items() if root in roots]
            if len(had) > 1:
                result.missing.append(f"{seed_id}: instruction {root} was both {' and '.join(had)}")
        for root in sorted(account.generated - verdicts - account.dead):
            result.missing.append(f"{seed_id}: instruction {root} has no verdict and no dead letter")
        for root in sorted((verdicts | account.dead) - account.generated):
            result.missing.append(f"{seed_id}: a verdict for {root}, an instruction never seen on the decoded topic")
    return result


def _count_augmented(augmentation: Augmentation, account: SeedAccount) -> None:
    root = account.root_metadata
    if root is None or not root.augmented_from:
        return
    augmentation.made += 1
    augmentation.decoded += bool(account.generated)
    augmentation.complete += bool(account.generated) and account.complete
    augmentation.dead += account.seed_dead_reason is not None and not account.generated


def render(result: Audit) -> str:
    roots = f"{result.seeds} seeds" + (f" and {result.metadata_roots} metadata roots" if result.metadata_roots else "")
    lines = [
        f"{roots} ({result.seeds_dead} dead-lettered whole), {result.instructions} instructions: "
        f"{result.accepted} accepted, {result.rejected} rejected, {result.duplicates} duplicates, "
        f"{result.dead_lettered} dead-lettered",
    ]
    a = result.augmentation
    if a.made or a.refused:
        lines.append(
            f"augmentation: {a.made} metadata made and fed to decode: {a.decoded} decoded, {a.complete} complete, "
            f"{a.dead} dead-lettered whole; {a.refused} combinations refused by the strong model (stage augment)"
        )
    if result.resolved_by_replay:
        lines.append(f"{result.resolved_by_replay} dead letters resolved by a replay")
    if result.unattributed_dead:
        lines.append(f"{result.unattributed_dead} dead letters of unreadable records (see codeclm deadletter)")
    if result.ok:
        lines.append("conservation holds: every instruction ended in exactly one verdict or a dead letter")
    else:
        lines.append(f"conservation BROKEN: {len(result.missing)} problems")
        lines.extend(f"  missing: {line}" for line in result.missing)
    return "\n".join(lines)
