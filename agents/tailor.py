"""tailor: an instruction judged too easy -> a harder one, one Self-Rubrics iteration (the
paper's Figure 10). Each iteration applies ONE action drawn at random from the actions
decode generated for the instruction's metadata, never one this root already had while
others remain unused. The improved instruction is kept exactly as the model wrote it: code,
maths and an input block after a colon included (`agents/instruction_text.py`)."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from functools import partial

from agents import cost
from agents.base import Budget, Emit, ParseFailure, Stage, StageContext, StageFailure, ask
from agents.instruction_text import body_text, starts_closing_remark
from agents.parsing import (
    PREAMBLE,
    REFUSAL,
    as_data,
    has_letters,
    is_placeholder,
    normalise,
    unwrap_emphasis,
    unwrap_quotes,
    word_count,
)
from agents.prompt_sets import PAPER, PromptSet
from llm.base import Message
from schemas import ScoredPair, derive_id, made_from

# The label of the answer: "Improved Instruction:", "**New instruction:**", "#Improved Instruction#:",
# "### Improved Instruction" (a heading, the value below), "Improved instruction - ...".
_IMPROVED = re.compile(
    r"^[ \t>]*(?:[-*•+][ \t]+)?(?:#{1,6}[ \t]*)?(?:\*\*|__|\*|_)?[ \t]*#?[ \t]*"
    r"(?:improved|new|rewritten|revised|updated|harder|more[ \t]+challenging)[ \t]+(?:instruction|version|prompt)"
    r"[ \t]*#?[ \t]*(?:\*\*|__|\*|_)?[ \t]*(?:[:：=]|[-–—](?=[ \t])|$)[ \t]*(?:\*\*|__|\*|_)?[ \t]*",
    re.I | re.M,
)
# The prompt's own lines echoed after the value: its fence, the data tag, its closing lines.
_ECHO_STOP = re.compile(
    r"^[ \t]*(?:#{3,}[ \t]*$|</?instruction>|#instruction#|the text between the\b|reply with the improved"
    r"|improving action\b)",
    re.I,
)
_FENCE_LINE = re.compile(r"^[ \t]*(?:#{3,}|</?instruction>)[ \t]*$", re.M)
_ECHO = re.compile(r"#Instruction#|Improving action", re.I)


async def process(scored: ScoredPair, ctx: StageContext) -> list[Emit]:
    p = ctx.pipeline
    previous = scored.instruction
    if not previous.actions:
        raise StageFailure("tailor: the instruction carries no actions", "NoActions")
    used = previous.applied_actions or ((previous.applied_action,) if previous.applied_action else ())
    action = choose_action(
        previous.actions, seed=p.seed, root_id=previous.root_id, iteration=previous.iteration, used=used
    )
    asked = await ask(
        ctx.strong,
        build_prompt(previous.text, action, prompts=ctx.prompts),
        partial(parse, original=previous.text, copied_from=example_answers(ctx.prompts)),
        purpose="tailor",
        budget=Budget.generation(p),
    )
    iteration = previous.iteration + 1
    # the next iteration of the same root: what it is about (metadata, rubrics, actions, index,
    # siblings, seed text) carries over; what tailor made is new
    tailored = previous.model_copy(
        update={
            "id": derive_id("inst", previous.root_id, iteration),
            **made_from(scored),
            "iteration": iteration,
            "text": asked.value,
            "applied_action": action,
            "applied_actions": (*used, action),
            "llm_calls": asked.calls,
            "prompts": ctx.prompts.ref,
            "upstream_cost": spent_before_next(scored),
            "created_at": time.time(),
        }
    )
    return [Emit("tailored", tailored)]


STAGE = Stage(name="tailor", inputs=("retry",), outputs=("tailored",), process=process, calls={"tailor": "strong"})


def example_answers(prompt: PromptSet) -> frozenset[str]:
    """The improved instructions of the set's examples: repeating one is copying, not tailoring."""
    out = set()
    for _, answer in prompt.tailor.examples:
        label = _IMPROVED.search(answer)
        if label:
            out.add(normalise(answer[label.end() :]))
    return frozenset(out)


def build_prompt(instruction: str, action: str, *, prompts: PromptSet = PAPER) -> list[Message]:
    """The set's tailor prompt (examples only in the small-model set), the instruction and
    the action as data."""
    return prompts.tailor.messages(instruction=as_data(instruction), action=as_data(action))


def choose_action(actions: Sequence[str], *, seed: int, root_id: str, iteration: int, used: Sequence[str] = ()) -> str:
    """One action, uniformly at random among those this root has not had yet (`used`; all of
    them again once every one was used), from an RNG seeded by (seed, root, iteration): a
    replay of the same retry picks the same action, other roots and iterations differ."""
    if not actions:
        raise ValueError("no actions to choose from")
    unused = [action for action in actions if action not in used] or list(actions)
    rng = random.Random(f"{seed}\x1f{root_id}\x1f{iteration}")  # str seeds hash stably across runs
    return unused[rng.randrange(len(unused))]


def parse(text: str, *, original: str, copied_from: frozenset[str] = frozenset()) -> str | ParseFailure:
    """The improved instruction, exactly as the model wrote it.

    With a label (`Improved Instruction:` in any case, bold, `#...#`, a heading, `New
    instruction:`) the value is what follows the last label with a usable value: the rest of
    its line and the lines under it, an input block after a colon included, up to commentary
    ("Explanation:"), closing remarks or the prompt's own lines echoed. Without a label the
    whole answer is the instruction once a preamble line ("Here is the harder version:") and
    closing remarks are gone; a second paragraph that is neither an input nor a closing
    remark leaves it ambiguous, and it fails. Refusals, echoes of the prompt, an
    instruction identical to the input and a copy of an example's answer (`copied_from`)
    fail too, so they are asked again.
    """
    if not text.strip():
        return ParseFailure("empty answer", text)
    labels = list(_IMPROVED.finditer(text))
    if labels:
        values = [_value_after(text, label.end()) for label in reversed(labels)]
        candidate = next((v for v in values if v and not is_placeholder(v)), None)
        if candidate is None:
            return ParseFailure("'Improved Instruction:' without a value", text)
    else:
        found = _unlabelled(text)
        if isinstance(found, ParseFailure):
            return ParseFailure(found.reason, text)
        candidate = found
    if REFUSAL.match(candidate):
        return ParseFailure("a refusal, not an instruction", text)
    if not has_letters(candidate) or word_count(candidate) < 2:
        return ParseFailure("improved instruction too short", text)
    if normalise(candidate) == normalise(original):
        return ParseFailure("improved instruction identical to the input", text)
    if normalise(candidate) in copied_from:
        return ParseFailure("improved instruction copied from the prompt's examples", text)
    return candidate


def spent_before_next(scored: ScoredPair) -> cost.ByPurpose:
    """What the root had spent when this scored pair was sent back: what its instruction
    inherited, the call that made it (tailor; a basic instruction's decode calls are in its
    share already), and this iteration's answers and judge passes."""
    inst = scored.instruction
    own = cost.by_purpose(inst.llm_calls) if inst.iteration > 1 else {}
    return cost.combine(inst.upstream_cost, own, cost.by_purpose(scored.llm_calls))


def _value_after(text: str, start: int) -> str:
    lines = text[start:].split("\n")
    body = []
    for line in lines[1:]:
        if _ECHO_STOP.match(line):
            break
        body.append(line)
    first = "" if _ECHO_STOP.match(lines[0]) else lines[0]
    return _unwrapped(body_text(first, body, last=True).text)


def _unlabelled(text: str) -> str | ParseFailure:
    if _ECHO.search(text):
        return ParseFailure("no 'Improved Instruction:' label and the prompt echoed", text)
    lines = _FENCE_LINE.sub("", text).strip().split("\n")
    # preamble paragraphs ("Sure!", "Here is a more challenging version:") before the instruction
    while lines:
        paragraph_end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
        paragraph = " ".join(line.strip() for line in lines[:paragraph_end])
        _, colon, tail = paragraph.partition(":")
        if PREAMBLE.match(paragraph) and paragraph_end == 1 and colon and tail.strip() and "\n" not in paragraph:
            lines = [tail.strip(), *lines[1:]]  # "Here is the harder version: <instruction>"
            break
        if not PREAMBLE.match(paragraph) or paragraph_end > 2:
            break
        lines = lines[paragraph_end:]
        while lines and not lines[0].strip():
            lines.pop(0)
    if not lines:
        return ParseFailure("no 'Improved Instruction:' label and no instruction", text)
    found = body_text(lines[0], lines[1:], last=True)
    if any(not starts_closing_remark(block) for block in found.left_out):
        return ParseFailure("no 'Improved Instruction:' label and not a single paragraph", text)
    return _unwrapped(found.text)


def _unwrapped(value: str) -> str:
    return unwrap_quotes(unwrap_emphasis(value))
