"""What the double says, in either style: deterministic draws (`stable_hash`, the same in every
process) from its word tables, and the choices made from a prompt with them: the judge's
scores, the rubrics, the subject of each decoded instruction (task, place, city, audience), and
the metadata an encode prompt gets (`encode_fields`). plain.py and chat.py dress these up.
Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from llm.double.prompts import (
    JUDGE_A1_END,
    JUDGE_A1_START,
    JUDGE_A2_END,
    JUDGE_A2_START,
    _between,
    _seed_in,
    content_words,
)
from schemas.records import normalise_text


def stable_hash(*parts: str) -> int:
    """Same text, same number, in every process (unlike hash(), which is salted)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return int(digest[:15], 16)


def _tag(*parts: str) -> str:
    return f"{stable_hash(*parts):015x}"[:5]


def _pick(options: tuple[str, ...], *parts: str) -> str:
    return options[stable_hash(*parts) % len(options)]


def augment_sensible(use_case: str, skills: list[str]) -> bool:
    """Whether the double finds a combination sensible: about three in four are, picked by a
    hash of the use case and the set of skills (their order and case do not count)."""
    key = [use_case.casefold().strip(), *sorted(s.casefold() for s in skills)]
    return stable_hash(*key, "augment") % 4 != 0


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


DEFAULT_INSTRUCTION = "Write a detailed, well-structured answer to the user's request."


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
