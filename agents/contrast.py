"""contrast: an instruction -> the strong and the target model's answers and the judge's
scores of both (the paper's contrastive filtering, Figure 11's Vicuna-style pairwise judge).

Each pair is judged `judge_passes` times with the answer order alternating, because LLM
judges favour whichever answer they read first. The scores are averaged per order first, then
across the orders, so each order weighs the same whatever the number of passes (with an odd
number the extra pass only refines its order's mean). One pass reads the strong answer first
and leaves the position bias uncorrected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from agents.base import Budget, Emit, ParseFailure, Stage, StageContext, ask
from agents.parsing import gather_or_fail, strip_emphasis
from agents.prompt_sets import PAPER, PromptSet
from llm.base import Message
from schemas import Instruction, JudgeVerdict, ScoredPair, derive_id, made_from

MIN_SCORE, MAX_SCORE = 1.0, 10.0

_DENOMINATOR = re.compile(r"[ \t]*(?:/|out[ \t]+of)[ \t]*10(?![\d.])", re.I)
_ASSISTANT = re.compile(r"assistant[ \t]*([12])\b", re.I)
# A number, with the denominator it is written over ("8/9"): once "/10" is gone, a fraction
# is a score on another scale, which is not read as a 1-10 score (nor is its denominator).
_NUMBER = re.compile(r"(?<![\w./])\d+(?:\.\d+)?(?:[ \t]*/[ \t]*\d+(?:\.\d+)?)?")


async def process(instruction: Instruction, ctx: StageContext) -> list[Emit]:
    p = ctx.pipeline
    answer = build_answer_prompt(instruction.text)
    strong, target = await gather_or_fail(
        *(
            ask(
                model,
                answer,
                parse_answer,
                purpose=purpose,
                budget=Budget.answers(p),
            )
            for model, purpose in ((ctx.strong, "answer_strong"), (ctx.target, "answer_target"))
        )
    )
    orders = strong_first_order(p.judge_passes)
    judged = await gather_or_fail(
        *(
            ask(
                ctx.judge,
                build_judge_prompt(
                    instruction.text,
                    strong.value if strong_first else target.value,
                    target.value if strong_first else strong.value,
                    prompts=ctx.prompts,
                ),
                parse_judge,
                purpose="judge",
                budget=Budget.judge(p),  # re-asks sample: a greedy judge would repeat itself
                # Passes 0 and 2 send the same messages: a new sample range keeps them
                # distinct calls (and cache entries) rather than one answer counted twice.
                sample_base=(n // 2) * p.parse_attempts,
            )
            for n, strong_first in enumerate(orders)
        )
    )
    verdicts = tuple(to_verdict(j.value, strong_first=o) for j, o in zip(judged, orders, strict=True))
    strong_score, target_score, gap = average(verdicts)
    scored = ScoredPair(
        id=derive_id("scored", instruction.id),
        **made_from(instruction),
        iteration=instruction.iteration,
        instruction=instruction,
        strong_answer=strong.value,
        target_answer=target.value,
        strong_score=strong_score,
        target_score=target_score,
        gap=gap,
        judgements=verdicts,
        llm_calls=(*strong.calls, *target.calls, *(call for j in judged for call in j.calls)),
        prompts=ctx.prompts.ref,
    )
    return [Emit("scored", scored)]


STAGE = Stage(
    name="contrast",
    inputs=("basic", "tailored"),
    outputs=("scored",),
    process=process,
    calls={"answer_strong": "strong", "answer_target": "target", "judge": "judge"},
)


def build_answer_prompt(instruction: str) -> list[Message]:
    """The instruction as a user would send it: both models answer exactly this."""
    return [{"role": "user", "content": instruction}]


def parse_answer(text: str) -> str | ParseFailure:
    answer = text.strip()
    return answer if answer else ParseFailure("empty answer", text)


def build_judge_prompt(question: str, answer_1: str, answer_2: str, *, prompts: PromptSet = PAPER) -> list[Message]:
    """The set's judge prompt (Vicuna's pairwise rating; scores only in the paper set,
    examples and an explanation in the small-model set), the question and answers as data."""
    return prompts.judge.messages(question=question.strip(), answer_1=answer_1.strip(), answer_2=answer_2.strip())


def parse_judge(text: str) -> tuple[float, float] | ParseFailure:
    """The scores of Assistant 1 and Assistant 2, each within 1-10.

    Looks, in order, at the first line ("8 6", "8, 6", "7.5 3", "8/10 6/10"), at labelled
    scores anywhere ("Assistant 1: 8" ... "Assistant 2: 6", either order), then at the first
    two numbers of the whole answer. Markdown and "/10" or "out of 10" are ignored; a score
    outside 1-10, a score over another scale ("8/9 7/10") or fewer than two scores fail, so
    the judge is asked again.
    """
    clean = _DENOMINATOR.sub("", strip_emphasis(text)).strip()
    if not clean:
        return ParseFailure("empty answer", text)
    first_line = _ASSISTANT.sub(" ", clean.split("\n", 1)[0])
    scores = _NUMBER.findall(first_line)[:2]
    if len(scores) < 2:
        labelled = _labelled_scores(clean)
        scores = labelled if labelled else _NUMBER.findall(_ASSISTANT.sub(" ", clean))[:2]
    if len(scores) < 2:
        return ParseFailure(f"expected two scores, found {len(scores)}", text)
    if off_scale := [s for s in scores if "/" in s]:
        return ParseFailure(f"a score on another scale than 1-10: {off_scale[0]}", text)
    values = (float(scores[0]), float(scores[1]))
    if not all(MIN_SCORE <= v <= MAX_SCORE for v in values):
        return ParseFailure(f"scores {values[0]:g} and {values[1]:g} are not both within 1-10", text)
    return values


def strong_first_order(passes: int) -> list[bool]:
    """Pass 0 reads the strong answer first, pass 1 the target answer first, and so on."""
    return [p % 2 == 0 for p in range(passes)]


def to_verdict(scores: tuple[float, float], *, strong_first: bool) -> JudgeVerdict:
    """Map (Assistant 1, Assistant 2) back to (strong, target)."""
    first, second = scores
    strong, target = (first, second) if strong_first else (second, first)
    return JudgeVerdict(strong_first=strong_first, strong_score=strong, target_score=target)


def average(verdicts: Sequence[JudgeVerdict]) -> tuple[float, float, float]:
    """(strong, target, gap): the mean of each answer order's mean, so both orders weigh the
    same however many passes each had; rounded so that float noise cannot push a gap across
    the filter's threshold."""
    orders = [[v for v in verdicts if v.strong_first == first] for first in (True, False)]
    means = [(_mean(v.strong_score for v in o), _mean(v.target_score for v in o)) for o in orders if o]
    strong = round(_mean(m[0] for m in means), 6)
    target = round(_mean(m[1] for m in means), 6)
    return strong, target, round(strong - target, 6)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def _labelled_scores(text: str) -> list[str]:
    """["8", "6"] from "Assistant 1: 8 ... Assistant 2 gets 6", in assistant order."""
    found: dict[str, str] = {}
    for label in _ASSISTANT.finditer(text):
        after = text[label.end() : label.end() + 40].split("\n", 1)[0]
        number = _NUMBER.search(_ASSISTANT.split(after, maxsplit=1)[0])
        if number:
            found.setdefault(label.group(1), number.group())
    return [found["1"], found["2"]] if len(found) == 2 else []
