"""decode: metadata -> exactly N basic instructions (iteration 1) and, once per metadata,
exactly k rubrics with matching actions that tailor later uses to make them harder (the
paper's Figures 8 and 9). Both run concurrently on the strong model; when an answer brings
fewer usable items than asked, the missing ones are asked for again (up to `parse_attempts`
asks). The instructions are kept exactly as the model wrote them (`agents/instruction_text.py`).

With `pipeline.rich_metadata` on, the instructions prompt (decode_rich.txt) also gives the
metadata's domain, difficulty and format constraints for the instructions to honour; the
rubrics prompt stays the paper's, since tailor's actions make instructions harder anyway.
"""

from __future__ import annotations

import re
from functools import partial

from agents import cost
from agents.base import Budget, Emit, ParseFailure, Stage, StageContext, ask_for_items
from agents.instruction_text import clean_item, list_items
from agents.parsing import (
    PREAMBLE,
    as_data,
    dedupe,
    gather_or_fail,
    has_letters,
    is_list_item,
    is_placeholder,
    normalise,
    strip_emphasis,
    strip_marker,
    unquote,
    unwrap_emphasis,
    word_count,
)
from agents.prompt_sets import PAPER, ChatPrompt, PromptSet
from llm.base import Message
from schemas import Instruction, LLMCall, Metadata, MetadataSummary, PromptSetRef, derive_id, made_from


async def process(metadata: Metadata, ctx: StageContext) -> list[Emit]:
    p, prompts = ctx.pipeline, ctx.prompts
    copied_from = example_items(prompts.decode_rich if p.rich_metadata else prompts.decode)
    decoded, rubrics = await gather_or_fail(
        ask_for_items(
            ctx.strong,
            lambda missing: build_prompt(metadata.metadata, n=missing, rich=p.rich_metadata, prompts=prompts),
            partial(_parse_up_to, copied_from=copied_from),
            want=p.instructions_per_metadata,
            key=normalise,
            purpose="decode",
            budget=Budget.generation(p),
        ),
        ask_for_items(
            ctx.strong,
            lambda missing: build_rubrics_prompt(metadata.metadata, k=missing, prompts=prompts),
            _parse_rubrics_up_to,
            want=p.rubrics_per_metadata,
            key=lambda pair: pair[0].casefold(),
            purpose="rubrics",
            budget=Budget.generation(p),
        ),
    )
    calls = (*decoded.calls, *rubrics.calls)
    instructions = build_instructions(metadata, decoded.value, rubrics.value, calls, prompts.ref)
    return [Emit("decoded", instruction) for instruction in instructions]


STAGE = Stage(
    name="decode",
    inputs=("metadata",),
    outputs=("decoded",),
    process=process,
    calls={"decode": "strong", "rubrics": "strong"},
)


def example_items(prompt: ChatPrompt) -> frozenset[str]:
    """The instructions the prompt's examples list: an answer repeating one copied it, not
    wrote it for this metadata (small models do copy the last example)."""
    return frozenset(normalise(clean_item(item)) for _, answer in prompt.examples for item in list_items(answer))


# What the rich prompt says for a field encode could not fill.
ANY_DOMAIN, ANY_DIFFICULTY, NO_CONSTRAINTS = "any", "any", "none"

_ANSWER_LINE = re.compile(r"^(?:answer|response|output|solution)\s*:", re.I)
_METADATA_ECHO = re.compile(r"^(?:use[ _-]*case|skills?|intended use|required abilities)\s*[:=]", re.I)
_RUBRIC_LINE = re.compile(
    r"^(?P<prefix>[ \t>#*_•+\-]*(?:\d{1,2}[.)][ \t]*)?(?:\*\*|__|\*)?)[ \t]*"
    r"(?:(?P<rubric>rubric|criterion|criteria)|(?:improving[ \t]+|improvement[ \t]+|corresponding[ \t]+)?(?P<action>action))"
    r"[ \t]*#?[ \t]*(?P<number>\d{1,2})?[ \t]*(?:\([^)\n]*\))?[ \t]*(?:\*\*|__|\*)?[ \t]*(?:[:.)\-–]|$)[ \t]*(?P<value>.*)$",
    re.I,
)
# "Rubrics:" and "Actions:" headings over two numbered lists (the paper's Figure 9 lists them so).
_SECTION_HEADING = re.compile(
    r"^[ \t#*_]*(?:(?P<rubric>rubrics?|criteria)|(?P<action>(?:improving[ \t]+)?actions?))[ \t*_]*:?[ \t*_]*$", re.I
)
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t:|-]+\|?[ \t]*$")


def build_prompt(metadata: MetadataSummary, *, n: int, rich: bool = False, prompts: PromptSet = PAPER) -> list[Message]:
    """The set's decode prompt (examples only in the small-model set), the metadata as data;
    with `rich`, the metadata's domain, difficulty and format constraints too."""
    fields = {"n": n, "use_case": as_data(metadata.use_case), "skills": as_data(", ".join(metadata.skills))}
    if not rich:
        return prompts.decode.messages(**fields)
    return prompts.decode_rich.messages(
        **fields,
        domain=as_data(metadata.domain or ANY_DOMAIN),
        difficulty=metadata.difficulty or ANY_DIFFICULTY,
        format_constraints=as_data("; ".join(metadata.format_constraints) or NO_CONSTRAINTS),
    )


def parse(text: str, *, n: int, copied_from: frozenset[str] = frozenset()) -> tuple[str, ...] | ParseFailure:
    """Up to `n` instructions from a numbered (`1.`, `1)`, `(1)`, `Instruction 1:`) or, when
    nothing is numbered, bulleted list, each exactly as the model wrote it, without its
    wrapping (see `agents/instruction_text.py`). Drops empty and duplicate items, preambles
    ("Here are 10 instructions:"), echoed metadata, placeholders, answers (an `Answer:` line
    or the text after an inline `Answer:`), and instructions copied from the prompt's
    examples (`copied_from`, as `example_items` gives them)."""
    items, copied = [], 0
    for raw in list_items(text):
        item = clean_item(raw)
        if normalise(item) in copied_from:
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


def build_rubrics_prompt(metadata: MetadataSummary, *, k: int, prompts: PromptSet = PAPER) -> list[Message]:
    """The set's rubrics prompt (examples only in the small-model set), the metadata as data."""
    return prompts.rubrics.messages(
        k=k, use_case=as_data(metadata.use_case), skills=as_data(", ".join(metadata.skills))
    )


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
    metadata: Metadata,
    texts: tuple[str, ...],
    pairs: tuple[tuple[str, str], ...],
    calls: tuple[LLMCall, ...],
    prompts: PromptSetRef | None = None,
) -> list[Instruction]:
    """The basic instructions of one metadata. The decode and rubrics calls serve all of
    them, so they ride on the index-0 record only (summing `llm_calls` over the topic counts
    each call once), and each instruction's `upstream_cost` carries its share of them and of
    the encode call that made the metadata."""
    rubrics = tuple(rubric for rubric, _ in pairs)
    actions = tuple(action for _, action in pairs)
    share = cost.by_purpose((*metadata.llm_calls, *calls), share=1 / len(texts))
    out = []
    for index, text in enumerate(texts):
        instruction_id = derive_id("inst", metadata.id, index)
        out.append(
            Instruction(
                id=instruction_id,
                **made_from(metadata),
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
                prompts=prompts,
                upstream_cost=share,
            )
        )
    return out


def _parse_up_to(text: str, n: int, *, copied_from: frozenset[str]) -> tuple[str, ...] | ParseFailure:
    return parse(text, n=n, copied_from=copied_from)


def _parse_rubrics_up_to(text: str, k: int) -> tuple[tuple[str, str], ...] | ParseFailure:
    return parse_rubrics(text, k=k)


def _is_instruction(item: str) -> bool:
    if not has_letters(item) or word_count(item) < 2 or is_placeholder(item):
        return False
    if _ANSWER_LINE.match(item) or _METADATA_ECHO.match(item):
        return False
    if PREAMBLE.match(item) and (item.endswith(":") or "instruction" in item.casefold()):
        return False
    return not (item.endswith(":") and word_count(item) <= 3)  # a heading such as "Instructions:"


def _labelled_values(text: str) -> list[tuple[str, int | None, str]]:
    """(kind, number, value) of each labelled line, values continued over following lines;
    then, when there are none, the rows of a rubric/action table or two headed lists."""
    found: list[list] = []
    open_value = False
    for line in text.splitlines():
        match = _RUBRIC_LINE.match(line)
        if match:
            kind = "rubric" if match.group("rubric") else "action"
            number = int(match.group("number")) if match.group("number") else None
            found.append([kind, number, _label_value(match.group("prefix"), match.group("value"))])
            open_value = True
        elif not line.strip():
            open_value = bool(found) and not found[-1][2]  # a label alone may have its value below
        elif open_value:
            found[-1][2] = f"{found[-1][2]} {unwrap_emphasis(line.strip())}".strip()
    values = [(kind, number, value) for kind, number, value in found]
    if not any(kind == "action" for kind, _, _ in values):
        values = _table_values(text) or _section_values(text) or values
    out = []
    for kind, number, value in values:
        value = unquote(unwrap_emphasis(value))
        if value and has_letters(value) and not is_placeholder(value):
            out.append((kind, number, value))
    return out


def _label_value(prefix: str, value: str) -> str:
    """A label's value without the emphasis the label opened: `**Rubric 1:** x`, `**Rubric 1: x**`."""
    marks = prefix.strip(" \t>#•+-0123456789.)")
    value = value.strip()
    if marks and value.startswith(marks):
        return value[len(marks) :].strip()
    if marks and value.endswith(marks) and marks not in value[: -len(marks)]:
        return value[: -len(marks)].strip()
    return value


def _table_values(text: str) -> list[tuple[str, int | None, str]]:
    """A markdown table with a rubric column and an action column."""
    rows = [line for line in text.splitlines() if line.strip().startswith("|") and not _TABLE_RULE.match(line)]
    if not rows:
        return []
    header = [strip_emphasis(cell).strip().casefold() for cell in rows[0].strip().strip("|").split("|")]
    columns = {kind: next((i for i, cell in enumerate(header) if kind in cell), None) for kind in ("rubric", "action")}
    if columns["rubric"] is None or columns["action"] is None:
        return []
    out: list[tuple[str, int | None, str]] = []
    for number, row in enumerate(rows[1:], start=1):
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        for kind, column in columns.items():
            if column is not None and column < len(cells):
                out.append((kind, number, cells[column]))
    return out


def _section_values(text: str) -> list[tuple[str, int | None, str]]:
    """Items of a list under a "Rubrics:" heading and of one under an "Actions:" heading."""
    out: list[tuple[str, int | None, str]] = []
    section: str | None = None
    counts = {"rubric": 0, "action": 0}
    for line in text.splitlines():
        heading = _SECTION_HEADING.match(line)
        if heading:
            section = "rubric" if heading.group("rubric") else "action"
        elif section is not None and is_list_item(line):
            counts[section] += 1
            out.append((section, counts[section], strip_marker(line)))
    return out if counts["rubric"] and counts["action"] else []
