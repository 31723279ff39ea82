"""filter: the accept/retry/reject decision and the records it emits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents import filter as filter_stage
from schemas import AcceptedPair, RejectedInstruction, derive_id
from tests.unit.fakes import ScriptedChatModel, make_context, scored


@pytest.mark.parametrize(
    ("gap", "iteration", "verdict"),
    [
        (3.0, 1, "retry"),  # exactly the threshold is not kept
        (-3.0, 1, "retry"),
        (3.01, 1, "accept"),
        (-3.01, 1, "accept"),
        (-4.0, 2, "accept"),
        (9.0, 4, "accept"),  # a big gap is kept even at the last iteration
        (0.0, 1, "retry"),
        (2.5, 3, "retry"),
        (1.0, 4, "reject"),  # still too easy after the last iteration
        (-3.0, 4, "reject"),
        (0.0, 5, "reject"),
    ],
)
def test_decide_truth_table(gap: float, iteration: int, verdict: str) -> None:
    assert filter_stage.decide(gap, iteration, threshold=3.0, max_iterations=4) == verdict


@given(
    gap=st.floats(min_value=-9, max_value=9, allow_nan=False),
    iteration=st.integers(min_value=1, max_value=8),
    threshold=st.floats(min_value=0, max_value=9, allow_nan=False),
    max_iterations=st.integers(min_value=1, max_value=6),
)
def test_decide_agrees_with_the_paper_rule(gap: float, iteration: int, threshold: float, max_iterations: int) -> None:
    verdict = filter_stage.decide(gap, iteration, threshold=threshold, max_iterations=max_iterations)
    if abs(gap) > threshold:
        assert verdict == "accept"
    else:
        assert verdict == ("retry" if iteration < max_iterations else "reject")


async def _run(pair, **settings):
    return await filter_stage.process(pair, make_context(ScriptedChatModel(), **settings))


async def test_positive_gap_keeps_the_strong_answer() -> None:
    pair = scored(gap=4.0, iteration=1)
    (emit,) = await _run(pair)
    assert emit.topic == "accepted"
    accepted = emit.record
    assert isinstance(accepted, AcceptedPair)
    assert accepted.id == derive_id("pair", pair.root_id)
    assert (accepted.response, accepted.response_source) == ("STRONG ANSWER", "strong")
    assert (accepted.seed_id, accepted.parent_id, accepted.root_id, accepted.iteration) == (
        pair.seed_id,
        pair.id,
        pair.root_id,
        1,
    )
    assert accepted.instruction == pair.instruction.text
    assert (accepted.strong_score, accepted.target_score, accepted.gap) == (7.0, 3.0, 4.0)
    assert accepted.metadata == pair.instruction.metadata
    inst = pair.instruction
    assert accepted.lineage == (inst.seed_id, inst.metadata_id, inst.root_id, pair.id)
    # a third of decode and rubrics (3 siblings share them), two answers and two judge passes
    assert (accepted.llm_calls, accepted.prompt_tokens, accepted.completion_tokens) == (
        4.666667,
        466.666667,
        233.333333,
    )
    assert accepted.cost_by_purpose["decode"].calls == accepted.cost_by_purpose["rubrics"].calls == 0.333333
    assert accepted.cost_by_purpose["judge"].calls == 2


async def test_negative_gap_keeps_the_target_answer() -> None:
    (emit,) = await _run(scored(gap=-4.0, iteration=2))
    assert (emit.record.response, emit.record.response_source) == ("TARGET ANSWER", "target")


async def test_lineage_runs_through_every_iteration() -> None:
    pair = scored(gap=5.0, iteration=3)
    (emit,) = await _run(pair)
    inst = pair.instruction
    root = inst.root_id
    assert emit.record.lineage == (
        inst.seed_id,
        inst.metadata_id,
        root,
        derive_id("inst", root, 2),
        derive_id("inst", root, 3),
        pair.id,
    )
    assert inst.id == derive_id("inst", root, 3)
    # every iteration: the share of decode and rubrics, 4 calls of iteration 1, a tailor call
    # and 4 calls of iteration 2, a tailor call and 4 calls of iteration 3
    assert emit.record.llm_calls == round(2 / 3 + 4 + 5 + 5, 6)
    by_purpose = emit.record.cost_by_purpose
    assert (by_purpose["tailor"].calls, by_purpose["judge"].calls, by_purpose["answer_strong"].calls) == (2, 6, 3)
    assert emit.record.id == derive_id("pair", root)  # one pair per root, whatever the iteration


async def test_small_gap_is_forwarded_to_retry_unchanged() -> None:
    pair = scored(gap=3.0, iteration=3)
    (emit,) = await _run(pair)
    assert emit.topic == "retry"
    assert emit.record is pair


async def test_small_gap_at_the_last_iteration_is_rejected() -> None:
    pair = scored(gap=-1.5, iteration=4)
    (emit,) = await _run(pair)
    assert emit.topic == "rejected"
    rejected = emit.record
    assert isinstance(rejected, RejectedInstruction)
    assert rejected.id == derive_id("rejected", pair.root_id)
    assert (rejected.seed_id, rejected.parent_id, rejected.root_id, rejected.iteration) == (
        pair.seed_id,
        pair.id,
        pair.root_id,
        4,
    )
    assert (rejected.instruction, rejected.gap) == (pair.instruction.text, -1.5)
    assert "1.5" in rejected.reason and "threshold 3" in rejected.reason


async def test_settings_move_the_threshold_and_the_last_iteration() -> None:
    assert [e.topic for e in await _run(scored(gap=2.5), gap_threshold=2.0)] == ["accepted"]
    assert [e.topic for e in await _run(scored(gap=1.0, iteration=2), max_iterations=2)] == ["rejected"]
    assert [e.topic for e in await _run(scored(gap=1.0, iteration=2), max_iterations=5)] == ["retry"]


async def test_filter_never_calls_an_llm() -> None:
    strong = ScriptedChatModel()
    await filter_stage.process(scored(gap=5.0), make_context(strong))
    assert strong.calls == []


async def test_lineage_keeps_only_carried_ids_when_the_id_scheme_does_not_hold() -> None:
    pair = scored(gap=5.0, iteration=3)
    odd = pair.instruction.model_copy(update={"id": "inst-elsewhere"})
    pair = pair.model_copy(update={"instruction": odd})
    (emit,) = await _run(pair)
    assert emit.record.lineage == (odd.seed_id, odd.metadata_id, odd.root_id, odd.parent_id, "inst-elsewhere", pair.id)
