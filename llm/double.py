"""The LLM double: an aiohttp server speaking the OpenAI chat-completions API, for tests and
benchmarks. It answers each pipeline prompt (encode, decode, rubrics, tailor, judge, answer)
with a deterministic, well-formed reply, and has knobs for latency, rate limits, server
errors, hangs and malformed output, drawn from a seeded RNG so runs repeat.

    python -m llm.double --port 8100 --latency-ms 200 --rate-429 0.05 --retry-after-s 1
    python -m llm.double --style chat    # answers formatted as strong chat models write them

It answers both prompt sets (agents/prompts/paper and agents/prompts/small-model). Two styles:
"plain" (the default) gives tidy answers, one instruction per line; "chat" gives what a strong
chat model writes: preambles, numbered items with bold titles, closing remarks, and instructions
with code spans, `__dunder__` names, maths (`2**10`, `$x^2$`), quotes and input blocks (a quoted
paragraph, a code fence, a table, sub-bullets) after a colon. `chat_decode_instructions` and
`chat_tailored_instruction` give the exact instruction texts a chat answer means, so a test can
check that the pipeline keeps them verbatim.

Endpoints: POST /v1/chat/completions, GET /v1/models, GET /stats, POST /reset, and
POST /control with a JSON object of DoubleConfig fields to change while running.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import random
import re
import signal
import sys
import time
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Self

import orjson
from aiohttp import web

from schemas.records import normalise_text

KINDS = ("judge", "rubrics", "tailor", "decode", "encode", "answer")
JUDGE_A1_START = "[The Start of Assistant 1's Answer]"
JUDGE_A1_END = "[The End of Assistant 1's Answer]"
JUDGE_A2_START = "[The Start of Assistant 2's Answer]"
JUDGE_A2_END = "[The End of Assistant 2's Answer]"
MALFORMED_TEXT = "lorem ipsum ??? <|garbled|> ~~ ::"
FIVE_XX_CYCLE = (500, 502, 503)


# ---------------------------------------------------------------- pure answer generation


def stable_hash(*parts: str) -> int:
    """Same text, same number, in every process (unlike hash(), which is salted)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return int(digest[:15], 16)


def _tag(*parts: str) -> str:
    return f"{stable_hash(*parts):015x}"[:5]


def _pick(options: tuple[str, ...], *parts: str) -> str:
    return options[stable_hash(*parts) % len(options)]


_MARKERS = (
    ("judge", JUDGE_A1_START),
    ("rubrics", "Rubric 1:"),
    ("tailor", "Improved Instruction:"),
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
    """Which pipeline prompt this is: judge, rubrics, tailor, decode, encode or answer."""
    return classify_text(messages)[0]


def _between(text: str, start: str, end: str) -> str:
    _, found, tail = text.partition(start)
    return tail.partition(end)[0].strip() if found else ""


def judge_scores(prompt: str) -> tuple[int, int]:
    """Scores 1-10 of the two answers in a judge prompt. Each depends only on the answer's
    own text, so an answer scores the same in either position."""
    a1 = _between(prompt, JUDGE_A1_START, JUDGE_A1_END)
    a2 = _between(prompt, JUDGE_A2_START, JUDGE_A2_END)
    return 1 + stable_hash(a1) % 10, 1 + stable_hash(a2) % 10


_RUBRICS = (
    ("Depth of reasoning", "Ask for the reasoning behind each step, not only the result."),
    ("Handling of edge cases", "Add an unusual edge case the answer must handle explicitly."),
    ("Use of concrete examples", "Require a concrete, worked example with real numbers."),
    ("Precision of constraints", "Add a strict constraint on length, format or audience."),
    ("Comparison of alternatives", "Ask to compare two alternative approaches and pick one."),
    ("Domain accuracy", "Require citing the specific rule, formula or standard that applies."),
    ("Multi-step planning", "Turn the request into a task that needs several dependent steps."),
    ("Awareness of trade-offs", "Ask to weigh costs against benefits under a stated limit."),
)
_CONSTRAINTS = (
    "Include a worked example.",
    "Answer in under 150 words.",
    "Compare two approaches.",
    "Explain the trade-offs.",
    "State every assumption you make.",
    "Give the answer as a numbered plan.",
)
_TASKS = (
    "Explain how a small bakery can price its seasonal products",
    "List the steps to migrate a web service to a new database",
    "Compare renting and buying a home over a ten-year horizon",
    "Draft a weekly study schedule for learning statistics",
    "Write a polite follow-up email to a client who has not paid",
    "Describe the main causes of inflation",
    "Create a checklist for reviewing a pull request",
    "Suggest ways to reduce the memory use of a Python script",
    "Plan a three-day trip to Lisbon on a modest budget",
    "Summarize the risks of a fixed-price software contract",
    "Design a simple experiment to test a new landing page",
    "Outline a beginner's strength training plan",
    "Explain how compound interest grows a monthly saving",
    "Write a product description for a reusable water bottle",
    "Describe how to diagnose a slow database query",
    "Propose an agenda for a one-hour project kickoff meeting",
    "Write a short speech for a colleague's retirement party",
    "Explain the difference between a virus and a bacterium",
    "Draft a lesson plan that introduces fractions",
    "Describe how to set up automated backups for a laptop",
    "Recommend a reading list on the history of the printing press",
    "Explain how to negotiate a salary offer",
    "Outline a marketing plan for a new board game",
    "Describe how a heat pump warms a house",
    "Write a recipe for a vegetarian dinner for six people",
    "Explain how to read a nutrition label",
    "Plan a fundraising event for a neighbourhood park",
    "Describe the steps to file a small insurance claim",
    "Write a cover letter for a junior data analyst role",
    "Explain what a hash table is and when to use one",
    "Suggest a weekly routine for caring for house plants",
    "Compare electric and petrol cars for a daily commute",
    "Write release notes for a mobile app update",
    "Explain how vaccines train the immune system",
    "Design a customer satisfaction survey for a hotel",
    "Describe how to resolve a merge conflict in git",
    "Plan the seating for a conference with two hundred guests",
    "Explain how tides are caused by the moon",
    "Draft a complaint letter about a delayed delivery",
    "Summarize the rules of chess for a new player",
    "Describe how to estimate the cost of a kitchen renovation",
    "Write a short story opening set on a night train",
    "Explain how to calculate the break-even point of a cafe",
    "Suggest ways to make a presentation more engaging",
    "Describe how to test a REST API endpoint",
    "Explain the water cycle with everyday examples",
    "Create a packing list for a week of winter camping",
    "Propose a plan to reduce a team's meeting load",
)
_AUDIENCES = ("for a beginner", "for a busy manager", "for a technical reviewer", "in plain language")
_USE_CASES = (
    "Business email writing",
    "Personal finance planning",
    "Python code debugging",
    "Travel itinerary planning",
    "Science explanation for students",
    "Product description writing",
    "Data analysis reporting",
    "Health and fitness coaching",
    "Customer support replies",
    "Meal and recipe planning",
    "Software architecture review",
    "History lesson preparation",
    "Marketing copy drafting",
    "Contract and policy summarizing",
    "Job application coaching",
    "Home repair guidance",
)  # many: instructions of different metadata seldom share a use case and a task
_SKILLS = (
    "persuasive writing",
    "logical reasoning",
    "budget arithmetic",
    "code comprehension",
    "concise summarization",
    "audience adaptation",
    "step-by-step planning",
    "error diagnosis",
    "statistical interpretation",
    "creative ideation",
    "time management",
    "comparative analysis",
)
_DOMAINS = (
    "software engineering",
    "personal finance",
    "health and fitness",
    "travel",
    "education",
    "business communication",
    "natural science",
    "cooking",
    "history",
    "marketing",
)
_DIFFICULTIES = ("easy", "medium", "hard")
_FORMATS = (
    "under 150 words",
    "a bulleted summary",
    "include a worked example",
    "formal tone",
    "a table",
    "step-by-step answer",
    "include code",
    "plain language",
)
# Function words: "How do I sort a list?" and "How can I sort a list?" ask the same thing.
_STOP_TEXT = (
    "a an the i me my we our you your he she it its they them their this that these those is are was were "
    "be been am do does did doing can could would should will shall may might must have has had "
    "how what which who whom why when where to of in on for with without from by at as into about "
    "and or but if so than then there here some any please just also very"
)
_STOP_WORDS = frozenset(_STOP_TEXT.split())
_ANSWER_SENTENCES = (
    "The key point is to start from the constraints and work toward the goal.",
    "A practical approach breaks the task into small, checkable steps.",
    "It helps to state assumptions first, since they shape every later choice.",
    "One common mistake is to optimise early instead of measuring first.",
    "An example makes this concrete: begin with the simplest case and extend it.",
    "Finally, review the result against the original request before finishing.",
    "Trade-offs matter here, so weigh cost, time and risk side by side.",
    "Clear structure, such as headings or a short list, makes the answer easier to use.",
)


def _rubrics_asked(prompt: str) -> list[tuple[int, str, str]]:
    """(i, rubric, action) for each of the k rubrics a rubrics prompt asks for."""
    match = re.search(r"(\d+) rubrics", prompt)
    k = int(match.group(1)) if match else 4
    start = stable_hash(prompt, "rubrics")
    return [(i, *_RUBRICS[(start + i) % len(_RUBRICS)]) for i in range(1, k + 1)]


def rubrics_reply(prompt: str) -> str:
    lines = []
    for i, rubric, action in _rubrics_asked(prompt):
        lines.append(f"Rubric {i}: {rubric} ({_tag(prompt, str(i))})")
        lines.append(f"Action {i}: {action}")
    return "\n".join(lines)


DEFAULT_INSTRUCTION = "Write a detailed, well-structured answer to the user's request."


def tailor_reply(prompt: str) -> str:
    """The instruction with a constraint and a version tag on its first line; the lines under
    it (an input block) follow unchanged. A one-line instruction gives one line."""
    base = _instruction_in(prompt) or DEFAULT_INSTRUCTION
    constraint = _pick(_CONSTRAINTS, prompt, "constraint")
    first, newline, rest = base.partition("\n")
    added = f"{constraint} (v{_tag(prompt, 'tailor')[:4]})"
    # before the colon that introduces an input, which stays the line's end
    first = f"{first[:-1].rstrip()} {added}:" if newline and first.endswith(":") else f"{first} {added}"
    return f"Improved Instruction: {first}{newline}{rest}"


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


# Where an instruction's task takes place: with the task, the audience and the metadata, they
# keep the instructions of different metadata apart for the dedup stage's embeddings.
_PLACES = (
    "at a small hospital",
    "for a school robotics club",
    "in a family-run restaurant",
    "at a fintech startup",
    "for a city library",
    "in a remote mountain village",
    "for a football team",
    "at a busy airport",
    "for a local animal shelter",
    "in a university physics lab",
    "for a wedding planner",
    "at a car repair shop",
)
_CITIES = (
    "Porto", "Nairobi", "Osaka", "Lima", "Oslo", "Denver", "Kraków", "Hanoi",
    "Cork", "Tunis", "Quito", "Perth", "Leeds", "Bergen", "Accra", "Tallinn",
    "Dakar", "Seville", "Busan", "Halifax", "Tbilisi", "Recife", "Graz", "Nagpur",
)  # fmt: skip
# Steps coprime with len(_TASKS) == 48: the first 48 indices of one prompt get distinct tasks.
_TASK_STEPS = (1, 5, 7, 11, 13, 17, 19, 23)
# The metadata's labels in the paper set's decode prompt and in the small-model set's.
_DECODE_USE = re.compile(r"^(?:Use case of the instructions|Intended use):[ \t]*(.+)$", re.M)
_DECODE_SKILLS = re.compile(r"^(?:Skills required to respond to the instructions|Required abilities):[ \t]*(.+)$", re.M)
_DECODE_RICH = tuple(
    re.compile(rf"^{label}:[ \t]*(.+)$", re.M) for label in ("Domain", "Difficulty", "Format constraints")
)  # format constraints last


def decode_reply(prompt: str) -> str:
    """Instructions that name the prompt's use case and skills. As from a real model sampling
    at some temperature: the same metadata gives the same tasks, places and audiences, whatever
    the order of its skills (the topic key is the use case, the skill set and the rich fields),
    while the wording follows the prompt's own text (its skills in their order, a case tag of
    the prompt). So the same prompt gives the same list (the dedup stage's exact pass drops a
    repeat), a paraphrased seed's metadata, its skills in another order, gives near duplicates
    (the embedding pass), and different metadata gives instructions apart from each other."""
    n, use_case, skills, topic = _decode_asked(prompt)
    return "\n".join(f"{i}. {_instruction(prompt, topic, i, use_case, skills)}" for i in range(1, n + 1))


def _decode_asked(prompt: str) -> tuple[int, str, list[str], str]:
    """What a decode prompt asks for: the number of instructions, the use case, the skills in
    the prompt's order, and the topic key (see `_topic_key`)."""
    match = re.search(r"[Gg]enerate (\d+)", prompt)
    n = int(match.group(1)) if match else 10
    use_case = _last(_DECODE_USE, prompt) or "General assistance"
    skills = [s.strip() for s in _last(_DECODE_SKILLS, prompt).split(",") if s.strip()] or ["clear explanation"]
    return n, use_case, skills, _topic_key(prompt, use_case, skills)


def _last(pattern: re.Pattern[str], prompt: str) -> str:
    """The last line the pattern finds (the few-shot examples come before the metadata)."""
    found = pattern.findall(prompt)
    return found[-1].strip() if found else ""


def _topic_key(prompt: str, use_case: str, skills: list[str]) -> str:
    """What the instructions are about: the metadata as a set, blind to the skills' order."""
    rich = [_last(pattern, prompt) for pattern in _DECODE_RICH]
    formats = sorted(f.strip() for f in rich[-1].split(";") if f.strip())
    return "\x1e".join([use_case, *sorted(skills), *rich[:-1], *formats])


@dataclass(frozen=True)
class _Subject:
    """What the i-th instruction of a metadata is about."""

    task: str
    place: str
    city: str
    audience: str
    drawing_on: str  # the skills it names, in the prompt's order
    use_case: str = ""


def _subject(topic: str, i: int, skills: list[str], use_case: str = "") -> _Subject:
    start, step = stable_hash(topic, "task"), _TASK_STEPS[stable_hash(topic, "step") % len(_TASK_STEPS)]
    # Two skills (the i-th pair of the set), in the prompt's order: a paraphrase's wording.
    left_out = sorted(skills)[i % len(skills)] if len(skills) > 2 else None
    return _Subject(
        task=_TASKS[(start + i * step) % len(_TASKS)],
        place=_pick(_PLACES, topic, str(i), "place"),
        city=_pick(_CITIES, topic, str(i), "city"),
        audience=_pick(_AUDIENCES, topic, str(i), "audience"),
        drawing_on=" and ".join(s for s in skills if s != left_out),
        use_case=use_case,
    )


def _instruction(prompt: str, topic: str, i: int, use_case: str, skills: list[str]) -> str:
    s = _subject(topic, i, skills)
    return (
        f"{use_case}: {s.task} {s.place} in {s.city} {s.audience}, drawing on {s.drawing_on} (case {_tag(prompt)}-{i})."
    )


def encode_reply(prompt: str) -> str:
    """Metadata picked by a hash of the seed's content words, so paraphrases of one request
    ("How do I sort a list in Python?", "How can I sort a Python list?") get the same use case
    and the same skills, as from a real encoder; the skills' order, as a sampling model's
    would, follows the seed's own text (the same seed, up to case and white space, the same
    order). The rich fields come when the prompt asks for them."""
    return "\n".join(f"{label}: {value}" for label, value in _encode_lines(encode_fields(prompt)))


def encode_fields(prompt: str) -> dict[str, Any]:
    """The metadata the double gives an encode prompt, as MetadataSummary's fields: use_case
    and skills, and domain, difficulty and format_constraints when the prompt asks for them."""
    seed, asked = _seed_in(prompt)
    key = " ".join(content_words(seed)) or seed  # a seed of stop words only is its own key
    fields: dict[str, Any] = {
        "use_case": _pick(_USE_CASES, key, "use case"),
        "skills": tuple(_ordered(_skill_set(key), normalise_text(seed))),
    }
    if "Difficulty:" in asked:
        first = stable_hash(key, "formats")
        formats = [_FORMATS[(first + j) % len(_FORMATS)] for j in range(1 + stable_hash(key, "format count") % 2)]
        fields["domain"] = _pick(_DOMAINS, key, "domain")
        fields["difficulty"] = _pick(_DIFFICULTIES, key, "difficulty")
        fields["format_constraints"] = tuple(formats)
    return fields


def _encode_lines(fields: dict[str, Any]) -> list[tuple[str, str]]:
    lines = [("Use case", fields["use_case"]), ("Skills", ", ".join(fields["skills"]))]
    if "domain" in fields:
        lines += [
            ("Domain", fields["domain"]),
            ("Difficulty", fields["difficulty"]),
            ("Format constraints", "; ".join(fields["format_constraints"])),
        ]
    return lines


def _skill_set(key: str, size: int = 3) -> list[str]:
    """`size` distinct skills, any combination of them (not a run of neighbours: unrelated
    seeds rarely share a set, and a shared set means shared instruction topics)."""
    pool = list(_SKILLS)
    chosen = []
    for j in range(size):
        chosen.append(pool.pop(stable_hash(key, "skills", str(j)) % len(pool)))
    return sorted(chosen)


def _ordered(items: list[str], text: str) -> list[str]:
    """`items` in an order drawn from `text`."""
    return sorted(items, key=lambda item: stable_hash(text, "order", item))


def _seed_in(prompt: str) -> tuple[str, str]:
    """The seed an encode prompt holds (in its last <instruction> block, else the whole
    prompt), and the prompt's own text around it."""
    head, found, tail = prompt.rpartition("<instruction>")
    seed, closed, rest = tail.partition("</instruction>")
    if not found or not closed:
        return prompt, prompt
    return seed, head + rest


def content_words(text: str) -> tuple[str, ...]:
    """The words that carry a request's meaning: lower-cased, punctuation and stop words
    dropped, as a sorted set (word order and function words do not change the request)."""
    words = re.sub(r"[^\w\s]|_", " ", text.casefold()).split()
    return tuple(sorted({w for w in words if len(w) > 1 and w not in _STOP_WORDS}))


def answer_reply(prompt: str, model: str) -> str:
    """A plain answer that depends on the model name, so the strong and the target answers
    to one instruction differ (and so do their judge scores)."""
    key = prompt
    count = 2 + stable_hash(key, model, "count") % 3
    start = stable_hash(key, model, "start")
    sentences = [_ANSWER_SENTENCES[(start + j) % len(_ANSWER_SENTENCES)] for j in range(count)]
    return f"Answer from {model}: " + " ".join(sentences) + f" (ref {_tag(key, model)})"


def judge_reply(prompt: str) -> str:
    """The two scores on one line, then an explanation line, unless the prompt asks for the
    scores and nothing else (the paper set's judge): then the scores line alone."""
    s1, s2 = judge_scores(prompt)
    if _scores_only(prompt):
        return f"{s1} {s2}"
    better = "Assistant 1" if s1 >= s2 else "Assistant 2"
    return (
        f"{s1} {s2}\nAssistant 1 scores {s1} and Assistant 2 scores {s2}; "
        f"{better} is more helpful, relevant and detailed."
    )


def _scores_only(prompt: str) -> bool:
    """The judge prompt's own text after the answers says "nothing else" (the answers, data,
    may say anything)."""
    _, found, after = prompt.rpartition(JUDGE_A2_END)
    return bool(found) and "nothing else" in after.casefold()


STYLES = ("plain", "chat")


def answer_for(kind: str, messages: list[dict[str, Any]], model: str, style: str = "plain") -> str:
    """The double's reply to a prompt of `kind` (from classify), in `style` (plain or chat)."""
    prompt = classify_text(messages)[1] if kind != "answer" else _all_text(messages)
    chat = style == "chat"
    if kind == "judge":
        return judge_reply(prompt)
    if kind == "rubrics":
        return chat_rubrics_reply(prompt) if chat else rubrics_reply(prompt)
    if kind == "tailor":
        return chat_tailor_reply(prompt) if chat else tailor_reply(prompt)
    if kind == "decode":
        return chat_decode_reply(prompt) if chat else decode_reply(prompt)
    if kind == "encode":
        return chat_encode_reply(prompt) if chat else encode_reply(prompt)
    return chat_answer_reply(prompt, model) if chat else answer_reply(prompt, model)


# ---------------------------------------------------------------- the chat style
#
# Answers as strong chat models write them: a preamble, markdown around the items, closing
# remarks, and instructions that hold code spans, `__dunder__` names, maths, quotes and an input
# block after a colon. The instruction texts are pure functions of the prompt
# (`chat_decode_instructions`, `chat_tailored_instruction`) and the replies are built from them,
# so a test can compare what the pipeline kept with what the double meant, verbatim.

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


def _all_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in messages)


def count_tokens(text: str) -> int:
    """Words stand in for tokens: close enough for cost accounting in tests."""
    return len(text.split())


def chat_body(model: str, content: str | None, *, finish_reason: str, prompt_tokens: int) -> dict[str, Any]:
    """An OpenAI-shaped response body; content None gives an empty choices list."""
    choices = (
        []
        if content is None
        else [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}]
    )
    completion_tokens = count_tokens(content or "")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def truncate_words(text: str, limit: int) -> str:
    return " ".join(text.split(" ")[: max(1, limit)])


# ---------------------------------------------------------------- configuration and stats


@dataclass
class DoubleConfig:
    """The double's knobs. Rates are probabilities of one fault per request; their sum is at
    most 1 (one uniform draw picks at most one fault)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float | None = None
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    hang_s: float = 30.0
    rate_malformed: float = 0.0
    rate_empty_choices: float = 0.0
    rate_length: float = 0.0
    rate_bad_json: float = 0.0  # a 200 whose body is cut short, as a dying proxy sends
    max_concurrency: int | None = None
    random_seed: int | None = None
    down: bool = False
    # Test aids beyond faults drawn at random:
    max_faults: int | None = None  # stop drawing faults after this many ("fail 3 times, then answer")
    force_status: int | None = None  # every chat request gets this status (400, 401, 404, ...)
    api_key: str | None = None  # when set, requests must carry "Authorization: Bearer <api_key>"
    echo_headers: bool = False  # error bodies echo the request headers, as careless servers do
    style: str = "plain"  # "plain": tidy answers; "chat": formatted as strong chat models write them

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}: {self.style!r}")
        rates = self.fault_rates()
        if any(not 0.0 <= r <= 1.0 for r in rates.values()) or sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1: {rates}")
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.hang_s < 0:
            raise ValueError("latency_ms, jitter_ms and hang_s are not negative")

    def fault_rates(self) -> dict[str, float]:
        return {
            "429": self.rate_429,
            "5xx": self.rate_5xx,
            "timeout": self.rate_timeout,
            "malformed": self.rate_malformed,
            "empty_choices": self.rate_empty_choices,
            "length": self.rate_length,
            "bad_json": self.rate_bad_json,
        }


def draw_fault(rates: dict[str, float], u: float) -> str | None:
    """The fault a uniform draw u in [0, 1) lands on, or None for a clean answer."""
    edge = 0.0
    for fault, rate in rates.items():
        edge += rate
        if u < edge:
            return fault
    return None


@dataclass
class DoubleStats:
    calls: int = 0
    by_kind: Counter[str] = dataclasses.field(default_factory=Counter)
    by_status: Counter[int] = dataclasses.field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "by_kind": {k: self.by_kind.get(k, 0) for k in KINDS},
            "by_status": {str(s): n for s, n in sorted(self.by_status.items())},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


# ---------------------------------------------------------------- the server


class LLMDouble:
    """The LLM double server. `async with LLMDouble(DoubleConfig(...)) as double:` starts it on
    a free port; `double.base_url` is what an EndpointSettings needs."""

    def __init__(self, config: DoubleConfig | None = None):
        self.config = config or DoubleConfig()
        self._rng = random.Random(self.config.random_seed)
        self._stats = DoubleStats()
        self._faults = 0
        self._five_xx = 0
        self._runner: web.AppRunner | None = None
        self.base_url: str | None = None
        self.last_request: dict[str, Any] | None = None  # the last chat request body, for tests

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- control, also reachable over HTTP

    def configure(self, **changes: Any) -> DoubleConfig:
        """Change knobs while running; a new random_seed restarts the fault sequence."""
        self.config = dataclasses.replace(self.config, **changes)
        if "random_seed" in changes:
            self._rng = random.Random(self.config.random_seed)
        return self.config

    def stats(self) -> dict[str, Any]:
        return self._stats.as_json()

    def reset(self) -> None:
        in_flight = self._stats.in_flight  # requests still running decrement it later
        self._stats = DoubleStats(in_flight=in_flight, max_in_flight=in_flight)
        self._faults = 0
        self._five_xx = 0

    # -- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/stats", self._stats_handler)
        app.router.add_post("/reset", self._reset_handler)
        app.router.add_post("/control", self._control_handler)
        # handler_cancellation: a request whose client gave up (timeout) stops, as on real
        # servers; a short shutdown_timeout so hanging requests do not delay stop().
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "llm-double", "object": "model", "owned_by": "codeclm"}]}
        )

    async def _stats_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset_handler(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.stats())

    async def _control_handler(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("body is not an object")
            config = self.configure(**changes)
        except (ValueError, TypeError) as exc:  # bad JSON, unknown field, invalid rates
            return _error(400, f"bad control request: {exc}")
        return web.json_response(dataclasses.asdict(config))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        stats = self._stats
        stats.calls += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            response = await self._answer(request)
        finally:
            self._stats.in_flight -= 1
        self._stats.by_status[response.status] += 1
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        config = self.config
        echo = dict(request.headers) if config.echo_headers else None
        try:
            body = orjson.loads(await request.read())  # orjson: the double shares the cores it benchmarks
            messages = body["messages"]
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise TypeError("messages is not a list of objects")
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"invalid request: {exc}", echo)
        self.last_request = body
        model = str(body.get("model") or "llm-double")
        max_tokens = body.get("max_tokens")
        kind = classify(messages)
        self._stats.by_kind[kind] += 1

        if config.api_key is not None and request.headers.get("Authorization") != f"Bearer {config.api_key}":
            return _error(401, "invalid api key", echo)
        if config.down:
            return _error(503, "the double is down", echo)
        if config.force_status is not None:
            return _error(config.force_status, f"forced status {config.force_status}", echo)
        if config.max_concurrency is not None and self._stats.in_flight > config.max_concurrency:
            return _error(429, "too many requests in flight", echo, retry_after=config.retry_after_s)

        fault = self._draw_fault()
        if fault == "429":
            return _error(429, "rate limited", echo, retry_after=config.retry_after_s)
        await asyncio.sleep(self._latency_s())
        if fault == "5xx":
            status = FIVE_XX_CYCLE[self._five_xx % len(FIVE_XX_CYCLE)]
            self._five_xx += 1
            return _error(status, "server error", echo)
        if fault == "timeout":
            await asyncio.sleep(config.hang_s)

        answer = answer_for(kind, messages, model, config.style)
        content: str | None = answer
        finish_reason = "stop"
        if fault == "malformed":
            content = MALFORMED_TEXT
        elif fault == "empty_choices":
            content = None
        elif fault == "length":
            content, finish_reason = truncate_words(answer, count_tokens(answer) // 2), "length"
        elif isinstance(max_tokens, int) and count_tokens(answer) > max_tokens:
            content, finish_reason = truncate_words(answer, max_tokens), "length"

        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in messages)
        reply = chat_body(model, content, finish_reason=finish_reason, prompt_tokens=prompt_tokens)
        self._stats.prompt_tokens += prompt_tokens
        self._stats.completion_tokens += reply["usage"]["completion_tokens"]
        if fault == "bad_json":
            return web.Response(text=json.dumps(reply)[:40], content_type="application/json")
        return web.Response(body=orjson.dumps(reply), content_type="application/json")

    def _draw_fault(self) -> str | None:
        if self.config.max_faults is not None and self._faults >= self.config.max_faults:
            return None
        fault = draw_fault(self.config.fault_rates(), self._rng.random())
        if fault is not None:
            self._faults += 1
        return fault

    def _latency_s(self) -> float:
        c = self.config
        jitter = self._rng.uniform(-c.jitter_ms, c.jitter_ms) if c.jitter_ms else 0.0
        return max(0.0, c.latency_ms + jitter) / 1000


def _error(
    status: int, message: str, echo: dict[str, str] | None = None, *, retry_after: float | None = None
) -> web.Response:
    error: dict[str, Any] = {"message": message, "type": "llm_double_error", "code": status}
    if echo is not None:
        error["request_headers"] = echo
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return web.json_response({"error": error}, status=status, headers=headers)


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm.double",
        description="Run the LLM double: a deterministic OpenAI-compatible chat server for tests and benchmarks.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    defaults = DoubleConfig()
    for field in dataclasses.fields(DoubleConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if field.name in ("down", "echo_headers"):
            p.add_argument(flag, action="store_true")
        elif field.name in ("retry_after_s",):
            p.add_argument(flag, type=float, default=default)
        elif field.name in ("max_concurrency", "random_seed", "max_faults", "force_status"):
            p.add_argument(flag, type=int, default=default)
        elif field.name == "api_key":
            p.add_argument(flag, default=default, help="require this bearer key")
        elif field.name == "style":
            p.add_argument(
                flag, choices=STYLES, default=default, help="plain: tidy answers; chat: as strong chat models write"
            )
        else:
            p.add_argument(flag, type=float, default=default)
    return p


async def _serve(args: argparse.Namespace) -> None:
    names = {f.name for f in dataclasses.fields(DoubleConfig)}
    config = DoubleConfig(**{k: v for k, v in vars(args).items() if k in names})
    double = LLMDouble(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    base_url = await double.start(args.host, args.port)
    print(f"LLM double listening on {base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await double.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:  # invalid knobs
        print(f"llm double: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
