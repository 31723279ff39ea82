"""`codeclm trace` and `codeclm audit` on the records of a real (in-process) run of the stages."""

from __future__ import annotations

import pytest

from schemas import AcceptedPair, DeadLetter, RejectedInstruction, derive_id
from streams.ops.conservation_audit import audit
from streams.ops.conservation_audit import render as render_audit
from streams.ops.seed_files import seed_from_text
from streams.ops.seed_tree import build, render
from streams.settings import Settings, overlay
from tests.integration.reference import reference_run

SEEDS = [seed_from_text(f"Write a short guide to topic {i} for new hires.") for i in range(4)]


@pytest.fixture(scope="module")
def run():
    import asyncio

    settings = overlay(
        Settings(),
        {
            "strong": {"model": "double-strong"},
            "target": {"model": "double-target"},
            "pipeline": {"instructions_per_metadata": 3, "max_iterations": 3},
        },
    )
    return asyncio.run(reference_run(settings, SEEDS)).records


def test_trace_shows_metadata_every_instruction_its_iterations_and_verdict(run):
    seed = SEEDS[0]
    trace = build(seed.id, run)
    text = render(trace)
    mine = [r for _, r in run if r.seed_id == seed.id]
    metadata = next(r for t, r in run if t == "metadata" and r.seed_id == seed.id)
    assert text.startswith(f"seed {seed.id}: {seed.text}")
    assert metadata.metadata.use_case in text
    assert len(trace.roots) == 3 and text.count("  instruction ") == 3
    for pair in (r for r in mine if isinstance(r, AcceptedPair)):
        assert f"accepted {pair.id}" in text
    assert text.count("rejected: ") == sum(isinstance(r, RejectedInstruction) for r in mine)
    scored = [t for t, r in run if t == "scored" and r.seed_id == seed.id]
    assert text.count("scores: strong") == len(scored)
    assert "iteration 2 (tailored with" in text or all(r.iteration == 1 for r in mine if isinstance(r, AcceptedPair))


def test_trace_shows_why_an_instruction_was_dropped_as_a_duplicate(run):
    dropped = next(r for t, r in run if t == "duplicates")
    text = render(build(dropped.seed_id, run), width=400)
    assert "dropped as a duplicate" in text
    how = "same text" if dropped.method == "exact" else f"cosine {dropped.similarity:.3f} >= {dropped.threshold:g}"
    assert f"duplicate of {dropped.duplicate_of} ({how}): {dropped.duplicate_of_text}" in text


def test_trace_of_an_unknown_seed_says_so(run):
    trace = build("seed-00000000000000000000", run)
    assert not trace.found and "no records" in render(trace)


def test_audit_of_a_complete_run_holds(run):
    result = audit(run)
    assert result.ok, result.missing
    assert result.seeds == 4 and result.instructions == 12
    # The double gives these four seeds one metadata ("topic 1" and "topic 2" differ only in a
    # digit), so dedup keeps the first seed's instructions and drops the others' copies.
    assert result.duplicates == sum(t == "duplicates" for t, _ in run) > 0
    assert result.accepted + result.rejected + result.duplicates == 12
    assert "conservation holds" in render_audit(result)


def test_audit_names_an_instruction_whose_verdict_is_missing(run):
    lost = next(r for t, r in run if t == "accepted")
    result = audit([(t, r) for t, r in run if r is not lost])
    assert not result.ok
    assert result.missing == [f"{lost.seed_id}: instruction {lost.root_id} has no verdict and no dead letter"]
    assert "conservation BROKEN" in render_audit(result)


def test_audit_names_a_seed_that_never_got_metadata():
    seed = seed_from_text("A seed nobody processed.")
    result = audit([("seeds", seed)])
    assert result.missing == [f"{seed.id}: no metadata and no dead letter"]


def test_audit_flags_two_verdicts_for_one_instruction(run):
    accepted = next(r for t, r in run if t == "accepted")
    twice = RejectedInstruction(
        id=derive_id("rejected", accepted.root_id),
        seed_id=accepted.seed_id,
        parent_id=accepted.parent_id,
        root_id=accepted.root_id,
        iteration=accepted.iteration,
        instruction=accepted.instruction,
        gap=0.0,
        reason="test",
    )
    result = audit([*run, ("rejected", twice)])
    assert any("both accepted and rejected" in line for line in result.missing)


def test_a_dead_letter_resolved_by_a_replay_is_not_a_second_ending(run):
    accepted = next(r for t, r in run if t == "accepted")
    earlier = DeadLetter(
        id=derive_id("dead", "contrast", accepted.root_id),
        seed_id=accepted.seed_id,
        parent_id=accepted.root_id,
        root_id=accepted.root_id,
        stage="contrast",
        reason="LLM call failed",
        error_class="LLMError",
        original="{}",
    )
    result = audit([("deadletter", earlier), *run])
    assert result.ok and result.resolved_by_replay == 1 and result.dead_lettered == 0
