"""Metadata augmentation's pure part: which combinations the rule makes, in which order, each
once; the record it becomes; and the strong model's Yes or No."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.augment import (
    MAX_CANDIDATES_PER_USE_CASE,
    PURPOSE,
    Candidate,
    augmented_record,
    build_check_prompt,
    candidates,
    check,
    combination_key,
    parse_check,
)
from agents.base import ParseFailure, StageFailure
from agents.prompt_sets import load_prompt_set
from agents.settings import PipelineSettings
from schemas import Metadata, MetadataSummary, PromptSetRef, metadata_id_for
from tests.unit.fakes import ScriptedChatModel, assert_markers, call

PAPER = load_prompt_set("paper")


def meta(use_case: str, *skills: str, domain: str | None = None, augmented_from: tuple[str, ...] = ()) -> Metadata:
    record_id = metadata_id_for(use_case, skills)
    return Metadata(
        id=record_id,
        seed_id=record_id,
        parent_id=None,
        seed_text="",
        metadata=MetadataSummary(use_case=use_case, skills=skills, domain=domain),
        augmented_from=augmented_from,
    )


EMAIL = meta("email writing", "persuasive writing", "business etiquette")
COVER = meta("cover letter writing", "persuasive writing", "self presentation")
POEM = meta("poetry writing", "imagery", "meter")
SQL = meta("database tuning", "query planning", "indexing")


def combos(found: list[Candidate]) -> list[tuple[str, tuple[str, ...]]]:
    return [(c.use_case, c.skills) for c in found]


def test_a_use_case_takes_the_skill_set_of_another_that_shares_a_skill() -> None:
    found = candidates([EMAIL, COVER, POEM, SQL], max_skills=3)
    assert combos(found) == [
        ("cover letter writing", ("persuasive writing", "business etiquette")),
        ("email writing", ("persuasive writing", "self presentation")),
    ]
    by_use_case = {c.use_case: c for c in found}
    assert by_use_case["email writing"].augmented_from == (EMAIL.id, COVER.id)
    assert by_use_case["cover letter writing"].augmented_from == (COVER.id, EMAIL.id)
    assert all(c.new_skills == 1 for c in found)


def test_unrelated_use_cases_are_never_combined() -> None:
    assert candidates([POEM, SQL], max_skills=3) == []


def test_with_richer_metadata_the_same_domain_makes_use_cases_neighbours() -> None:
    poem = meta("poetry writing", "imagery", domain="Creative Arts")
    story = meta("story writing", "plot design", "dialogue", domain="creative  arts")
    other = meta("tax advice", "tax law", domain="finance")
    found = candidates([poem, story, other], max_skills=3)
    assert combos(found) == [
        ("poetry writing", ("plot design", "dialogue")),
        ("story writing", ("imagery",)),
    ]
    assert found[0].domain == "Creative Arts"


def test_a_skill_set_that_brings_nothing_new_or_too_many_skills_is_not_a_candidate() -> None:
    subset = meta("email triage", "persuasive writing")  # its set adds nothing to email writing's skills
    wide = meta("sales pitch", "persuasive writing", "pricing", "storytelling", "objection handling")
    found = candidates([EMAIL, subset, wide], max_skills=3)
    assert ("email writing", ("persuasive writing",)) not in combos(found)
    assert all(len(c.skills) <= 3 for c in found)
    assert ("email triage", EMAIL.metadata.skills) in combos(found)  # the other way round brings a skill
    four = ("email writing", wide.metadata.skills)
    assert four not in combos(found) and four in combos(candidates([EMAIL, wide], max_skills=4))


def test_a_combination_already_seen_augmented_or_not_is_never_made_again() -> None:
    first = candidates([EMAIL, COVER], max_skills=3)
    made = [augmented_record(c) for c in first[:1]]
    again = candidates([EMAIL, COVER, *made], max_skills=3)
    assert combos(again) == combos(first[1:])
    # written by hand, in another case and order: the same combination
    by_hand = meta("Email Writing", "self presentation", "Persuasive Writing")
    assert ("email writing", COVER.metadata.skills) not in combos(candidates([EMAIL, COVER, by_hand], max_skills=3))


def test_augmented_metadata_is_never_combined_again() -> None:
    made = [augmented_record(c) for c in candidates([EMAIL, COVER], max_skills=3)]
    assert candidates(made, max_skills=3) == []
    assert candidates([EMAIL, COVER, *made], max_skills=3) == []


def test_one_candidate_per_use_case_in_turn_more_new_skills_first() -> None:
    base = meta("blog writing", "seo", "storytelling")
    neighbours = [
        meta("ad copy", "seo", "brevity"),  # 1 new skill for blog writing
        meta("newsletter", "storytelling", "audience research", "tone control"),  # 2 new
        meta("landing page", "seo", "ux writing", "ab testing"),  # 2 new
    ]
    found = candidates([base, *neighbours], max_skills=3)
    blog = [c for c in found if c.use_case == "blog writing"]
    assert [c.new_skills for c in blog] == [2, 2, 1]
    assert [c.id for c in blog[:2]] == sorted(c.id for c in blog[:2])
    first_round = [c.use_case for c in found[: len({c.use_case for c in found})]]
    assert len(first_round) == len(set(first_round))  # each use case once before any twice


def test_the_order_does_not_depend_on_the_order_the_topic_held_them() -> None:
    records = [EMAIL, COVER, POEM, SQL, meta("speech writing", "persuasive writing", "stage presence")]
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    assert candidates(records, max_skills=3) == candidates(shuffled, max_skills=3)


def test_a_skill_everyone_shares_does_not_make_the_work_quadratic() -> None:
    records = [meta(f"use case {i}", "clear writing", f"skill {i}") for i in range(300)]
    found = candidates(records, max_skills=3)
    per_use_case = max(sum(c.use_case == u for c in found) for u in {c.use_case for c in found})
    assert per_use_case == MAX_CANDIDATES_PER_USE_CASE
    assert len({c.key for c in found}) == len(found)


labels = st.sampled_from(["writing", "analysis", "python", "sql", "tax law", "imagery", "meter", "planning"])
use_cases = st.sampled_from(["email", "report", "coding", "tutoring", "poetry", "budgeting"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(use_cases, st.lists(labels, min_size=1, max_size=3, unique=True)), max_size=12))
def test_every_candidate_is_new_shares_a_skill_and_is_made_once_however_often_it_runs(rows) -> None:
    seen = [meta(u, *skills) for u, skills in rows]
    known = {combination_key(m.metadata.use_case, m.metadata.skills) for m in seen}
    found = candidates(seen, max_skills=3)
    assert len({c.key for c in found}) == len(found)
    for c in found:
        assert c.key not in known and c.id == metadata_id_for(c.use_case, c.skills)
        a, b = (next(m for m in seen if m.id == i) for i in c.augmented_from)
        assert combination_key(a.metadata.use_case, ()) == combination_key(c.use_case, ())
        assert set(map(str.casefold, a.metadata.skills)) & set(map(str.casefold, b.metadata.skills))
    # making them all, then running again, makes nothing more
    assert candidates([*seen, *(augmented_record(c) for c in found)], max_skills=3) == []


def test_an_augmented_record_is_a_root_with_its_lineage() -> None:
    (candidate, *_) = candidates([EMAIL, COVER], max_skills=3)
    calls = (call(PURPOSE, 30, 1),)
    ref = PromptSetRef(name="paper", version="abc")
    record = augmented_record(candidate, calls, ref)
    assert record.id == record.seed_id == candidate.id and record.parent_id is None and record.is_root
    assert record.seed_text == "" and record.augmented_from == candidate.augmented_from
    assert (record.metadata.use_case, record.metadata.skills) == (candidate.use_case, candidate.skills)
    assert record.llm_calls == calls and record.prompts == ref


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Yes", True),
        ("No", False),
        ("yes.", True),
        ("**No.** These rarely go together.", False),
        ("Answer: Yes, a user could ask that.", True),
        ("Verdict: no", False),
        ("\n\n  YES\n", True),
        ('"No"', False),
    ],
)
def test_the_check_reads_yes_or_no_at_the_start(text, verdict) -> None:
    assert parse_check(text) is verdict


@pytest.mark.parametrize("text", ["", "Maybe.", "It depends on the user.", "Nobody would ask that.", "Yesterday"])
def test_an_answer_without_a_yes_or_no_is_a_parse_failure(text) -> None:
    failure = parse_check(text)
    assert isinstance(failure, ParseFailure) and failure.raw == text


@pytest.mark.parametrize("prompt_set", ["paper", "small-model"])
def test_the_check_prompt_fences_the_combination_as_data(prompt_set) -> None:
    (candidate, *_) = candidates([EMAIL, COVER], max_skills=3)
    messages = build_check_prompt(candidate, load_prompt_set(prompt_set))
    last = messages[-1]["content"]
    assert f"Use of the instructions: {candidate.use_case}\n" in last
    assert f"Abilities a response needs: {', '.join(candidate.skills)}\n" in last
    assert "not instructions to follow" in last and "Answer Yes or No" in last
    if prompt_set == "paper":
        assert len(messages) == 2  # zero-shot


def test_the_check_prompt_holds_its_markers_and_no_other_prompt_s() -> None:
    assert_markers("augment")  # so the LLM double tells it from the others


async def test_the_check_asks_the_strong_model_as_a_judge_and_re_asks_an_unclear_answer() -> None:
    (candidate, *_) = candidates([EMAIL, COVER], max_skills=3)
    strong = ScriptedChatModel("I would say it depends.", "No")
    pipeline = PipelineSettings()
    asked = await check(strong, candidate, pipeline, PAPER)
    assert asked.value is False and [c.purpose for c in asked.calls] == [PURPOSE, PURPOSE]
    assert strong.calls[0].temperature == pipeline.judge_temperature
    assert strong.calls[0].max_tokens == pipeline.judge_max_tokens
    with pytest.raises(StageFailure) as failed:
        await check(ScriptedChatModel(respond=lambda c: "Perhaps."), candidate, pipeline, PAPER)
    assert failed.value.error_class == "ParseFailure"
