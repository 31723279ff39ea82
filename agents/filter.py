"""filter: a scored pair -> accepted, another Self-Rubrics iteration, or rejected (the paper's
contrastive filtering). No LLM call: the judge's gap decides.

A large gap either way is worth training on: G > 0 means the target falls short of the
strong model, so its answer is kept; G < 0 means the target already beats it, so the
target's own answer is kept. A small gap means the instruction is too easy to tell them
apart, so tailor makes it harder until the last iteration.
"""

from __future__ import annotations

from typing import Literal

from agents.base import Emit, StageContext
from schemas import AcceptedPair, RejectedInstruction, ScoredPair, derive_id

Verdict = Literal["accept", "retry", "reject"]


def decide(gap: float, iteration: int, *, threshold: float, max_iterations: int) -> Verdict:
    if abs(gap) > threshold:
        return "accept"
    return "retry" if iteration < max_iterations else "reject"


def lineage(scored: ScoredPair) -> tuple[str, ...]:
    """Seed, metadata, every instruction of the chain from the root to this one, scored pair.

    Only the root and the current instruction travel on the record; the ones in between
    are recomputed from the id scheme (tailor derives `inst` ids from root and iteration),
    and only when the current id confirms that scheme. Otherwise the chain is cut to what
    the record carries (root, the previous scored pair, this instruction).
    """
    inst = scored.instruction
    chain = [derive_id("inst", inst.root_id, i) for i in range(2, inst.iteration + 1)]
    if inst.iteration > 1 and chain[-1] != inst.id:
        chain = [inst.parent_id or "", inst.id]
    ids = [inst.seed_id, inst.metadata_id, inst.root_id, *chain, inst.id, scored.id]
    return tuple(dict.fromkeys(i for i in ids if i))


def cost(scored: ScoredPair) -> tuple[int, int, int]:
    """(calls, prompt tokens, completion tokens) of the calls the records carry: this
    iteration's answers and judge passes plus the call that made the instruction (tailor,
    or decode and rubrics on a root with index 0, which carries them for its siblings).
    Earlier iterations' calls are not on the record, so they are not counted."""
    calls = (*scored.instruction.llm_calls, *scored.llm_calls)
    return len(calls), sum(c.prompt_tokens for c in calls), sum(c.completion_tokens for c in calls)


def accepted_pair(scored: ScoredPair) -> AcceptedPair:
    from_strong = scored.gap > 0
    calls, prompt_tokens, completion_tokens = cost(scored)
    return AcceptedPair(
        id=derive_id("pair", scored.root_id),  # one verdict per root, whatever the iteration
        seed_id=scored.seed_id,
        parent_id=scored.id,
        root_id=scored.root_id,
        iteration=scored.iteration,
        instruction=scored.instruction.text,
        response=scored.strong_answer if from_strong else scored.target_answer,
        response_source="strong" if from_strong else "target",
        strong_score=scored.strong_score,
        target_score=scored.target_score,
        gap=scored.gap,
        metadata=scored.instruction.metadata,
        seed_text=scored.instruction.seed_text,
        lineage=lineage(scored),
        llm_calls=calls,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def rejected_instruction(scored: ScoredPair, *, threshold: float, max_iterations: int) -> RejectedInstruction:
    return RejectedInstruction(
        id=derive_id("rejected", scored.root_id),
        seed_id=scored.seed_id,
        parent_id=scored.id,
        root_id=scored.root_id,
        iteration=scored.iteration,
        instruction=scored.instruction.text,
        gap=scored.gap,
        reason=(
            f"|gap| {abs(scored.gap):g} <= threshold {threshold:g} at iteration "
            f"{scored.iteration} of {max_iterations}: still too easy to tell the models apart"
        ),
    )


async def process(scored: ScoredPair, ctx: StageContext) -> list[Emit]:
    p = ctx.pipeline
    verdict = decide(scored.gap, scored.iteration, threshold=p.gap_threshold, max_iterations=p.max_iterations)
    if verdict == "accept":
        return [Emit("accepted", accepted_pair(scored))]
    if verdict == "retry":
        return [Emit("retry", scored)]
    return [Emit("rejected", rejected_instruction(scored, threshold=p.gap_threshold, max_iterations=p.max_iterations))]
