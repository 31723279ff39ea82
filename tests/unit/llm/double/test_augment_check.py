"""The double answers augmentation's check (the `augment` prompt of both sets) with Yes or No:
the same combination always the same verdict, about three in four Yes, in both styles."""

from __future__ import annotations

import pytest

from agents.augment import Candidate, build_check_prompt, parse_check
from agents.prompt_sets import PROMPT_SETS, load_prompt_set
from llm.double import STYLES, answer_for, classify


def candidate(i: int, order: int = 1) -> Candidate:
    skills = (f"skill {i}", "clear writing")[::order]
    return Candidate(f"use case {i}", skills, None, ("meta-a", "meta-b"), 1)


@pytest.mark.parametrize("prompt_set", PROMPT_SETS)
@pytest.mark.parametrize("style", STYLES)
def test_the_check_is_answered_yes_or_no_the_same_for_the_same_combination(prompt_set, style) -> None:
    prompts = load_prompt_set(prompt_set)
    verdicts = []
    for i in range(40):
        messages = build_check_prompt(candidate(i), prompts)
        assert classify(messages) == "augment"
        verdict = parse_check(answer_for("augment", messages, "strong", style))
        swapped = parse_check(answer_for("augment", build_check_prompt(candidate(i, -1), prompts), "strong", style))
        assert isinstance(verdict, bool) and verdict is swapped  # the skills' order does not count
        verdicts.append(verdict)
    assert 20 <= sum(verdicts) < 40  # mostly Yes, never all: a run meets both answers
