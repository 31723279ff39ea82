"""Roots that start at metadata (fed with `feed --metadata`, or made by `augment`), through the
stages in process: decode and everything after take them unchanged, their pairs' lineage starts
at the metadata, and `trace` and `audit` account for them as roots, never as lost or orphaned."""

from __future__ import annotations

import asyncio

import pytest

from agents.augment import augmented_record, candidates
from schemas import AcceptedPair, DeadLetter, Instruction, Metadata, derive_id
from streams.ops.augmenter import refusal
from streams.ops.conservation_audit import audit, render
from streams.ops.metadata_files import parse_jsonl_line
from streams.ops.seed_files import seed_from_text
from streams.ops.seed_tree import build
from streams.ops.seed_tree import render as render_trace
from streams.settings import Settings, overlay
from tests.integration.reference import reference_run

SEEDS = [seed_from_text(f"Plan a week of meals for a family of {i}.") for i in (3, 4)]
LINES = [
    '{"use_case": "email writing", "skills": ["persuasive writing", "business etiquette"]}',
    '{"use_case": "cover letter writing", "skills": "persuasive writing; self presentation"}',
]
FED = [parse_jsonl_line(line, n) for n, line in enumerate(LINES, 1)]
AUGMENTED = augmented_record(candidates([m for m in FED if isinstance(m, Metadata)], max_skills=3)[0])
ROOTS = [*FED, AUGMENTED]


@pytest.fixture(scope="module")
def run():
    settings = overlay(
        Settings(),
        {
            "strong": {"model": "double-strong"},
            "target": {"model": "double-target"},
            "pipeline": {"instructions_per_metadata": 3, "max_iterations": 3},
            "dedup": {"enabled": False},
        },
    )
    assert all(isinstance(m, Metadata) for m in ROOTS)
    return asyncio.run(reference_run(settings, SEEDS, metadata=ROOTS)).records  # type: ignore[arg-type]


def test_decode_and_every_stage_after_take_metadata_roots_and_the_pairs_lineage_starts_there(run):
    for root in ROOTS:
        instructions = [r for t, r in run if t == "decoded" and r.seed_id == root.id]
        assert len(instructions) == 3 and all(isinstance(i, Instruction) for i in instructions)
        assert {i.metadata_id for i in instructions} == {root.id} and all(i.parent_id == root.id for i in instructions)
        pairs = [r for t, r in run if t == "accepted" and r.seed_id == root.id]
        for pair in pairs:
            assert isinstance(pair, AcceptedPair)
            assert pair.lineage[0] == root.id and pair.lineage[1] == pair.root_id  # no seed before the metadata
            assert pair.seed_text == "" and pair.metadata == root.metadata
    assert any(t == "accepted" and r.seed_id in {m.id for m in ROOTS} for t, r in run)


def test_the_audit_counts_metadata_roots_and_each_augmented_record(run):
    result = audit(run)
    assert result.ok, result.missing
    assert (result.seeds, result.metadata_roots, result.instructions) == (2, 3, 15)
    a = result.augmentation
    assert (a.made, a.decoded, a.complete, a.dead, a.refused) == (1, 1, 1, 0, 0)
    text = render(result)
    assert text.startswith("2 seeds and 3 metadata roots (0 dead-lettered whole), 15 instructions")
    assert "augmentation: 1 metadata made and fed to decode: 1 decoded, 1 complete, 0 dead-lettered whole" in text
    assert "conservation holds" in text
    only = audit(run, {AUGMENTED.id})
    assert only.ok and (only.seeds, only.metadata_roots, only.instructions) == (0, 1, 3)


def test_a_metadata_root_not_decoded_yet_is_named_as_missing_not_as_unknown(run):
    waiting = [(t, r) for t, r in run if r.seed_id != AUGMENTED.id or t == "metadata"]
    result = audit(waiting)
    assert result.missing == [f"{AUGMENTED.id}: no basic instructions and no dead letter"]
    assert result.augmentation.made == 1 and result.augmentation.decoded == 0
    assert audit(waiting, {AUGMENTED.id}).missing == result.missing


def test_a_root_dead_lettered_at_decode_and_a_refused_combination_are_accounted(run):
    dead = DeadLetter(
        id=derive_id("dead", "decode", AUGMENTED.id),
        seed_id=AUGMENTED.id,
        parent_id=None,
        stage="decode",
        reason="decode: unparsable answer",
        error_class="ParseFailure",
        record_id=AUGMENTED.id,
        original="{}",
    )
    (other, *_) = candidates([m for m in FED if isinstance(m, Metadata)], max_skills=3)[1:]
    refused = refusal(augmented_record(other), "augment: not sensible", "NotSensible", 1, "t.metadata")
    records = [(t, r) for t, r in run if r.seed_id != AUGMENTED.id or t == "metadata"]
    result = audit([*records, ("deadletter", dead), ("deadletter", refused)])
    assert result.ok, result.missing
    a = result.augmentation
    assert (a.made, a.decoded, a.dead, a.refused) == (1, 0, 1, 1)
    assert result.seeds_dead == 1 and result.metadata_roots == 3  # the refused combination is no root
    # replayed to decode after all, it is a root like the others and the refusal is resolved
    replayed = augmented_record(other)
    again = audit([*records, ("deadletter", refused), ("metadata", replayed)])
    assert again.augmentation.refused == 0 and again.augmentation.made == 2 and again.resolved_by_replay == 1


def test_trace_starts_a_metadata_root_at_its_metadata(run):
    fed, augmented = render_trace(build(FED[0].id, run)), render_trace(build(AUGMENTED.id, run))  # type: ignore[union-attr]
    assert fed.startswith(f"metadata root {FED[0].id}: fed as metadata (no seed)\n")  # type: ignore[union-attr]
    assert "seed record not found" not in fed and fed.count("  instruction ") == 3
    from_ids = " + ".join(AUGMENTED.augmented_from)
    assert augmented.startswith(f"metadata root {AUGMENTED.id}: made by augmentation from {from_ids} (no seed)\n")
    assert f"use case {AUGMENTED.metadata.use_case!r}" in augmented
    seed_trace = render_trace(build(SEEDS[0].id, run))
    assert seed_trace.startswith(f"seed {SEEDS[0].id}: {SEEDS[0].text}")
