"""Prompts the LLM double's tests share: hand-written ones of each kind, the stages' own
prompts of both prompt sets, and the text the double reads from a conversation."""

from __future__ import annotations

import json

from agents import decode, encode
from agents.prompt_sets import PROMPT_SETS, load_prompt_set
from llm.double.prompts import classify_text
from schemas import MetadataSummary
from tests.paths import ROOT


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def judge_prompt(first: str, second: str) -> str:
    return (
        "Rate the two answers to the question.\n[Question]\nWhat is 2+2?\n"
        f"[The Start of Assistant 1's Answer]\n{first}\n[The End of Assistant 1's Answer]\n"
        f"[The Start of Assistant 2's Answer]\n{second}\n[The End of Assistant 2's Answer]\n"
        "Output the two scores on the first line."
    )


DECODE = "Use case: Travel planning\nSkills: budgeting\nGenerate 7 instructions as a numbered list, without answers."
TAILOR = "#Instruction#: Plan a trip to Rome.\n#Action#: Add a budget constraint.\nImproved Instruction:"
RUBRICS = "Use case: Travel planning\nWrite 3 rubrics with actions.\nRubric 1: ...\nAction 1: ..."


def encode_prompt(seed: str, *, rich: bool = False) -> list[dict[str, str]]:
    """The real encode prompt, so the double is checked against what it serves."""
    return encode.build_prompt(seed, max_skills=3, rich=rich)


def rich_decode_prompt() -> list[dict[str, str]]:
    summary = MetadataSummary(
        use_case="Travel planning",
        skills=("budgeting",),
        domain="travel",
        difficulty="easy",
        format_constraints=("a table",),
    )
    return decode.build_prompt(summary, n=3, rich=True)


SETS = [load_prompt_set(name) for name in PROMPT_SETS]
META = MetadataSummary(use_case="Travel planning", skills=("budgeting", "route planning", "packing"))
RICH_META = MetadataSummary(
    use_case="Travel planning",
    skills=("budgeting", "route planning"),
    domain="travel",
    difficulty="hard",
    format_constraints=("a table", "under 150 words"),
)
SEED_TEXTS = [json.loads(line)["text"] for line in (ROOT / "examples" / "seeds.jsonl").read_text().splitlines()]
MULTILINE = (
    "Review this function and say what it returns for a negative input:\n\n```python\ndef f(x):\n    return x**2\n```"
)


def prompt_text(messages: list[dict[str, str]]) -> str:
    return classify_text(messages)[1]
