"""Helpers the stage parsers share: what LLM formatting noise looks like and how to see past it.

Small models wrap answers in markdown, number or bullet them in several styles, add a
preamble ("Here are 10 instructions:") and sometimes echo the prompt. These helpers strip
that noise; each stage decides what is still a usable answer.
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from agents.base import StageFailure
from llm.base import Message

# Markdown emphasis and inline code carry no meaning in any answer we parse.
_EMPHASIS = re.compile(r"\*\*|__|`")
_PLACEHOLDER = re.compile(r"\s*(?:<[^<>\n]{0,60}>|\.\.\.|…)\s*")
_WORDS = re.compile(r"\w+")
_LETTER = re.compile(r"[^\W\d_]")
# Openers of a preamble or epilogue a model wraps around the real answer.
PREAMBLE = re.compile(
    r"^(?:here\s+(?:are|is)|sure|certainly|okay|ok|of\s+course|below\s+(?:are|is)|the\s+following|"
    r"i\s+(?:have|hope)|these\s+(?:are|instructions))\b",
    re.I,
)
REFUSAL = re.compile(
    r"^(?:i['’]?m\s+(?:sorry|unable)|i\s+am\s+(?:sorry|unable)|sorry\b|i\s+(?:cannot|can['’]?t|can\s+not|won['’]?t)\b|"
    r"as\s+an\s+ai\b|unfortunately\b)",
    re.I,
)
# A list item: "1.", "1)", "(1)", "Instruction 1:", "Question 2 -", or a bullet.
_NUMBERED = re.compile(
    r"^\s*(?:#+\s*)?(?:(?:instruction|question|prompt|task|item)\s*#?\s*\d{1,3}\s*[:.)\-–]"
    r"|\d{1,3}\s*[.)](?!\d)|\(\d{1,3}\))\s*(.*)$",
    re.I,
)
_BULLET = re.compile(r"^\s*[-*•+–]\s+(.*)$")
# Where a label may start: a line (after bullets, numbering, quote or heading marks) or
# right after punctuation, as in "Task: tutoring. Skills: arithmetic".
LABEL_START = r"(?:^[ \t>#*•+\-]*(?:\d{1,2}[.)][ \t]*)?|(?<=[.;,|])[ \t]*)"
# The end of a label: a colon, or a spaced dash ("Use case - tutoring").
LABEL_END = r"[ \t]*\*?[ \t]*(?:[:：=]|[ \t][-–—][ \t])\*?[ \t]*"
_LIST_MARKER = re.compile(r"^\s*(?:[-*•+–]\s+|\(?\d{1,3}[.)](?!\d)\s*|\(\d{1,3}\)\s*)")


def strip_emphasis(text: str) -> str:
    return _EMPHASIS.sub("", text)


def is_list_item(line: str) -> bool:
    return bool(_LIST_MARKER.match(line))


def strip_marker(line: str) -> str:
    """A list item's text without its bullet or number."""
    return _LIST_MARKER.sub("", line, count=1).strip()


def unquote(text: str) -> str:
    text = text.strip()
    pairs = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»"}
    while len(text) >= 2 and text[0] in pairs and text[-1] == pairs[text[0]]:
        text = text[1:-1].strip()
    return text


def is_placeholder(text: str) -> bool:
    """An echoed format slot ("<use case>", "...") rather than a value."""
    return bool(_PLACEHOLDER.fullmatch(text))


def word_count(text: str) -> int:
    return len(_WORDS.findall(text))


def has_letters(text: str) -> bool:
    return bool(_LETTER.search(text))


def normalise(text: str) -> str:
    """What makes two generated items the same: case, white space, end punctuation."""
    return " ".join(text.split()).casefold().rstrip(".!?;:,")


def dedupe(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = normalise(item)
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def as_data(text: str) -> str:
    """Text placed between a prompt's data delimiters, unable to close them early."""
    text = text.replace("</instruction>", "</ instruction>").replace("<instruction>", "< instruction>")
    return re.sub(r"^\s*#{3,}\s*$", "##", text.strip(), flags=re.M)


_SECTION = re.compile(r"^=== *(system|user|example) *===[ \t]*$", re.M)
_ANSWER_RULE = re.compile(r"^--- *answer *---[ \t]*$", re.M)


@dataclass(frozen=True)
class ChatPrompt:
    """A prompt as chat turns: a system message, few-shot example exchanges, then the user
    turn. Small chat models follow a format far more often when they have seen it answered
    in earlier turns than when it is only described.

    The file (agents/prompts/<name>.txt) has sections, each opened by a line of its own;
    text before the first section is a comment:

        === system ===
        What the model is and the answer's format; may use {parameters}.
        === user ===
        The user turn's template: {fields} of data and {parameters}.
        === example ===          (any number of these, in order)
        field: value of one of the user template's fields
        (lines not starting with a field name continue the previous value)
        --- answer ---
        The assistant's answer to that example.

    An example's user turn is the user template filled with the example's fields; fields an
    example leaves out (parameters such as {max_skills}) take the real call's values.
    """

    system: str
    user: str
    examples: tuple[tuple[dict[str, str], str], ...]

    @classmethod
    def parse(cls, text: str) -> ChatPrompt:
        parts = _SECTION.split(text)[1:]  # [kind, body, kind, body, ...]
        sections: dict[str, str] = {}
        examples: list[str] = []
        for kind, body in zip(parts[::2], parts[1::2], strict=True):
            if kind == "example":
                examples.append(body)
            elif kind in sections:
                raise ValueError(f"a chat prompt with two === {kind} === sections")
            else:
                sections[kind] = body.strip()
        if "system" not in sections or "user" not in sections:
            raise ValueError("a chat prompt needs a === system === and a === user === section")
        user = sections["user"]
        names = {name for _, name, _, _ in string.Formatter().parse(user) if name}
        return cls(sections["system"], user, tuple(_example(body, names) for body in examples))

    def messages(self, **values: object) -> list[Message]:
        """The conversation for one call: `values` fill the templates (data already passed
        through `as_data`); examples' own fields take precedence in their turns."""
        out: list[Message] = [{"role": "system", "content": self.system.format(**values)}]
        for fields, answer in self.examples:
            out.append({"role": "user", "content": self.user.format(**{**values, **fields})})
            out.append({"role": "assistant", "content": answer})
        out.append({"role": "user", "content": self.user.format(**values)})
        return out


def _example(body: str, names: set[str]) -> tuple[dict[str, str], str]:
    rule = _ANSWER_RULE.search(body)
    head, answer = (body[: rule.start()], body[rule.end() :]) if rule else (body, "")
    if not answer.strip():
        raise ValueError(f"an example without an '--- answer ---' part: {body[:80]!r}")
    field = re.compile(rf"^({'|'.join(map(re.escape, sorted(names)))}):[ \t]?(.*)$") if names else None
    fields: dict[str, list[str]] = {}
    current = None
    for line in head.strip("\n").splitlines():
        match = field.match(line) if field else None
        if match:
            current = match.group(1)
            fields[current] = [match.group(2)]
        elif current is not None:
            fields[current].append(line)
        elif line.strip():
            raise ValueError(f"an example line before any field: {line!r}")
    return {k: "\n".join(v).strip() for k, v in fields.items()}, answer.strip()


def list_items(text: str) -> list[str]:
    """The items of a numbered or bulleted list, raw (no filtering of their content).

    When numbers are present they start items and bullets under them are details of the
    item; otherwise bullets start items. Indented lines continue the open item; any other
    line (preamble, epilogue, an unlabelled answer) closes it.
    """
    lines = strip_emphasis(text).splitlines()
    numbered = any(_NUMBERED.match(line) for line in lines)
    start = _NUMBERED if numbered else _BULLET
    items: list[str] = []
    open_item = False
    for line in lines:
        match = start.match(line)
        if match:
            items.append(match.group(1).strip())
            open_item = True
        elif not line.strip():
            open_item = False
        elif open_item and (line[:1].isspace() or (numbered and _BULLET.match(line))):
            items[-1] = f"{items[-1]} {strip_marker(line)}".strip()
        else:
            open_item = False
    return items


async def gather_or_fail(*coros: Coroutine[Any, Any, Any]) -> list[Any]:
    """Run LLM asks concurrently; the first failure cancels the others and is raised as is,
    not wrapped in an ExceptionGroup, so the wiring's `except StageFailure` still sees it."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except BaseExceptionGroup as eg:
        failures = [e for e in eg.exceptions if isinstance(e, StageFailure)]
        if failures and len(failures) == len(eg.exceptions):
            raise failures[0] from None
        if len(eg.exceptions) == 1:
            raise eg.exceptions[0] from None
        raise
    return [task.result() for task in tasks]
