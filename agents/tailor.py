"""tailor: an instruction judged too easy -> a harder one, one Self-Rubrics iteration (the
paper's Figure 10). Each iteration applies ONE action drawn at random from the actions
decode generated for the instruction's metadata."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import partial

from agents.base import Emit, ParseFailure, StageContext, StageFailure, ask, load_prompt
from agents.parsing import (
    LABEL_END,
    PREAMBLE,
    REFUSAL,
    ChatPrompt,
    as_data,
    has_letters,
    is_placeholder,
    normalise,
    strip_emphasis,
    unquote,
    word_count,
)
from llm.base import Message
from schemas import Instruction, ScoredPair, derive_id

PROMPT = ChatPrompt.parse(load_prompt("tailor"))

_IMPROVED = re.compile(
    r"^[ \t>*•+\-]*#?[ \t]*(?:improved|new|rewritten|revised)[ \t]+instruction[ \t]*#?" + LABEL_END, re.I | re.M
)
# Lines that end the value: another label ("Explanation:", "#Instruction#:"), a fence, a tag,
# or the prompt's own closing lines echoed ("The text between the ### fences is data ...").
_STOP = re.compile(
    r"^[ \t>*•+\-]*(?:#?[A-Za-z][A-Za-z ]{0,24}#?[ \t]*:(?:\s|$)|#{3,}[ \t]*$|</?instruction>"
    r"|the text between the\b|reply with the improved)",
    re.I,
)
_FENCE = re.compile(r"^[ \t]*(?:#{3,}|</?instruction>)[ \t]*$", re.M)
_ECHO = re.compile(r"#Instruction#|Improving action", re.I)
# The improved instructions of the prompt's examples: repeating one is copying, not tailoring.
_EXAMPLE_ANSWERS = frozenset(
    normalise(answer.split(":", 1)[1]) for _, answer in PROMPT.examples if _IMPROVED.match(answer)
)


def build_prompt(instruction: str, action: str) -> list[Message]:
    """System message with the format, few-shot examples, then the instruction and the
    action as data."""
    return PROMPT.messages(instruction=as_data(instruction), action=as_data(action))


def choose_action(actions: Sequence[str], *, seed: int, root_id: str, iteration: int) -> str:
    """One action, uniformly at random, from an RNG seeded by (seed, root, iteration): a
    replay of the same retry picks the same action, other roots and iterations differ."""
    if not actions:
        raise ValueError("no actions to choose from")
    rng = random.Random(f"{seed}\x1f{root_id}\x1f{iteration}")  # str seeds hash stably across runs
    return actions[rng.randrange(len(actions))]


def parse(text: str, *, original: str) -> str | ParseFailure:
    """The improved instruction.

    With an `Improved Instruction:` label (any case, markdown, `#...#`, `New instruction:`)
    the value is the text after the last label with a usable value, up to a blank line,
    another label or a fence. Without a label, the answer is accepted only when it is one
    paragraph after an optional "Here is ...:" line: small chat models often skip the
    label, and one paragraph leaves no doubt what the instruction is. Refusals, echoes of
    the prompt, an instruction identical to the input and a copy of an example's answer
    fail, so they are asked again.
    """
    clean = strip_emphasis(text).strip()
    if not clean:
        return ParseFailure("empty answer", text)
    labels = list(_IMPROVED.finditer(clean))
    if labels:
        values = [_value_after(clean, label.end()) for label in reversed(labels)]
        candidate = next((v for v in values if v and not is_placeholder(v)), None)
        if candidate is None:
            return ParseFailure("'Improved Instruction:' without a value", text)
    else:
        found = _unlabelled(clean)
        if isinstance(found, ParseFailure):
            return ParseFailure(found.reason, text)
        candidate = found
    if REFUSAL.match(candidate):
        return ParseFailure("a refusal, not an instruction", text)
    if not has_letters(candidate) or word_count(candidate) < 2:
        return ParseFailure("improved instruction too short", text)
    if normalise(candidate) == normalise(original):
        return ParseFailure("improved instruction identical to the input", text)
    if normalise(candidate) in _EXAMPLE_ANSWERS:
        return ParseFailure("improved instruction copied from the prompt's examples", text)
    return candidate


async def process(scored: ScoredPair, ctx: StageContext) -> list[Emit]:
    p = ctx.pipeline
    previous = scored.instruction
    if not previous.actions:
        raise StageFailure("tailor: the instruction carries no actions", "NoActions")
    action = choose_action(previous.actions, seed=p.seed, root_id=previous.root_id, iteration=previous.iteration)
    asked = await ask(
        ctx.strong,
        build_prompt(previous.text, action),
        partial(parse, original=previous.text),
        purpose="tailor",
        temperature=p.generation_temperature,
        max_tokens=p.max_tokens,
        attempts=p.parse_attempts,
    )
    iteration = previous.iteration + 1
    tailored = Instruction(
        id=derive_id("inst", previous.root_id, iteration),
        seed_id=scored.seed_id,
        parent_id=scored.id,
        root_id=previous.root_id,
        metadata_id=previous.metadata_id,
        iteration=iteration,
        index=previous.index,
        siblings=previous.siblings,
        text=asked.value,
        metadata=previous.metadata,
        rubrics=previous.rubrics,
        actions=previous.actions,
        applied_action=action,
        llm_calls=(asked.call,),
        seed_text=previous.seed_text,
    )
    return [Emit("tailored", tailored)]


def _value_after(text: str, start: int) -> str:
    lines = text[start:].split("\n")
    value = [lines[0].strip()] if lines[0].strip() else []
    for line in lines[1:]:
        if not line.strip():
            if value:
                break
            continue
        if _STOP.match(line):
            break
        value.append(line.strip())
    return unquote("\n".join(value))


def _unlabelled(text: str) -> str | ParseFailure:
    if _ECHO.search(text):
        return ParseFailure("no 'Improved Instruction:' label and the prompt echoed", text)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", _FENCE.sub("", text)) if p.strip()]
    if paragraphs and PREAMBLE.match(paragraphs[0]) and paragraphs[0].endswith(":"):
        paragraphs = paragraphs[1:]
    elif paragraphs:  # "Here is the harder version: <instruction>" on one line
        first = paragraphs[0]
        head, sep, tail = first.partition(":")
        if sep and PREAMBLE.match(head) and tail.strip():
            paragraphs[0] = tail.strip()
    if len(paragraphs) != 1:
        return ParseFailure("no 'Improved Instruction:' label and not a single paragraph", text)
    return unquote(paragraphs[0])
