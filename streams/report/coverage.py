"""What metadata augmentation added to the coverage of use cases and skills, counted on the
sink: the distinct use cases, skills and (use case, skill) pairs of the accepted pairs whose
root is not augmented metadata ("before"), and of all accepted pairs ("after"). Labels are
compared once case and runs of white space are ignored, as everywhere in the report. Pure:
records in, figures out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas import AcceptedPair, Metadata, MetadataSummary, normalise_text


@dataclass(frozen=True)
class Coverage:
    use_cases: int
    skills: int
    pairs: int  # distinct (use case, skill)


@dataclass(frozen=True)
class AugmentationCoverage:
    augmented_metadata: int  # augmented metadata records on the metadata topic
    accepted_from_augmented: int  # accepted pairs whose root is one of them
    before: Coverage  # accepted pairs from seeds and user-written metadata
    after: Coverage  # every accepted pair

    @property
    def added(self) -> Coverage:
        return Coverage(
            self.after.use_cases - self.before.use_cases,
            self.after.skills - self.before.skills,
            self.after.pairs - self.before.pairs,
        )


def coverage(summaries: Iterable[MetadataSummary]) -> Coverage:
    use_cases: set[str] = set()
    skills: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for m in summaries:
        use_case = normalise_text(m.use_case)
        use_cases.add(use_case)
        for skill in {normalise_text(s) for s in m.skills if s.strip()}:
            skills.add(skill)
            pairs.add((use_case, skill))
    return Coverage(len(use_cases), len(skills), len(pairs))


def augmentation_coverage(
    metadata: Sequence[Metadata], accepted: Sequence[AcceptedPair]
) -> AugmentationCoverage | None:
    """None when the run has no augmented metadata."""
    augmented = {m.id for m in metadata if m.augmented_from}
    if not augmented:
        return None
    from_augmented = [p for p in accepted if p.seed_id in augmented]
    return AugmentationCoverage(
        augmented_metadata=len(augmented),
        accepted_from_augmented=len(from_augmented),
        before=coverage(p.metadata for p in accepted if p.seed_id not in augmented),
        after=coverage(p.metadata for p in accepted),
    )


def coverage_lines(c: AugmentationCoverage) -> list[str]:
    """The report's lines: before, after, added."""
    added = c.added
    return [
        f"augmentation: {c.augmented_metadata} augmented metadata, {c.accepted_from_augmented} accepted pairs from them",
        f"coverage of the accepted pairs without them -> with them: use cases {c.before.use_cases} -> "
        f"{c.after.use_cases} (+{added.use_cases}), skills {c.before.skills} -> {c.after.skills} (+{added.skills}), "
        f"use case x skill pairs {c.before.pairs} -> {c.after.pairs} (+{added.pairs})",
    ]
