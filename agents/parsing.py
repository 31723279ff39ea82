"""Helpers the stage parsers share: what LLM formatting noise looks like and how to see past it.

Models wrap answers in markdown, number or bullet them in several styles, add a preamble
("Here are 10 instructions:") and sometimes echo the prompt. These helpers recognise that
noise; each stage decides what is still a usable answer. Where an instruction starts and ends
in an answer, kept verbatim, is `agents/instruction_text.py`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Iterable
from typing import Any

from agents.base import StageFailure

# Markdown emphasis and inline code: noise around labels, scores and metadata keywords (never
# stripped from an instruction, where they are the model's code and maths).
_EMPHASIS = re.compile(r"\*\*|__|`")
_WRAPPERS = ("**", "__", "*", "_")
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»"}
_PLACEHOLDER = re.compile(r"\s*(?:<[^<>\n]{0,60}>|\.\.\.|…)\s*")
_WORDS = re.compile(r"\w+")
_LETTER = re.compile(r"[^\W\d_]")
# Openers of a preamble or epilogue a model wraps around the real answer.
PREAMBLE = re.compile(
    r"^(?:here\s+(?:are|is)|here['’]s|sure|certainly|okay|ok|of\s+course|below\s+(?:are|is)|the\s+following|"
    r"i\s+(?:have|hope)|these\s+(?:are|instructions))\b",
    re.I,
)
REFUSAL = re.compile(
    r"^(?:i['’]?m\s+(?:sorry|unable)|i\s+am\s+(?:sorry|unable)|sorry\b|i\s+(?:cannot|can['’]?t|can\s+not|won['’]?t)\b|"
    r"as\s+an\s+ai\b|unfortunately\b)",
    re.I,
)
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
    """A short value (a skill, a label's value) without any quotes around it."""
    text = text.strip()
    while len(text) >= 2 and text[0] in _QUOTE_PAIRS and text[-1] == _QUOTE_PAIRS[text[0]]:
        text = text[1:-1].strip()
    return text


def unwrap_quotes(text: str) -> str:
    """Text without one pair of quotes around all of it, only when they are that: neither
    quote character occurs inside (`"Hi" means what?` keeps its quotes)."""
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTE_PAIRS and text[-1] == _QUOTE_PAIRS[text[0]]:
        inner = text[1:-1]
        if text[0] not in inner and text[-1] not in inner and inner.strip():
            return inner.strip()
    return text


def unwrap_emphasis(text: str) -> str:
    """Text without emphasis around all of it (`**Write a haiku**`), only when the marker
    occurs nowhere inside: `**Compute** 2**10` and `__init__` keep theirs."""
    text = text.strip()
    for marker in _WRAPPERS:
        size = len(marker)
        if len(text) > 2 * size and text.startswith(marker) and text.endswith(marker):
            inner = text[size:-size]
            # `__init__` is a name, not emphasis: underscores wrap a phrase only
            if marker[0] not in inner and inner == inner.strip() and (marker[0] == "*" or " " in inner):
                return inner
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
    return re.sub(r"^[ \t]*#{3,}[ \t]*$", "##", text.strip(), flags=re.M)  # [ \t]: keep the blank lines around


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
