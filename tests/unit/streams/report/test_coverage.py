"""What augmentation added to coverage, as the report counts it from the sink; and that the
distribution to match stays the one the user gave."""

from __future__ import annotations

import asyncio

from agents.augment import augmented_record, candidates
from schemas import AcceptedPair, Metadata, MetadataSummary, metadata_id_for
from streams.report import html
from streams.report.coverage import AugmentationCoverage, Coverage, augmentation_coverage, coverage, coverage_lines
from streams.report.figures import compute
from streams.settings import Settings, overlay
from tests.integration.reference import reference_run
from tests.unit.streams.report.test_figures import accepted


def root(use_case: str, *skills: str, augmented_from: tuple[str, ...] = ()) -> Metadata:
    record_id = metadata_id_for(use_case, skills)
    summary = MetadataSummary(use_case=use_case, skills=skills)
    return Metadata(
        id=record_id, seed_id=record_id, parent_id=None, seed_text="", metadata=summary, augmented_from=augmented_from
    )


def pair(of: Metadata, n: int = 0) -> AcceptedPair:
    """An accepted pair of the root `of` (the figures tests' builder, moved to that root)."""
    return accepted(f"inst-{of.id}-{n}", 1, of.metadata).model_copy(update={"seed_id": of.seed_id})


def test_coverage_counts_distinct_use_cases_skills_and_their_pairs_ignoring_case_and_spaces() -> None:
    summaries = [
        MetadataSummary(use_case="Email writing", skills=("tone", "brevity")),
        MetadataSummary(use_case="email  WRITING", skills=("Tone", "")),
        MetadataSummary(use_case="tutoring", skills=("tone",)),
    ]
    assert coverage(summaries) == Coverage(use_cases=2, skills=2, pairs=3)


def test_augmentation_adds_what_its_pairs_cover_and_nothing_without_it() -> None:
    email = root("email writing", "persuasion", "etiquette")
    cover = root("cover letters", "persuasion", "self presentation")
    new = root("email writing", "persuasion", "self presentation", augmented_from=(email.id, cover.id))
    accepted = [pair(email), pair(email, 1), pair(cover), pair(new), pair(new, 1)]
    c = augmentation_coverage([email, cover, new], accepted)
    assert c == AugmentationCoverage(
        augmented_metadata=1,
        accepted_from_augmented=2,
        before=Coverage(use_cases=2, skills=3, pairs=4),
        after=Coverage(use_cases=2, skills=3, pairs=5),
    )
    assert c.added == Coverage(0, 0, 1)
    assert coverage_lines(c)[1].endswith("use case x skill pairs 4 -> 5 (+1)")
    assert augmentation_coverage([email, cover], accepted[:3]) is None


def test_the_report_shows_augmentation_and_matches_distributions_against_the_users_metadata() -> None:
    fed = [
        root("email writing", "persuasive writing", "business etiquette"),
        root("cover letters", "persuasive writing", "self presentation"),
    ]
    made = [augmented_record(c) for c in candidates(fed, max_skills=3)]
    settings = overlay(
        Settings(),
        {
            "strong": {"model": "double-strong"},
            "target": {"model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2},
        },
    )
    run = asyncio.run(reference_run(settings, [], metadata=[*fed, *made])).records
    report = compute(run, gap_threshold=3.0, similarity_threshold=0.9)
    assert report.augmentation is not None and report.augmentation.augmented_metadata == 2
    accepted = [r for t, r in run if t == "accepted"]
    assert report.augmentation.accepted_from_augmented == sum(p.seed_id in {m.id for m in made} for p in accepted)
    use_cases = next(d for d in report.distributions if d.name == "use_case")
    assert sum(use_cases.seeds.values()) == len(fed)  # the augmented metadata is not the distribution to match
    page = html.render(report, topic_prefix="t.", generated_at=0.0)
    assert "What metadata augmentation added" in page and "use case x skill pairs" in page
    assert report.as_json()["augmentation"]["added"] == {
        "use_cases": report.augmentation.added.use_cases,
        "skills": report.augmentation.added.skills,
        "pairs": report.augmentation.added.pairs,
    }
