"""Where an instruction starts and ends in a model's answer, kept exactly as the model wrote it.

Strong chat models write instructions in markdown: numbered items with bold titles, code
spans, `**` and `__dunder__` in code and maths, `$...$`, and an input after a colon (a
paragraph, a list, a code fence, a table). All of that is the instruction. Only the wrapping
goes: list markers, labels ("Instruction 1:", a bold title), a preamble before the list, closing
remarks after it, commentary lines ("Why:", "Skills tested:"), emphasis or quotes around a whole
item.

The unit is the block. After an item's first line, its body is read line by line:

- attached, whatever precedes them: indented lines, code fences (verbatim to their close),
  block quotes, table rows, and an unindented line right under the text (markdown's lazy
  continuation);
- loose: an unindented paragraph after a blank line. It belongs to the item only when the
  item introduces an input (its text so far ends with a colon, or it says "the following" or
  "below"); otherwise it is commentary, and it ends the item;
- separators end the item: a heading, a horizontal rule, a line that is bold as a whole, and
  commentary labels.

The last item of an answer (or a label's value, which ends it) also drops a trailing run of
closing remarks ("Let me know if ...") from its input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agents.parsing import PREAMBLE, unwrap_emphasis, unwrap_quotes

_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})")
_INDENT = re.compile(r"^[ \t]*")
_BLOCK_QUOTE_OR_TABLE = re.compile(r"^[ \t]*(?:>|\|)")
_HEADING = re.compile(r"^[ \t]*#{1,6}(?:[ \t]|$)")
_RULE = re.compile(r"^[ \t]*(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,}|={3,})$")
_WHOLE_BOLD = re.compile(r"^[ \t]*(\*\*|__)(?=\S)(?:(?!\1).)+?(?<=\S)\1[ \t]*:?[ \t]*$")
# Lines that comment on an item rather than belong to it (optionally bulleted or bold). Not
# "Note:" or "Tests:": inside an instruction those are its constraints and its test cases.
_COMMENTARY = re.compile(
    r"^[ \t]*(?:[-*•+][ \t]+)?(?:\*\*|__|\*|_)?[ \t]*"
    r"(?:answer|response|solution|expected[ \t]+(?:answer|response)|sample[ \t]+answer"
    r"|skills?(?:[ \t]+(?:tested|required|needed|used|assessed|targeted))?|use[ \t]+case|category|difficulty"
    r"|rationale|reasoning|why(?:[ \t]+[\w'’]+){0,5}|purpose|explanation|focus"
    r"|changes(?:[ \t]+made)?|what[ \t]+changed|key[ \t]+changes|improvements?(?:[ \t]+made)?)"
    r"[ \t]*(?:\*\*|__|\*|_)?[ \t]*[:：](?:\*\*|__|\*|_)?(?:[ \t]|$)",
    re.I,
)
# The opening words of a closing remark after the list or the instruction.
_CLOSING = re.compile(
    r"^[ \t]*(?:\*\*|__|\*|_)?[ \t]*(?:i[ \t]+hope|hope[ \t]+th|let[ \t]+me[ \t]+know|feel[ \t]+free|would[ \t]+you[ \t]+like"
    r"|if[ \t]+you(?:['’]d|[ \t]+would|[ \t]+need|[ \t]+want|[ \t]+like)|happy[ \t]+to|enjoy\b|good[ \t]+luck"
    r"|these[ \t]+(?:instructions|questions|prompts|tasks|items|examples|cover|span|should|are|will|vary|range|each)"
    r"|each[ \t]+(?:of[ \t]+these|instruction|question|one)|all[ \t]+of[ \t]+these"
    r"|this[ \t]+(?:list|set|version|revised|rewritten|improved|new|updated|harder|more)\b"
    r"|the[ \t]+(?:improved|new|revised|rewritten|updated)[ \t]+(?:instruction|version|prompt)"
    r"|i(?:['’]ve|[ \t]+have)?[ \t]+(?:made|added|changed|kept|increased|introduced|included|expanded|rewritten|revised)\b"
    r"|by[ \t]+(?:adding|requiring|introducing|asking)|note[ \t]*[:：]|notes?[ \t]*[:：])",
    re.I,
)
_EMPHASISED = re.compile(r"^[ \t]*(?:[-*•+][ \t]+)?(?:\*\*|__|\*|_)")
_INPUT_CUE = re.compile(r"(?:[:：]\s*(?:\*\*|__|\*|_)?\s*$)|\b(?:the[ \t]+following|below)\b", re.I)
_NAMES_AN_INPUT = re.compile(r"\b(?:the[ \t]+following|below)\b", re.I)
_LABEL_AT_START = re.compile(r"^(?:instruction|question|prompt|task)[ \t]*[:：][ \t]*", re.I)
# A bold title at the start of an item, before a colon or dash: "**Budget plan:** Write ...".
_BOLD_TITLE = re.compile(
    r"^(\*\*|__)(?=\S)(?:(?!\1)[^\n]){1,100}?(?:[:：]\1|\1[ \t]*(?:[:：]|[-–—](?=[ \t])))[ \t]*(?=\S)"
)
_INLINE_ANSWER = re.compile(r"[ \t](?:Answer|Response|Solution)[ \t]*:.*$")


# An item's marker: "1.", "1)", "(1)", "**1.**", "### 1.", "Instruction 1:", "**Question 2:**".
_NUMBERED_ITEM = re.compile(
    r"^(?P<indent>[ \t]*)(?P<heading>#{1,6}[ \t]+)?(?P<bold>\*\*|__)?[ \t]*"
    r"(?:(?:instruction|question|prompt|task|item)[ \t]*#?[ \t]*\d{1,3}[ \t]*(?:\*\*|__)?[ \t]*(?:[:.)\-–—]|(?=[ \t]*$))"
    r"(?P<closed>\*\*|__)?"
    r"|\d{1,3}[ \t]*[.)](?!\d)(?P<closed2>\*\*|__)?|\(\d{1,3}\)(?:\*\*|__)?)"
    r"(?:[ \t]+|$)(?P<rest>.*)$",
    re.I,
)
_BULLET_ITEM = re.compile(r"^(?P<indent>[ \t]*)[-*•+–][ \t]+(?P<rest>.*)$")


@dataclass(frozen=True)
class Extracted:
    """An instruction's text as the model wrote it, and the loose blocks left out after it
    (commentary or closing remarks), for a caller that must judge whether they were noise."""

    text: str
    left_out: tuple[str, ...] = ()


def body_text(first: str, body: list[str], *, last: bool, top_indent: int = 0) -> Extracted:
    """The text of one item or label value: `first` (what follows the marker or label on its
    line) and the lines under it, up to the next item. `last`: nothing follows in the answer,
    so a trailing run of closing remarks is dropped. Wrapping is not removed here."""
    rest = list(body)
    if not first.strip():  # a marker or label alone on its line: the text starts below
        while rest and not rest[0].strip():
            rest.pop(0)
        if rest and not (_FENCE.match(rest[0]) or is_separator(rest[0]) or _COMMENTARY.match(rest[0])):
            first = rest.pop(0)
    kept: list[str] = [first.strip()] if first.strip() else []
    input_mode = bool(_INPUT_CUE.search(first))
    input_at: int | None = 1 if input_mode else None  # where the input after the cue begins in `kept`
    loose_starts: list[int] = []  # where each loose block begins in `kept`
    left_out: list[str] = []
    blanks = 0
    fence: str | None = None  # the open fence's marker
    for index, line in enumerate(rest):
        if fence is None and not line.strip():
            blanks += 1 if kept else 0
            continue
        if fence is None:
            opener = _FENCE.match(line)
            indented = _indent(line) > top_indent
            lazy = blanks == 0 and bool(kept)  # right under the text: a lazy continuation
            if _HEADING.match(line) or _RULE.match(line):
                break
            # in an input ("Review this PR:\n- Purpose: caching") a label is data, unless set off in bold
            if _COMMENTARY.match(line) and (not input_mode or _EMPHASISED.match(line)):
                break
            if _WHOLE_BOLD.match(line) and not indented:
                break
            if last and lazy and not indented and _CLOSING.match(line):  # "I hope these help!" right under
                left_out.append("\n".join(_paragraph(rest, index)))
                break
            attached = bool(opener) or indented or lazy or bool(_BLOCK_QUOTE_OR_TABLE.match(line))
            if not attached and not input_mode:
                left_out.append("\n".join(_paragraph(rest, index)))
                break
            if not attached:
                loose_starts.append(len(kept) + blanks)
            if opener:
                fence = opener.group(2)
            if not input_mode and _INPUT_CUE.search(line):
                input_mode, input_at = True, len(kept) + blanks + 1
        elif _closes_fence(line, fence):
            fence = None
        kept.extend([""] * blanks)
        blanks = 0
        kept.append(line)
    if last and loose_starts:
        # the first block of an input is the input, whatever its first words ("I hope you are well")
        protected = next((i for i, line in enumerate(kept) if i >= (input_at or 0) and line.strip()), len(kept))
        kept, trailing = _drop_closing_remarks(kept, [i for i in loose_starts if i > protected])
        left_out = [*trailing, *left_out]
    text = _dedent_continuation(kept, top_indent) if kept else ""
    return Extracted(text.strip("\n").rstrip(), tuple(left_out))


def list_items(text: str) -> list[str]:
    """The items of a numbered list (or, when nothing is numbered, a bulleted one), each as
    the model wrote it with only its marker gone; `clean_item` removes the rest of the wrapping.

    Items start at the list's own level (the least indented markers, outside code fences):
    deeper numbers and bullets, and bullets under numbered items, are part of an item. Text
    before the first item is a preamble."""
    lines = text.split("\n")
    numbered: list[tuple[int, int, str]] = []  # (line, indentation, text after the marker)
    bullets: list[tuple[int, int, str]] = []
    fence: str | None = None
    for i, line in enumerate(lines):
        if fence is not None:
            fence = None if _closes_fence(line, fence) else fence
            continue
        opener = _FENCE.match(line)
        if opener:
            fence = opener.group(2)
            continue
        for pattern, found in ((_NUMBERED_ITEM, numbered), (_BULLET_ITEM, bullets)):
            match = pattern.match(line)
            if match:
                found.append((i, _indent(line), match.group("rest")))
                break
    candidates = numbered or bullets
    if not candidates:
        return []
    top = min(indent for _, indent, _ in candidates)
    starts = [c for c in candidates if c[1] <= top + 1]
    items = []
    for k, (i, indent, rest) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        body = lines[i + 1 : end]
        title = _title_of(lines[i], rest)
        if title is not None:  # "### 1. Weeknight dinners" or "**Instruction 1: Delayed order**" over the text
            rest = "" if any(line.strip() and not is_separator(line) for line in body) else title
        items.append(body_text(rest, body, last=k + 1 == len(starts), top_indent=indent).text)
    return items


def _title_of(line: str, rest: str) -> str | None:
    """The title a marker line gives its item, when the line is one: a heading, or a marker
    that opens a bold run the rest of the line closes. None for an ordinary item line."""
    marker = _NUMBERED_ITEM.match(line)
    if marker is None:
        return None
    bold = marker.group("bold")
    if bold and not (marker.group("closed") or marker.group("closed2")) and rest.rstrip().endswith(bold):
        return rest.rstrip()[: -len(bold)].strip()
    if marker.group("heading"):
        return rest.strip()
    return None


def clean_item(text: str) -> str:
    """An item without its wrapping: a label or bold title at its start, a bold title line
    above it, emphasis or quotes around all of it, and an answer after a one-line item."""
    text = _LABEL_AT_START.sub("", text, count=1)
    title = _BOLD_TITLE.match(text)
    if title:
        text = text[title.end() :]
    else:
        first, newline, after = text.partition("\n")
        if newline and after.strip() and _WHOLE_BOLD.match(first) and not _NAMES_AN_INPUT.search(first):
            lines = after.lstrip("\n").split("\n")
            text = "\n".join([lines[0].strip(), *lines[1:]])
    text = _LABEL_AT_START.sub("", text, count=1)
    if "\n" not in text:
        text = _INLINE_ANSWER.sub("", text)
    return unwrap_quotes(unwrap_emphasis(text.strip()))


def starts_closing_remark(line: str) -> bool:
    return bool(_CLOSING.match(line) or _COMMENTARY.match(line) or PREAMBLE.match(line.strip(" \t*_")))


def is_separator(line: str) -> bool:
    """A heading, a rule or a whole bold line: structure between items, never their text."""
    return bool(_HEADING.match(line) or _RULE.match(line) or _WHOLE_BOLD.match(line))


def _drop_closing_remarks(kept: list[str], loose_starts: list[int]) -> tuple[list[str], list[str]]:
    """Cut the loose blocks at the end that are closing remarks, last first."""
    dropped: list[str] = []
    for start in reversed(loose_starts):
        block = "\n".join(kept[start:]).strip()
        if not starts_closing_remark(kept[start]):
            break
        dropped.insert(0, block)
        kept = kept[:start]
        while kept and not kept[-1].strip():
            kept.pop()
    return kept, dropped


def _paragraph(lines: list[str], start: int) -> list[str]:
    out = []
    for line in lines[start:]:
        if not line.strip():
            break
        out.append(line.strip())
    return out


def _closes_fence(line: str, opener: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(opener[0] * len(opener)) and not stripped.strip(opener[0])


def _indent(line: str) -> int:
    return len(_INDENT.match(line).group().expandtabs(4))  # type: ignore[union-attr]


def _dedent_continuation(lines: list[str], top_indent: int) -> str:
    """Lines without the indentation that made them part of a list item: the smallest
    indentation of the indented lines outside code fences; a fence's content loses only its
    opener's indentation, so code keeps its own."""
    if len(lines) <= 1:
        return "\n".join(line.strip() if i == 0 else line for i, line in enumerate(lines))
    fence_of_line: list[int | None] = []  # per line: the indentation of the fence it sits in
    opener: str | None = None
    opener_indent = 0
    for line in lines:
        if opener is not None:
            fence_of_line.append(opener_indent)
            if _closes_fence(line, opener):
                opener = None
            continue
        fence = _FENCE.match(line)
        if fence:
            opener, opener_indent = fence.group(2), _indent(line)
        fence_of_line.append(None)
    indents = [
        _indent(line) for line, f in zip(lines[1:], fence_of_line[1:], strict=True) if f is None and line.strip()
    ]
    common = min((i for i in indents if i > top_indent), default=0)
    out = [lines[0].strip()]
    for line, fence_indent in zip(lines[1:], fence_of_line[1:], strict=True):
        cut = min(common if fence_indent is None else fence_indent, _indent(line))
        out.append(_remove_indent(line, cut))
    return "\n".join(out)


def _remove_indent(line: str, width: int) -> str:
    lead = _INDENT.match(line).group()  # type: ignore[union-attr]
    return lead.expandtabs(4)[width:] + line[len(lead) :]
