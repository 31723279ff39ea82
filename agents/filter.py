"""filter: a scored pair -> accepted, another Self-Rubrics iteration, or rejected (the paper's
contrastive filtering). No LLM call: the judge's gap decides.

A large gap either way is worth training on: G > 0 means the target falls short of the
strong model, so its answer is kept; G < 0 means the target already beats it, so the
target's own answer is kept. A small gap means the instruction is too easy to tell them
apart, so tailor makes it harder until the last iteration.
"""

from __future__ import annotations

from typing import Literal

from agents import cost
from agents.base import Emit, Stage, StageContext
from schemas import (
    AcceptedPair,
    CallTotals,
    PromptSetRef,
    Provenance,
    RejectedInstruction,
    ScoredPair,
    derive_id,
    made_from,
)

Verdict = Literal["accept", "retry", "reject"]


async def process(scored: ScoredPair, ctx: StageContext) -> list[Emit]:
    p = ctx.pipeline
    verdict = decide(scored.gap, scored.iteration, threshold=p.gap_threshold, max_iterations=p.max_iterations)
    if verdict == "accept":
        return [Emit("accepted", accepted_pair(scored, settings_hash=ctx.settings_hash, prompts=ctx.prompts.ref))]
    if verdict == "retry":
        return [Emit("retry", scored)]
    return [Emit("rejected", rejected_instruction(scored, threshold=p.gap_threshold, max_iterations=p.max_iterations))]


STAGE = Stage(name="filter", inputs=("scored",), outputs=("accepted", "retry", "rejected"), process=process)


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


def pair_cost(scored: ScoredPair) -> dict[str, CallTotals]:
    """By purpose, everything the root spent up to this verdict: its share of encode, decode
    and rubrics, every earlier iteration, the call that made this instruction (tailor) and
    this iteration's answers and judge passes."""
    inst = scored.instruction
    own = cost.by_purpose(inst.llm_calls) if inst.iteration > 1 else {}  # decode's calls are in the share
    return cost.combine(inst.upstream_cost, own, cost.by_purpose(scored.llm_calls))


def provenance(scored: ScoredPair, *, settings_hash: str, prompts: PromptSetRef) -> Provenance:
    """The models that answered and judged (as the endpoints named them), the prompt set the
    instruction was made with, and the settings in force."""
    models = {call.purpose: call.model for call in scored.llm_calls}
    made_with = scored.instruction.prompts or scored.prompts or prompts
    return Provenance(
        strong_model=models.get("answer_strong", ""),
        target_model=models.get("answer_target", ""),
        judge_model=models.get("judge", ""),
        prompt_set=made_with.name,
        prompt_version=made_with.version,
        settings_hash=settings_hash,
    )


def accepted_pair(scored: ScoredPair, *, settings_hash: str, prompts: PromptSetRef) -> AcceptedPair:
    from_strong = scored.gap > 0
    spent = pair_cost(scored)
    totals = cost.total(spent)
    return AcceptedPair(
        id=derive_id("pair", scored.root_id),  # one verdict per root, whatever the iteration
        **made_from(scored),
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
        llm_calls=totals.calls,
        prompt_tokens=totals.prompt_tokens,
        completion_tokens=totals.completion_tokens,
        cost_by_purpose=cost.rounded(spent),
        provenance=provenance(scored, settings_hash=settings_hash, prompts=prompts),
    )


def rejected_instruction(scored: ScoredPair, *, threshold: float, max_iterations: int) -> RejectedInstruction:
    return RejectedInstruction(
        id=derive_id("rejected", scored.root_id),
        **made_from(scored),
        iteration=scored.iteration,
        instruction=scored.instruction.text,
        gap=scored.gap,
        reason=(
            f"|gap| {abs(scored.gap):g} <= threshold {threshold:g} at iteration "
            f"{scored.iteration} of {max_iterations}: still too easy to tell the models apart"
        ),
    )
