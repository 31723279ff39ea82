"""The chat style: answers as strong chat models write them: a preamble, markdown around the
items, closing remarks, and instructions that hold code spans, `__dunder__` names, maths, quotes
and an input block after a colon. The instruction texts are pure functions of the prompt
(`chat_decode_instructions`, `chat_tailored_instruction`) and the replies are built from them,
so a test can compare what the pipeline kept with what the double meant, verbatim. Pure
functions, no I/O."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from llm.double.choices import (
    _ANSWER_SENTENCES,
    DEFAULT_INSTRUCTION,
    _encode_lines,
    _pick,
    _rubrics_asked,
    _Subject,
    _subject,
    augment_sensible,
    encode_fields,
    stable_hash,
)
from llm.double.prompts import _augment_asked, _decode_asked, _instruction_in

# A sentence each, added by tailor; none says "numbered list" (a marker of decode prompts).
_CHAT_CONSTRAINTS = (
    "Include a worked example with real numbers.",
    "Keep the answer under 200 words.",
    "Compare two approaches and say which one you would pick.",
    "State every assumption you make.",
    "Explain the trade-offs of each choice.",
    "Give the answer as a step-by-step plan.",
    "Handle the case where the budget is cut in half.",
    "Justify each step with the rule or formula it relies on.",
)
_CHAT_NOTES = (
    "We have booked the room {place} for {day}, but half of the volunteers cannot come before {hour} o'clock, "
    "so everything has to start later than we hoped.",
    "The last plan in {city} ran {days} days over and cost {extra} euros more than agreed; this time every change "
    "must be approved by the whole team first.",
    "Nobody here has done this before, so keep it simple, say what each step costs, and tell us what to skip "
    "if the money runs out in {city}.",
    "Our contact {place} says the deadline is {day} at {hour} o'clock sharp, and that late work will not be paid.",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_ANSWER_POINTS = (
    ("Start from the constraints", _ANSWER_SENTENCES[0]),
    ("Break it down", _ANSWER_SENTENCES[1]),
    ("State your assumptions", _ANSWER_SENTENCES[2]),
    ("Measure before optimising", _ANSWER_SENTENCES[3]),
    ("Work through an example", _ANSWER_SENTENCES[4]),
    ("Check the result", _ANSWER_SENTENCES[5]),
    ("Weigh the trade-offs", _ANSWER_SENTENCES[6]),
    ("Keep it structured", _ANSWER_SENTENCES[7]),
)
_ANSWER_HEADINGS = ("A practical approach", "How to go about it", "A step-by-step plan", "The short version")
_ANSWER_CLOSINGS = (
    "I hope this helps! Let me know if you would like more detail on any step.",
    "If you share more about your situation, I can tailor this further.",
    "Happy to expand on any of these points.",
)


@dataclass(frozen=True)
class _ChatInstruction:
    """One instruction of a chat decode answer: its bold title (wrapping, not text), its first
    line, and the input block after that line's colon (or none)."""

    title: str
    head: str
    block: str = ""
    block_kind: str = ""  # "quote", "fence", "table" or "bullets"

    @property
    def text(self) -> str:
        """The instruction as the double means it: a list right under its line, any other
        input block after a blank line."""
        if not self.block:
            return self.head
        gap = "\n" if self.block_kind == "bullets" else "\n\n"
        return f"{self.head}{gap}{self.block}"


def _core(s: _Subject) -> str:
    task = s.task[0].lower() + s.task[1:]
    use_case = s.use_case[0].lower() + s.use_case[1:] if s.use_case else "general assistance"
    return f"In the context of {use_case}, {task} {s.place} in {s.city} {s.audience}, drawing on {s.drawing_on}"


def _ident(city: str) -> str:
    return re.sub(r"[^A-Za-z]", "", unicodedata.normalize("NFKD", city)) or "Team"


def _wording(r: int, *options: str) -> str:
    """One of a flavour's wordings, drawn from high bits of `r` (its numbers use the low ones)."""
    return options[(r >> 40) % len(options)]


def _class_script(s: _Subject, r: int) -> _ChatInstruction:
    ident = _ident(s.city)
    head = f"{_core(s)}. " + _wording(
        r,
        "The team's planning script is below: explain what its `__init__` and `__repr__` methods do, "
        "then add a `__len__` method that counts the items:",
        "Here is the class the staff use: walk through its `__init__` and `__repr__`, and write the "
        "`__len__` it is missing so that `len(plan)` works:",
    )
    code = [
        "```python",
        f"class {ident}Plan:",
        f"    def __init__(self, limit={100 + r % 900}):",
        "        self.limit = limit",
        "        self.items = []",
        "",
        "    def __repr__(self):",
        f'        return f"{ident}Plan(limit={{self.limit}}, items={{len(self.items)}})"',
        "```",
    ]
    return _ChatInstruction(f"Planning script for {s.city}", head, "\n".join(code), "fence")


def _organiser_note(s: _Subject, r: int) -> _ChatInstruction:
    head = f"{_core(s)}. " + _wording(
        r,
        f"Assume the budget is 2**10 - 3**4 euros and read this note from the organiser in {s.city}:",
        f"Take 2**10 - 3**4 euros as the whole budget, and account for what the coordinator in {s.city} wrote:",
    )
    note = _CHAT_NOTES[r % len(_CHAT_NOTES)].format(
        place=s.place,
        city=s.city,
        day=_DAYS[r // 7 % len(_DAYS)],
        hour=8 + r // 11 % 4,
        days=2 + r // 13 % 9,
        extra=100 + r // 17 % 40 * 25,
    )
    return _ChatInstruction(f"Organiser's note from {s.city}", head, f'"{note}"', "quote")


def _scoring_table(s: _Subject, r: int) -> _ChatInstruction:
    head = f"{_core(s)}. " + _wording(
        r,
        "Rank the options in the table by the score $s = x^2 + y^2$, where $x$ is the cost rating "
        "and $y$ the time rating, and say which one you would choose:",
        "Score both options with $s = \\sqrt{x^2 + y^2}$ (cost rating $x$, time rating $y$) and recommend one:",
    )
    a, b, c, d = (1 + r // 9**j % 9 for j in range(4))
    rows = [
        "| Option | Cost rating ($x$) | Time rating ($y$) |",
        "| --- | --- | --- |",
        f"| {s.city} plan A | {a} | {b} |",
        f"| {s.city} plan B | {c} | {d} |",
    ]
    return _ChatInstruction(f"Scoring the {s.city} options", head, "\n".join(rows), "table")


def _three_points(s: _Subject, r: int) -> _ChatInstruction:
    head = f"{_core(s)}. " + _wording(
        r,
        "Cover the **three** points below, one short paragraph each:",
        "Answer **each** of these questions in two or three sentences:",
    )
    points = [
        f"- what it would cost {s.place}",
        f"- how long it would take in {s.city}",
        f"- the one risk you would watch most closely, and why it matters {s.audience}",
    ]
    return _ChatInstruction(f"Three points for {s.city}", head, "\n".join(points), "bullets")


def _entry_point(s: _Subject, r: int) -> _ChatInstruction:
    head = f"{_core(s)}. " + _wording(
        r,
        f"Sketch it as a small Python script for the team in {s.city}, and explain why the "
        '`if __name__ == "__main__":` guard matters when another module imports it.',
        f"Turn it into a command-line tool for {s.city} and say what `__main__.py` and "
        "`__name__` have to do with running it as `python -m plan`.",
    )
    return _ChatInstruction(f"A script for {s.city}", head)


def _running_costs(s: _Subject, r: int) -> _ChatInstruction:
    budget, rate, base = 500 + r % 20 * 50, 20 + r // 20 % 8 * 5, 100 + r // 160 % 5 * 50
    head = f"{_core(s)}. " + _wording(
        r,
        f"With ${budget:,} to spend and costs that grow as $c(t) = {rate}t + {base}$ after $t$ months, "
        'say in which month the money runs out, and call that month the "break point".',
        f"If the monthly cost is $c(t) = {base} + {rate}t$ dollars and only ${budget:,} is available, find the "
        "last month that can be paid for and label it 'the final month'.",
    )
    return _ChatInstruction(f"Running costs in {s.city}", head)


def _snippet(s: _Subject, r: int) -> _ChatInstruction:
    var = _ident(s.city).casefold() + "_total"
    head = f"{_core(s)}. " + _wording(
        r,
        "Explain what this snippet prints and why the two lines differ:",
        "Before running it, predict the output of the following code:",
    )
    code = [
        "```python",
        f"{var} = {10 + r % 90}  # {s.city}",
        f"print(2**10 - 3**4, {var} ** 2)",
        f'print(f"{{{var}=}}", {var} // 3)',
        "```",
    ]
    return _ChatInstruction(f"Snippet check for {s.city}", head, "\n".join(code), "fence")


_FLAVOURS = (_class_script, _organiser_note, _scoring_table, _three_points, _entry_point, _running_costs, _snippet)


def _chat_items(prompt: str) -> list[tuple[int, _ChatInstruction]]:
    """(layout, instruction) of each item of a chat decode answer. Consecutive items get
    consecutive flavours, so a few items of one metadata already show several kinds of input."""
    n, use_case, skills, topic = _decode_asked(prompt)
    first = stable_hash(topic, "flavour")
    out = []
    for i in range(1, n + 1):
        flavour = _FLAVOURS[(first + i) % len(_FLAVOURS)]
        item = flavour(_subject(topic, i, skills, use_case), stable_hash(topic, str(i), "numbers"))
        out.append((stable_hash(topic, str(i), "layout") % 3, item))
    return out


def chat_decode_instructions(prompt: str) -> list[str]:
    """The instructions a chat-style decode answer to `prompt` (as `classify_text` gives it)
    holds, exactly as meant: what a parser that keeps instructions verbatim must return."""
    return [item.text for _, item in _chat_items(prompt)]


def chat_decode_reply(prompt: str) -> str:
    """A preamble, the numbered items with bold titles (`1. **Title:** text`, or a bold title
    line with the text indented below it), a closing remark."""
    n, use_case, _, _ = _decode_asked(prompt)
    parts = [f"Sure! Here are {n} instructions for {use_case}:"]
    parts += [_present(i, layout, item) for i, (layout, item) in enumerate(_chat_items(prompt), start=1)]
    parts.append("Let me know if you'd like more instructions, or a different mix of topics and difficulty!")
    return "\n\n".join(parts)


def _present(i: int, layout: int, item: _ChatInstruction) -> str:
    """Layout 0: title and text on the item's line, an input block unindented (a list
    indented); 1: a bold title line, the whole text indented below it; 2: title and text on
    the item's line, the input block indented under the item."""
    head, *rest = item.text.split("\n")
    if layout == 1:
        return "\n".join([f"{i}. **{item.title}**", *(_indent(line) for line in [head, *rest])])
    body = rest if layout == 0 and item.block_kind != "bullets" else [_indent(line) for line in rest]
    return "\n".join([f"{i}. **{item.title}:** {head}", *body])


def _indent(line: str) -> str:
    return f"   {line}" if line.strip() else ""


def chat_tailored_instruction(prompt: str) -> str:
    """The harder instruction a chat-style answer to a tailor `prompt` (as `classify_text`
    gives it) means: the instruction's first line with a constraint added (before the sentence
    that introduces an input, so the colon still does), then the rest of it unchanged, so an
    input block travels through every iteration."""
    base = _instruction_in(prompt) or DEFAULT_INSTRUCTION
    constraint = _chat_constraint(prompt, base)
    first, newline, rest = base.partition("\n")
    if first.endswith(":"):
        cut = first.rfind(". ") + 2 if ". " in first else 0
        first = f"{first[:cut]}{constraint} {first[cut:]}"
    else:
        first = f"{first} {constraint}"
    return f"{first}{newline}{rest}"


def _chat_constraint(prompt: str, base: str) -> str:
    unused = [c for c in _CHAT_CONSTRAINTS if c not in base] or list(_CHAT_CONSTRAINTS)
    return unused[stable_hash(prompt, "chat constraint") % len(unused)]


def chat_tailor_reply(prompt: str) -> str:
    """`**Improved Instruction:** <text>`, a blank line, `**Why this is harder:** ...`."""
    text = chat_tailored_instruction(prompt)
    constraint = _chat_constraint(prompt, _instruction_in(prompt) or DEFAULT_INSTRUCTION)
    keeps = " and its input" if "\n" in text else ""
    why = (
        f"It keeps the original task{keeps} but adds a requirement the answer has to meet: "
        f"{constraint[0].lower()}{constraint[1:]}"
    )
    return f"**Improved Instruction:** {text}\n\n**Why this is harder:** {why}"


def chat_rubric_pairs(prompt: str) -> list[tuple[str, str]]:
    """The (rubric, action) pairs a chat-style answer to a rubrics `prompt` holds."""
    return [(rubric, action) for _, rubric, action in _rubrics_asked(prompt)]


def chat_rubrics_reply(prompt: str) -> str:
    asked = _rubrics_asked(prompt)
    parts = [
        f"Here are {len(asked)} rubrics for judging how challenging such an instruction is, "
        "each with an action that makes it harder:"
    ]
    parts += [f"**Rubric {i}:** {rubric}\n**Action {i}:** {action}" for i, rubric, action in asked]
    parts.append("Applied one at a time, these actions raise the difficulty step by step.")
    return "\n\n".join(parts)


def chat_encode_reply(prompt: str) -> str:
    """A preamble line, then `**Use case:** ...`, `**Skills:** ...` (and the rich fields when
    asked), with the metadata `encode_fields` gives."""
    lines = [f"**{label}:** {value}" for label, value in _encode_lines(encode_fields(prompt))]
    return "Here is the analysis of the instruction:\n\n" + "\n".join(lines)


def chat_augment_reply(prompt: str) -> str:
    """The verdict in bold, then a sentence saying why, as chat models answer a yes/no question."""
    use_case, skills = _augment_asked(prompt)
    if augment_sensible(use_case, skills):
        return f"**Yes.** A user asking for {use_case.lower()} could well need {', '.join(skills)}."
    return f"**No.** {', '.join(skills).capitalize()} rarely come up together in {use_case.lower()}."


def chat_answer_reply(prompt: str, model: str) -> str:
    """A markdown answer: a heading, a sentence, a numbered list with bold labels, a closing
    line; it depends on the model, so the strong and the target answers differ."""
    count = 3 + stable_hash(prompt, model, "count") % 3
    start = stable_hash(prompt, model, "start")
    points = [_ANSWER_POINTS[(start + j) % len(_ANSWER_POINTS)] for j in range(count)]
    lines = [f"## {_pick(_ANSWER_HEADINGS, prompt, model, 'heading')}", "", "Here is how I would approach it:", ""]
    lines += [f"{j}. **{label}:** {sentence}" for j, (label, sentence) in enumerate(points, start=1)]
    lines += ["", _pick(_ANSWER_CLOSINGS, prompt, model, "closing")]
    return "\n".join(lines)
