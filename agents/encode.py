"""encode: a seed instruction -> its metadata, one use case and a few skills (CodecLM's
instruction metadata, the paper's Figure 7). The strong model reads the seed; the metadata,
not the seed, drives every later stage, so the seed's wording never leaks into the data.

With `pipeline.rich_metadata` on, the prompt (encode_rich.txt) also asks for a domain, a
difficulty and the output-format constraints. They are optional: use case and skills decide
whether an answer parses, and a missing or malformed rich field stays None or empty."""

from __future__ import annotations

import re
from functools import partial
from typing import Literal

from agents.base import Budget, Emit, ParseFailure, Stage, StageContext, ask
from agents.parsing import (
    LABEL_END,
    LABEL_START,
    PREAMBLE,
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
from agents.prompt_sets import PAPER, PromptSet
from llm.base import Message
from schemas import Metadata, MetadataSummary, Seed, derive_id, made_from

# The paper asks for 2-3 words; longer values are prose, not a label's value.
MAX_USE_CASE_WORDS = 12
MAX_UNLABELLED_USE_CASE_WORDS = 6
MAX_SKILL_WORDS = 6
MAX_DOMAIN_WORDS = 5
MAX_FORMAT_CONSTRAINT_WORDS = 12
MAX_FORMAT_CONSTRAINTS = 5

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
_DOMAIN = re.compile(
    LABEL_START + r"(?:domain|subject(?:[ \t]+area)?|field[ \t]+of[ \t]+study)" + LABEL_END, re.I | re.M
)
_DIFFICULTY = re.compile(LABEL_START + r"difficulty(?:[ \t]+level)?" + LABEL_END, re.I | re.M)
_FORMAT = re.compile(
    LABEL_START + r"(?:(?:output|answer|response)[ \t]+)?format(?:[ \t_-]*(?:constraints?|requirements?))?" + LABEL_END,
    re.I | re.M,
)
Difficulty = Literal["easy", "medium", "hard"]
# The level's name and the words models use for it; anything else is no difficulty.
_DIFFICULTY_WORDS: dict[str, Difficulty] = {
    **dict.fromkeys(("easy", "simple", "basic", "beginner", "elementary", "low"), "easy"),
    **dict.fromkeys(("medium", "moderate", "intermediate", "average", "mid"), "medium"),
    **dict.fromkeys(("hard", "difficult", "advanced", "challenging", "expert", "complex", "high"), "hard"),
}
# "None", "no specific format", "n/a": the instruction constrains nothing (or the field is empty).
_NO_VALUE = re.compile(
    r"(?:none|nothing|n/?a|unknown|unspecified|not[ \t]+(?:specified|applicable)|-+"
    r"|no(?:[ \t]+(?:specific|particular|explicit|special))?(?:[ \t]+(?:format(?:ting)?|output|constraints?|requirements?))+)",
    re.I,
)
# A heading as a label ("### Use case" over its value): read as "Use case:".
_HEADING_LABEL = re.compile(r"^[ \t]*#{1,6}[ \t]*([A-Za-z][A-Za-z \t]{0,30}?)[ \t]*:?[ \t]*$", re.M)
_CONSTRAINT_SPLIT = re.compile(r"[;\n]|\s[•·|]\s")
_EDGE_WORDS = re.compile(r"^(?:(?:of|in|about|for|on|with|and|&)\s+)+|(?:\s+(?:of|in|about|for|on|with|and|&))+$", re.I)


async def process(seed: Seed, ctx: StageContext) -> list[Emit]:
    p = ctx.pipeline
    asked = await ask(
        ctx.strong,
        build_prompt(seed.text, max_skills=p.max_skills, rich=p.rich_metadata, prompts=ctx.prompts),
        partial(parse, max_skills=p.max_skills, rich=p.rich_metadata),
        purpose="encode",
        budget=Budget.generation(p),
    )
    metadata = Metadata(
        id=derive_id("meta", seed.id),
        **made_from(seed),
        seed_text=seed.text,
        metadata=asked.value,
        llm_calls=asked.calls,
        prompts=ctx.prompts.ref,
    )
    return [Emit("metadata", metadata)]


STAGE = Stage(name="encode", inputs=("seeds",), outputs=("metadata",), process=process, calls={"encode": "strong"})


def build_prompt(instruction: str, *, max_skills: int, rich: bool = False, prompts: PromptSet = PAPER) -> list[Message]:
    """The set's encode prompt: system message with the format, demonstrations (few-shot in
    every set: the paper's Figure 7 shows the granularity it wants), then the seed as data."""
    prompt = prompts.encode_rich if rich else prompts.encode
    return prompt.messages(instruction=as_data(instruction), max_skills=max_skills)


def parse(text: str, *, max_skills: int, rich: bool = False) -> MetadataSummary | ParseFailure:
    """The use case and skills in an answer.

    Tolerates markdown emphasis, bullets and numbering around the labels, `Task:` for
    `Use case:`, both labels on one line, skills split by commas, semicolons, bullets or
    lines, and an echoed prompt (only the text after the seed's closing tag counts). The use case
    may go unlabelled only as one short line directly before `Skills:`; prose without a
    labelled use case fails, so it is asked again rather than guessed at. With `rich`, the
    optional fields are read too (see `rich_fields`); they never fail an answer.
    """
    clean = _HEADING_LABEL.sub(r"\1:", strip_emphasis(text)).strip()
    if not clean:
        return ParseFailure("empty answer", text)
    # An echoed prompt holds the example's answer: only what follows the seed counts.
    after_echo = clean.rsplit("</instruction>", 1)[-1]
    answer = after_echo if after_echo.strip() else clean
    result = _parse_metadata(answer, max_skills)
    if not isinstance(result, MetadataSummary):
        return ParseFailure(result, text)
    if not rich:
        return result
    return MetadataSummary.model_validate({**result.model_dump(), **rich_fields(answer)})


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
    value = _EXPLANATION.split(unquote(strip_marker(value)), maxsplit=1)[0]  # "Debugging - the user wants ..."
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


def rich_fields(text: str) -> dict[str, object]:
    """Domain, difficulty and format constraints from a rich answer; each field the answer
    leaves out or fills with something unusable (a prose paragraph, an unknown difficulty
    word, an echoed `<slot>`) is None or empty: they enrich a record, never fail it."""
    domain = next(filter(None, (_clean_domain(v) for v in _label_values(text, _DOMAIN))), None)
    difficulty = next(filter(None, (_difficulty(v) for v in _label_values(text, _DIFFICULTY))), None)
    constraints: tuple[str, ...] = ()
    for label in _FORMAT.finditer(text):
        constraints = _format_constraints(text, label)
        if constraints:
            break
    return {"domain": domain, "difficulty": difficulty, "format_constraints": constraints}


def _label_values(text: str, label: re.Pattern[str]) -> list[str]:
    """The value after each `label`, up to the end of its line or the next label on it."""
    return [text[m.end() : _value_end(text, m.end())] for m in label.finditer(text)]


def _value_end(text: str, start: int) -> int:
    end = _line_end(text, start)
    stops = (pattern.search(text, start, end) for pattern in (*_RICH_LABELS, _USE_CASE, _SKILLS, _INLINE_LABEL))
    return min((stop.start() for stop in stops if stop), default=end)


def _clean_domain(value: str) -> str | None:
    value = _EXPLANATION.split(unquote(strip_marker(value)), maxsplit=1)[0]
    end = _SENTENCE_END.search(value)
    if end:
        value = value[: end.start()]
    value = unquote(value.strip(" \t.;,:"))
    if not value or _NO_VALUE.fullmatch(value) or is_placeholder(value) or not has_letters(value):
        return None
    return value if word_count(value) <= MAX_DOMAIN_WORDS else None


def _difficulty(value: str) -> Difficulty | None:
    """The level a value names by its first word ("Medium - needs several steps"); any
    other word (a score, "moderately", "varies", "medium-hard") is no difficulty."""
    value = unquote(strip_marker(value))
    first = None if is_placeholder(value) else re.match(r"[^\W\d_][\w-]*", value.strip(" \t\"'(["))
    return _DIFFICULTY_WORDS.get(first.group().casefold()) if first else None


def _format_constraints(text: str, label: re.Match[str]) -> tuple[str, ...]:
    """The constraints after one `Format constraints:` label: on its line, or, when that is
    empty, the lines under it up to a blank or labelled line (a list continues only with
    list items). Split by semicolons, bullets or lines; by commas
    only when nothing else separates them, since a constraint may hold a comma."""
    start = label.end()
    first = text[start : _value_end(text, start)]
    lines = [first] if first.strip() else []
    listed = bool(lines)  # under a value, or once a list has begun, only list items continue
    for line in text[_line_end(text, start) :].lstrip("\n").split("\n"):
        if not line.strip() or _is_label_line(line) or (listed and not is_list_item(line)):
            break
        listed = listed or is_list_item(line)
        lines.append(strip_marker(line))
    value = "\n".join(lines)
    if _NO_VALUE.fullmatch(value.strip(" \t.")):
        return ()
    pieces = _CONSTRAINT_SPLIT.split(value) if _CONSTRAINT_SPLIT.search(value.strip()) else value.split(",")
    found = []
    for piece in pieces:
        piece = unquote(strip_marker(piece)).strip(" \t.;:,")
        if not piece or _NO_VALUE.fullmatch(piece) or is_placeholder(piece) or not has_letters(piece):
            continue
        if word_count(piece) <= MAX_FORMAT_CONSTRAINT_WORDS:
            found.append(piece)
    return tuple(dedupe(found)[:MAX_FORMAT_CONSTRAINTS])


_RICH_LABELS = (_DOMAIN, _DIFFICULTY, _FORMAT)


def _is_label_line(line: str) -> bool:
    return bool(_USE_CASE.match(line) or _SKILLS.match(line) or _ANY_LABEL.match(line))


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end == -1 else end
