"""decode: metadata -> N basic instructions (iteration 1) and, once per metadata, the
rubrics with matching actions that tailor later uses to make them harder (the paper's
Figures 8 and 9). Both generations are zero-shot on the strong model and run concurrently.

With `pipeline.rich_metadata` on, the instructions prompt (decode_rich.txt) also gives the
metadata's domain, difficulty and format constraints for the instructions to honour; the
rubrics prompt stays the paper's, since tailor's actions make instructions harder anyway.
"""

from __future__ import annotations

import re
from functools import partial

from agents.base import Emit, ParseFailure, StageContext, ask, load_prompt
from agents.parsing import (
    PREAMBLE,
    ChatPrompt,
    as_data,
    dedupe,
    gather_or_fail,
    has_letters,
    is_placeholder,
    list_items,
    normalise,
    strip_emphasis,
    unquote,
    word_count,
)
from llm.base import Message
from schemas import Instruction, LLMCall, Metadata, MetadataSummary, derive_id

PROMPT = ChatPrompt.parse(load_prompt("decode"))
RICH_PROMPT = ChatPrompt.parse(load_prompt("decode_rich"))
RUBRICS_PROMPT = ChatPrompt.parse(load_prompt("rubrics"))


def _example_items(prompt: ChatPrompt) -> frozenset[str]:
    """The instructions the prompt's examples list: an answer repeating one copied it, not
    wrote it for this metadata (small models do copy the last example)."""
    return frozenset(normalise(item) for _, answer in prompt.examples for item in list_items(answer))


_EXAMPLE_ITEMS = _example_items(PROMPT)
_RICH_EXAMPLE_ITEMS = _example_items(RICH_PROMPT)
# What the rich prompt says for a field encode could not fill.
ANY_DOMAIN, ANY_DIFFICULTY, NO_CONSTRAINTS = "any", "any", "none"

_ITEM_LABEL = re.compile(r"^(?:instruction|question|prompt|task)\s*:\s*", re.I)
_ANSWER_LINE = re.compile(r"^(?:answer|response|output|solution)\s*:", re.I)
# Capitalised only: "Answer:" after an instruction starts an answer; "the answer: 4" may not.
# Not "Output:", which coding instructions use for their example ("Input: [3, 1] Output: [1, 3]").
_INLINE_ANSWER = re.compile(r"\s(?:Answer|Response|Solution)\s*:.*$", re.S)
_METADATA_ECHO = re.compile(r"^(?:use[ _-]*case|skills?|intended use|required abilities)\s*[:=]", re.I)
_RUBRIC_LINE = re.compile(
    r"^[\s>#*•+\-]*(?:\d{1,2}[.)]\s*)?"
    r"(?:(rubric|criterion|criteria)|(?:improving\s+|improvement\s+|corresponding\s+)?(action))"
    r"\s*#?\s*(\d{1,2})?\s*(?:\([^)\n]*\))?\s*(?:[:.)\-–]|$)\s*(.*)$",
    re.I,
)


def build_prompt(metadata: MetadataSummary, *, n: int, rich: bool = False) -> list[Message]:
    """System message with the format, few-shot examples, then the metadata as data; with
    `rich`, the metadata's domain, difficulty and format constraints too."""
    fields = {"n": n, "use_case": as_data(metadata.use_case), "skills": as_data(", ".join(metadata.skills))}
    if not rich:
        return PROMPT.messages(**fields)
    return RICH_PROMPT.messages(
        **fields,
        domain=as_data(metadata.domain or ANY_DOMAIN),
        difficulty=metadata.difficulty or ANY_DIFFICULTY,
        format_constraints=as_data("; ".join(metadata.format_constraints) or NO_CONSTRAINTS),
    )


def parse(text: str, *, n: int, rich: bool = False) -> tuple[str, ...] | ParseFailure:
    """Up to `n` instructions from a numbered (`1.`, `1)`, `(1)`, `Instruction 1:`) or, when
    nothing is numbered, bulleted list. Drops empty and duplicate items, preambles ("Here
    are 10 instructions:"), echoed metadata, placeholders and answers (an `Answer:` line or
    the text after an inline `Answer:`), and instructions copied from the prompt's examples.
    Text outside the list is ignored. `rich` says which prompt's examples were shown."""
    examples = _RICH_EXAMPLE_ITEMS if rich else _EXAMPLE_ITEMS
    items, copied = [], 0
    for raw in list_items(text):
        item = _INLINE_ANSWER.sub("", _ITEM_LABEL.sub("", raw, count=1))
        item = unquote(" ".join(item.split()))
        if normalise(item) in examples:
            copied += 1
        elif _is_instruction(item):
            items.append(item)
    items = dedupe(items)
    if not items:
        reason = (
            "only instructions copied from the prompt's examples" if copied else "no instruction in a numbered list"
        )
        return ParseFailure(reason, text)
    return tuple(items[:n])


def build_rubrics_prompt(metadata: MetadataSummary, *, k: int) -> list[Message]:
    """System message with the format, few-shot examples, then the metadata as data."""
    return RUBRICS_PROMPT.messages(k=k, use_case=as_data(metadata.use_case), skills=as_data(", ".join(metadata.skills)))


def parse_rubrics(text: str, *, k: int) -> tuple[tuple[str, str], ...] | ParseFailure:
    """Up to `k` (rubric, action) pairs from `Rubric i:` / `Action i:` lines.

    Labels may carry markdown, bullets, list numbers, a parenthesised name, `Criterion` for
    `Rubric` and `Improving action` for `Action`; a value may continue on the next lines.
    Numbered labels pair by number, unnumbered ones in order of appearance. A rubric
    without an action is dropped (tailor needs the action), as are echoed `<rubric>` slots.
    """
    rubrics: dict[int, str] = {}
    actions: dict[int, str] = {}
    for kind, number, value in _labelled_values(text):
        table = rubrics if kind == "rubric" else actions
        table.setdefault(number if number is not None else len(table) + 1, value)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, rubric in rubrics.items():
        if key in actions and rubric.casefold() not in seen:
            seen.add(rubric.casefold())
            pairs.append((rubric, actions[key]))
    if not pairs:
        return ParseFailure("no 'Rubric i:' line with a matching 'Action i:' line", text)
    return tuple(pairs[:k])


def build_instructions(
    metadata: Metadata, texts: tuple[str, ...], pairs: tuple[tuple[str, str], ...], calls: tuple[LLMCall, ...]
) -> list[Instruction]:
    """The basic instructions of one metadata. The decode and rubrics calls serve all of
    them, so they ride on the index-0 record only: summing `llm_calls` over the basic topic
    then counts each call once."""
    rubrics = tuple(rubric for rubric, _ in pairs)
    actions = tuple(action for _, action in pairs)
    out = []
    for index, text in enumerate(texts):
        instruction_id = derive_id("inst", metadata.id, index)
        out.append(
            Instruction(
                id=instruction_id,
                seed_id=metadata.seed_id,
                parent_id=metadata.id,
                root_id=instruction_id,
                metadata_id=metadata.id,
                iteration=1,
                index=index,
                siblings=len(texts),
                text=text,
                metadata=metadata.metadata,
                rubrics=rubrics,
                actions=actions,
                llm_calls=calls if index == 0 else (),
                seed_text=metadata.seed_text,
            )
        )
    return out


async def process(metadata: Metadata, ctx: StageContext) -> list[Emit]:
    p = ctx.pipeline
    decoded, rubrics = await gather_or_fail(
        ask(
            ctx.strong,
            build_prompt(metadata.metadata, n=p.instructions_per_metadata, rich=p.rich_metadata),
            partial(parse, n=p.instructions_per_metadata, rich=p.rich_metadata),
            purpose="decode",
            temperature=p.generation_temperature,
            max_tokens=p.max_tokens,
            attempts=p.parse_attempts,
        ),
        ask(
            ctx.strong,
            build_rubrics_prompt(metadata.metadata, k=p.rubrics_per_metadata),
            partial(parse_rubrics, k=p.rubrics_per_metadata),
            purpose="rubrics",
            temperature=p.generation_temperature,
            max_tokens=p.max_tokens,
            attempts=p.parse_attempts,
        ),
    )
    instructions = build_instructions(metadata, decoded.value, rubrics.value, (decoded.call, rubrics.call))
    return [Emit("decoded", instruction) for instruction in instructions]


def _is_instruction(item: str) -> bool:
    if not has_letters(item) or word_count(item) < 2 or is_placeholder(item):
        return False
    if _ANSWER_LINE.match(item) or _METADATA_ECHO.match(item):
        return False
    if PREAMBLE.match(item) and (item.endswith(":") or "instruction" in item.casefold()):
        return False
    return not (item.endswith(":") and word_count(item) <= 3)  # a heading such as "Instructions:"


def _labelled_values(text: str) -> list[tuple[str, int | None, str]]:
    """(kind, number, value) of each labelled line, values continued over following lines."""
    found: list[list] = []
    open_value = False
    for line in strip_emphasis(text).splitlines():
        match = _RUBRIC_LINE.match(line)
        if match:
            kind = "rubric" if match.group(1) else "action"
            number = int(match.group(3)) if match.group(3) else None
            found.append([kind, number, match.group(4).strip()])
            open_value = True
        elif not line.strip():
            open_value = bool(found) and not found[-1][2]  # a label alone may have its value below
        elif open_value:
            found[-1][2] = f"{found[-1][2]} {line.strip()}".strip()
    out = []
    for kind, number, value in found:
        value = unquote(value)
        if value and has_letters(value) and not is_placeholder(value):
            out.append((kind, number, value))
    return out
