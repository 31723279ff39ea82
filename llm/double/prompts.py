"""Reading a pipeline prompt: which prompt it is (`classify`: judge, rubrics, tailor, augment,
decode, encode or answer, by the markers its text carries) and the fields the replies are made from
(the judge's two answers, the instruction to tailor, what a decode prompt asks for, the seed
of an encode prompt and its content words). Pure functions, no I/O; they work on both prompt
sets (agents/prompts/paper and agents/prompts/small-model)."""

from __future__ import annotations

import re
from typing import Any

KINDS = ("judge", "rubrics", "tailor", "augment", "decode", "encode", "answer")
JUDGE_A1_START = "[The Start of Assistant 1's Answer]"
JUDGE_A1_END = "[The End of Assistant 1's Answer]"
JUDGE_A2_START = "[The Start of Assistant 2's Answer]"
JUDGE_A2_END = "[The End of Assistant 2's Answer]"


_MARKERS = (
    ("judge", JUDGE_A1_START),
    ("rubrics", "Rubric 1:"),
    ("tailor", "Improved Instruction:"),
    ("augment", "Answer Yes or No"),  # the check of an augmented combination (codeclm augment --check model)
    ("decode", "numbered list"),
    ("encode", "Use case:"),
)


def classify_text(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """The kind of prompt and the text that told it: the last user message when it carries a
    marker, else all messages joined (a format spelled out in the system message)."""
    last_user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    everything = "\n".join(str(m.get("content", "")) for m in messages)
    for text in (last_user, everything):
        for kind, marker in _MARKERS:
            if marker in text:
                return kind, text
    return "answer", everything


def classify(messages: list[dict[str, Any]]) -> str:
    """Which pipeline prompt this is: judge, rubrics, tailor, augment, decode, encode or answer."""
    return classify_text(messages)[0]


def _all_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in messages)


def _between(text: str, start: str, end: str) -> str:
    _, found, tail = text.partition(start)
    return tail.partition(end)[0].strip() if found else ""


def _instruction_in(prompt: str) -> str:
    """The instruction being tailored: everything from "#Instruction#:" to the first line
    that is exactly the closing "###" fence (an instruction may span lines: an input block;
    the prompt builders turn its own "###" lines into "##", so the first one closes it).
    Without a closing fence: the rest of the "#Instruction#:" line, else the next non-empty
    line."""
    _, found, tail = prompt.partition("#Instruction#:")
    if not found:
        return ""
    lines = tail.split("\n")
    close = next((k for k, line in enumerate(lines) if k > 0 and line.strip() == "###"), None)
    fenced = "\n".join(lines[:close]).strip() if close is not None else ""
    if fenced:
        return fenced
    same_line = lines[0].strip()
    if same_line:
        return same_line
    return next((line.strip() for line in lines[1:] if line.strip()), "")


# The metadata's labels in the paper set's decode prompt and in the small-model set's.
_DECODE_USE = re.compile(r"^(?:Use case of the instructions|Intended use):[ \t]*(.+)$", re.M)
_DECODE_SKILLS = re.compile(r"^(?:Skills required to respond to the instructions|Required abilities):[ \t]*(.+)$", re.M)
_DECODE_RICH = tuple(
    re.compile(rf"^{label}:[ \t]*(.+)$", re.M) for label in ("Domain", "Difficulty", "Format constraints")
)  # format constraints last


def _decode_asked(prompt: str) -> tuple[int, str, list[str], str]:
    """What a decode prompt asks for: the number of instructions, the use case, the skills in
    the prompt's order, and the topic key (see `_topic_key`)."""
    match = re.search(r"[Gg]enerate (\d+)", prompt)
    n = int(match.group(1)) if match else 10
    use_case = _last(_DECODE_USE, prompt) or "General assistance"
    skills = [s.strip() for s in _last(_DECODE_SKILLS, prompt).split(",") if s.strip()] or ["clear explanation"]
    return n, use_case, skills, _topic_key(prompt, use_case, skills)


# The combination in an augment prompt (both prompt sets label it so).
_AUGMENT_USE = re.compile(r"^Use of the instructions:[ \t]*(.+)$", re.M)
_AUGMENT_SKILLS = re.compile(r"^Abilities a response needs:[ \t]*(.+)$", re.M)


def _augment_asked(prompt: str) -> tuple[str, list[str]]:
    """The use case and the skills an augment prompt asks about (the last ones: after the examples)."""
    skills = [s.strip() for s in _last(_AUGMENT_SKILLS, prompt).split(",") if s.strip()]
    return _last(_AUGMENT_USE, prompt), skills


def _last(pattern: re.Pattern[str], prompt: str) -> str:
    """The last line the pattern finds (the few-shot examples come before the metadata)."""
    found = pattern.findall(prompt)
    return found[-1].strip() if found else ""


def _topic_key(prompt: str, use_case: str, skills: list[str]) -> str:
    """What the instructions are about: the metadata as a set, blind to the skills' order."""
    rich = [_last(pattern, prompt) for pattern in _DECODE_RICH]
    formats = sorted(f.strip() for f in rich[-1].split(";") if f.strip())
    return "\x1e".join([use_case, *sorted(skills), *rich[:-1], *formats])


def _seed_in(prompt: str) -> tuple[str, str]:
    """The seed an encode prompt holds (in its last <instruction> block, else the whole
    prompt), and the prompt's own text around it."""
    head, found, tail = prompt.rpartition("<instruction>")
    seed, closed, rest = tail.partition("</instruction>")
    if not found or not closed:
        return prompt, prompt
    return seed, head + rest


# Function words: "How do I sort a list?" and "How can I sort a list?" ask the same thing.
_STOP_TEXT = (
    "a an the i me my we our you your he she it its they them their this that these those is are was were "
    "be been am do does did doing can could would should will shall may might must have has had "
    "how what which who whom why when where to of in on for with without from by at as into about "
    "and or but if so than then there here some any please just also very"
)
_STOP_WORDS = frozenset(_STOP_TEXT.split())


def content_words(text: str) -> tuple[str, ...]:
    """The words that carry a request's meaning: lower-cased, punctuation and stop words
    dropped, as a sorted set (word order and function words do not change the request)."""
    words = re.sub(r"[^\w\s]|_", " ", text.casefold()).split()
    return tuple(sorted({w for w in words if len(w) > 1 and w not in _STOP_WORDS}))


def _scores_only(prompt: str) -> bool:
    """The judge prompt's own text after the answers says "nothing else" (the answers, data,
    may say anything)."""
    _, found, after = prompt.rpartition(JUDGE_A2_END)
    return bool(found) and "nothing else" in after.casefold()
