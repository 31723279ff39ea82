"""Conservation of a run, from the records on the topics (streams/ops/ledger.py does the counting):
every seed produced metadata and its basic instructions or was dead-lettered whole, and every
basic instruction ended in exactly one verdict (accepted, rejected, or dropped by dedup as a
duplicate) or a dead letter.
Anything else is named as missing. A dead letter later resolved by a replay (the same root or
seed now has a verdict) counts as resolved, not as a second ending."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agents.pipeline import CONSERVATION_TOPICS
from schemas import Metadata, Record, Seed
from streams.ops.ledger import Ledger

AUDIT_TOPICS = ("seeds", "metadata", *CONSERVATION_TOPICS)


@dataclass
class Audit:
    seeds: int = 0
    instructions: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0  # dropped by dedup before contrast
    dead_lettered: int = 0  # instructions whose only ending is a dead letter
    seeds_dead: int = 0  # seeds dead-lettered whole (encode or decode)
    resolved_by_replay: int = 0  # dead letters whose record has a verdict since
    unattributed_dead: int = 0  # dead letters of records too broken to name a seed
    missing: list[str] = field(default_factory=list)  # what breaks conservation, one line each

    @property
    def ok(self) -> bool:
        return not self.missing


def audit(records: Iterable[tuple[str, Record]], seed_ids: set[str] | None = None) -> Audit:
    ledger = Ledger()
    seeds: set[str] = set()
    with_metadata: set[str] = set()
    for topic, record in records:
        ledger.add(topic, record)
        if isinstance(record, Seed):
            seeds.add(record.seed_id)
        elif isinstance(record, Metadata):
            with_metadata.add(record.seed_id)
    wanted = seed_ids if seed_ids is not None else seeds | set(ledger.seeds)
    result = Audit(seeds=len(wanted), unattributed_dead=ledger.unattributed_dead)
    for seed_id in sorted(wanted):
        account = ledger.account(seed_id)
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
        if seed_id not in seeds and seed_ids is not None and not account.generated:
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


def render(result: Audit) -> str:
    lines = [
        f"{result.seeds} seeds ({result.seeds_dead} dead-lettered whole), {result.instructions} instructions: "
        f"{result.accepted} accepted, {result.rejected} rejected, {result.duplicates} duplicates, "
        f"{result.dead_lettered} dead-lettered",
    ]
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
