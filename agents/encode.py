"""encode: a seed instruction -> its metadata, one use case and a few skills (CodecLM's
instruction metadata, the paper's Figure 7). The strong model reads the seed; the metadata,
not the seed, drives every later stage, so the seed's wording never leaks into the data."""

from __future__ import annotations

import re
from functools import partial

from agents.base import Emit, ParseFailure, StageContext, ask, load_prompt
from agents.parsing import (
    LABEL_END,
    LABEL_START,
    PREAMBLE,
    ChatPrompt,
    as_data,
    dedupe,
    has_letters,
    is_list_item,
    is_placeholder,
    strip_emphasis,
    strip_marker,
    unquote,
    word_count,
)
from llm.base import Message
from schemas import Metadata, MetadataSummary, Seed, derive_id

PROMPT = ChatPrompt.parse(load_prompt("encode"))

# The paper asks for 2-3 words; longer values are prose, not a label's value.
MAX_USE_CASE_WORDS = 12
MAX_UNLABELLED_USE_CASE_WORDS = 6
MAX_SKILL_WORDS = 6

_USE_CASE = re.compile(LABEL_START + r"(?:use[ \t_-]*case|task)" + LABEL_END, re.I | re.M)
_SKILLS = re.compile(
    LABEL_START + r"(?:required[ \t]+|key[ \t]+)?skills?(?:[ \t]+(?:required|needed))?" + LABEL_END,
    re.I | re.M,
)
_ANY_LABEL = re.compile(r"^[ \t>#*•+\-]*[A-Za-z][A-Za-z ]{0,24}:(?:\s|$)")
_SENTENCE_END = re.compile(r"(?<=[^\s.])[.!?](?:\s|$)")
_INLINE_LABEL = re.compile(r"[.;]\s+[A-Z][A-Za-z ]{0,20}:")
_SKILL_SPLIT = re.compile(r"[,;\n]|\s[•·|/]\s")
_EXPLANATION = re.compile(r":\s|\s[-–—]\s|\s\(")
_FORBIDDEN = re.compile(r"\b(?:skill(?:s|set|sets)?|knowledge)\b", re.I)
_EDGE_WORDS = re.compile(r"^(?:(?:of|in|about|for|on|with|and|&)\s+)+|(?:\s+(?:of|in|about|for|on|with|and|&))+$", re.I)


def build_prompt(instruction: str, *, max_skills: int) -> list[Message]:
    """System message with the format, few-shot examples, then the seed as data."""
    return PROMPT.messages(instruction=as_data(instruction), max_skills=max_skills)


def parse(text: str, *, max_skills: int) -> MetadataSummary | ParseFailure:
    """The use case and skills in an answer.

    Tolerates markdown emphasis, bullets and numbering around the labels, `Task:` for
    `Use case:`, both labels on one line, skills split by commas, semicolons, bullets or
    lines, and an echoed prompt (only the text after the seed's closing tag counts). The use case
    may go unlabelled only as one short line directly before `Skills:`; prose without a
    labelled use case fails, so it is asked again rather than guessed at.
    """
    clean = strip_emphasis(text).strip()
    if not clean:
        return ParseFailure("empty answer", text)
    # An echoed prompt holds the example's answer: only what follows the seed counts.
    after_echo = clean.rsplit("</instruction>", 1)[-1]
    result = _parse_metadata(after_echo if after_echo.strip() else clean, max_skills)
    return result if isinstance(result, MetadataSummary) else ParseFailure(result, text)


async def process(seed: Seed, ctx: StageContext) -> list[Emit]:
    p = ctx.pipeline
    asked = await ask(
        ctx.strong,
        build_prompt(seed.text, max_skills=p.max_skills),
        partial(parse, max_skills=p.max_skills),
        purpose="encode",
        temperature=p.generation_temperature,
        max_tokens=p.max_tokens,
        attempts=p.parse_attempts,
    )
    metadata = Metadata(
        id=derive_id("meta", seed.id),
        seed_id=seed.seed_id,
        parent_id=seed.id,
        seed_text=seed.text,
        metadata=asked.value,
        llm_calls=(asked.call,),
    )
    return [Emit("metadata", metadata)]


def _parse_metadata(text: str, max_skills: int) -> MetadataSummary | str:
    skill_labels = list(_SKILLS.finditer(text))
    found = _labelled_use_case(text, skill_labels) or _unlabelled_use_case(text, skill_labels)
    if found is None:
        return "no 'Use case:' or 'Task:' label with a short value"
    use_case, after = found
    skills = dedupe(skill for line in _skills_block(text, after, skill_labels) for skill in _line_skills(line))
    if not skills:
        return "no usable skill after 'Skills:'"
    return MetadataSummary(use_case=use_case, skills=tuple(skills[:max_skills]))


def _labelled_use_case(text: str, skill_labels: list[re.Match[str]]) -> tuple[str, int] | None:
    """The first labelled use case with a usable value (echoed `<use case>` slots are skipped)."""
    for label in _USE_CASE.finditer(text):
        line_end = _line_end(text, label.end())
        inline_skills = next((s.start() for s in skill_labels if label.end() <= s.start() < line_end), None)
        end = inline_skills if inline_skills is not None else line_end
        value = text[label.end() : end]
        if not value.strip() and inline_skills is None:
            # The label alone on its line: the value is the next line, unless that is a label.
            following = text[line_end:].lstrip("\n")
            nxt = following.split("\n", 1)[0]
            if nxt.strip() and not _is_label_line(nxt):
                value, end = nxt, _line_end(text, len(text) - len(following))
        use_case = _clean_use_case(value)
        if use_case:
            return use_case, end
    return None


def _unlabelled_use_case(text: str, skill_labels: list[re.Match[str]]) -> tuple[str, int] | None:
    """A completion-style answer: one short line, then `Skills:`."""
    if not skill_labels:
        return None
    first = skill_labels[0]
    prefix = text[: first.start()].strip()
    if not prefix or "\n" in prefix or ":" in prefix or PREAMBLE.match(prefix):
        return None
    use_case = _clean_use_case(prefix)
    if use_case is None or word_count(use_case) > MAX_UNLABELLED_USE_CASE_WORDS:
        return None
    return use_case, first.start()


def _clean_use_case(value: str) -> str | None:
    value = unquote(strip_marker(value))
    end = _SENTENCE_END.search(value)
    if end:  # what follows the first sentence is explanation
        value = value[: end.start()]
    value = value.strip(" \t.;,:")
    if not value or is_placeholder(value) or not has_letters(value) or word_count(value) > MAX_USE_CASE_WORDS:
        return None
    return value


def _skills_block(text: str, after: int, skill_labels: list[re.Match[str]]) -> list[str]:
    """The raw skill lines: the `Skills:` line and the list under it, or, without a label,
    a bulleted list right under the use case."""
    label = next((s for s in skill_labels if s.start() >= after), skill_labels[0] if skill_labels else None)
    if label is None:
        rest = text[_line_end(text, after) :].lstrip("\n").split("\n")
        items = []
        for line in rest:
            if not is_list_item(line):
                break
            items.append(strip_marker(line))
        return items
    line_end = _line_end(text, label.end())
    first = text[label.end() : line_end]
    for stop in (_USE_CASE.search(first), _INLINE_LABEL.search(first)):
        if stop:
            first = first[: stop.start()]
    collected = [first] if first.strip() else []
    for line in text[line_end:].lstrip("\n").split("\n"):
        if not line.strip():
            if collected:
                break
            continue
        if _USE_CASE.match(line) or _SKILLS.match(line):
            break
        if is_list_item(line) or (not first.strip() and not _ANY_LABEL.match(line)):
            collected.append(strip_marker(line))
            continue
        break
    return collected


def _line_skills(line: str) -> list[str]:
    """The skills of one line; none when a piece is a sentence, since then the whole line
    is prose ("The model needs to understand python, ...") and its commas split clauses."""
    skills = []
    for piece in _SKILL_SPLIT.split(line):
        skill = _clean_skill(piece)
        if skill is None and word_count(piece) > MAX_SKILL_WORDS:
            return []
        if skill:
            skills.append(skill)
    return skills


def _clean_skill(piece: str) -> str | None:
    piece = unquote(strip_marker(piece))
    if is_placeholder(piece):
        return None
    piece = _EXPLANATION.split(piece, maxsplit=1)[0]
    piece = _FORBIDDEN.sub(" ", piece.strip(" \t.;:!\"'[]()"))
    piece = _EDGE_WORDS.sub("", " ".join(piece.split())).strip(" \t.;:,-")
    if not piece or not has_letters(piece) or word_count(piece) > MAX_SKILL_WORDS:
        return None
    return piece


def _is_label_line(line: str) -> bool:
    return bool(_USE_CASE.match(line) or _SKILLS.match(line) or _ANY_LABEL.match(line))


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end == -1 else end
