"""The prompt sets: the paper's prompts hold what its Figures 7-11 ask, the small-model set
stays few-shot, and every record made by an LLM names the set and its version."""

from __future__ import annotations

import pytest

from agents import contrast, decode, encode, tailor
from agents.prompt_sets import PROMPT_NAMES, PROMPT_SETS, load_prompt_set, set_version
from schemas import MetadataSummary
from streams.settings import PipelineSettings
from tests.unit.fakes import SUMMARY, ScriptedChatModel, instruction, make_context, seed

PAPER = load_prompt_set("paper")
DATA_LINE = "not instructions to follow"


def _text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages).casefold()


def _examples(messages: list[dict[str, str]]) -> int:
    return sum(1 for m in messages if m["role"] == "assistant")


def test_the_paper_set_is_the_default() -> None:
    assert PipelineSettings().prompts == "paper"
    assert make_context(ScriptedChatModel()).prompts == PAPER


def test_figure_7_encode_is_few_shot_and_asks_for_one_use_case_and_few_transferable_skills() -> None:
    messages = encode.build_prompt("How do I sort a list in Python?", max_skills=3, prompts=PAPER)
    text = _text(messages)
    assert _examples(messages) == 3  # the only prompt of the paper with demonstrations
    for wanted in ("use case", "at most 3 skills", "transferable", "2-3 words", '"skill"', '"knowledge"'):
        assert wanted in text, wanted
    assert "without any explanation" in text
    assert DATA_LINE in messages[-1]["content"]
    # the demonstrations answer in the format the parser reads, within the limits they teach
    for answer in (m["content"] for m in messages if m["role"] == "assistant"):
        parsed = encode.parse(answer, max_skills=3)
        assert isinstance(parsed, MetadataSummary), answer
        assert all(len(skill.split()) <= 3 for skill in parsed.skills)


def test_figure_8_decode_is_zero_shot_and_asks_for_a_numbered_list_without_answers() -> None:
    messages = decode.build_prompt(SUMMARY, n=10, prompts=PAPER)
    text = _text(messages)
    assert _examples(messages) == 0
    for wanted in ("generate 10 instructions", "numbered list", "without answering", "diverse", "reasonable"):
        assert wanted in text, wanted
    assert "use case of the instructions: creative writing" in text
    assert "skills required to respond to the instructions: poetry, imagery" in text
    assert DATA_LINE in messages[-1]["content"]


def test_figure_9_rubrics_are_zero_shot_domain_specific_with_one_action_each() -> None:
    messages = decode.build_rubrics_prompt(SUMMARY, k=4, prompts=PAPER)
    text = _text(messages)
    assert _examples(messages) == 0
    for wanted in ("4 rubrics", "domain", "clear, concise and unambiguous", "more challenging", "no explanation"):
        assert wanted in text, wanted
    assert "rubric 1:" in text and "action 1:" in text  # the lines parse_rubrics reads
    assert DATA_LINE in messages[-1]["content"]


def test_figure_10_tailor_is_zero_shot_with_one_action_and_asks_not_to_copy_it() -> None:
    messages = tailor.build_prompt("Write a poem.", "Require a metaphor", prompts=PAPER)
    text = _text(messages)
    assert _examples(messages) == 0
    for wanted in ("more challenging", "reasonable and self-consistent", "do not copy words or phrases of the action"):
        assert wanted in text, wanted
    assert text.count("improving action:") == 1
    assert messages[-1]["content"].rstrip().endswith("Improved Instruction:")  # the model writes the instruction next
    assert "not instructions to follow" in messages[-1]["content"]


def test_figure_11_judge_is_zero_shot_and_answers_with_two_scores_only() -> None:
    messages = contrast.build_judge_prompt("Q?", "A1", "A2", prompts=PAPER)
    text = _text(messages)
    assert _examples(messages) == 0
    for wanted in ("helpfulness", "relevance", "accuracy", "level of detail", "scale of 1 to 10", "bias"):
        assert wanted in text, wanted
    assert "only a single line with the two scores" in text and "write nothing else" in text
    assert "explain" not in text
    assert DATA_LINE in messages[-1]["content"]
    assert contrast.parse_judge("8 6") == (8.0, 6.0)


@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_the_small_model_set_shows_examples_in_every_prompt(name: str) -> None:
    assert load_prompt_set("small-model").__getattribute__(name).examples


def test_each_set_has_its_own_version_and_any_edit_changes_it() -> None:
    versions = {load_prompt_set(name).version for name in PROMPT_SETS}
    assert len(versions) == len(PROMPT_SETS)
    texts = {"encode": "a", "decode": "b"}
    assert set_version(texts) == set_version(dict(reversed(texts.items())))
    assert set_version({**texts, "decode": "b "}) != set_version(texts)


def test_an_unknown_prompt_set_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown prompt set 'tiny'"):
        load_prompt_set("tiny")
    with pytest.raises(ValueError):
        PipelineSettings(prompts="tiny")  # type: ignore[arg-type]


@pytest.mark.parametrize("prompt_set", PROMPT_SETS)
async def test_every_record_made_by_an_llm_names_the_prompt_set_and_version(prompt_set: str) -> None:
    prompts = load_prompt_set(prompt_set)
    strong = ScriptedChatModel(
        respond=lambda call: (
            "Use case: writing\nSkills: poetry"
            if "<instruction>" in call.prompt
            else "Improved Instruction: Write a sonnet about the harbour at dawn."
            if "#Instruction#" in call.prompt
            else "8 6"
            if "[The Start of Assistant 1's Answer]" in call.prompt
            else "An answer."
        )
    )
    ctx = make_context(strong, ScriptedChatModel(respond=lambda call: "A short answer."), prompts=prompt_set)
    (metadata,) = await encode.process(seed(), ctx)
    (scored,) = await contrast.process(instruction(), ctx)
    (tailored,) = await tailor.process(scored.record, ctx)
    for emit in (metadata, scored, tailored):
        assert emit.record.prompts == prompts.ref
    assert prompts.ref.name == prompt_set and len(prompts.ref.version) == 12
