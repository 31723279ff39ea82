"""Reading a prompt (llm/double/prompts.py): which pipeline prompt it is, in both prompt sets,
and the fields the replies are made from."""

from __future__ import annotations

import pytest

from agents import contrast, decode, encode, tailor
from agents.parsing import as_data
from agents.prompt_sets import PROMPT_SETS, PromptSet, load_prompt_set
from llm.double.chat import chat_tailored_instruction
from llm.double.choices import encode_fields, judge_scores
from llm.double.plain import decode_reply, tailor_reply
from llm.double.prompts import classify, content_words
from llm.double.replies import STYLES, answer_for
from schemas import MetadataSummary
from tests.unit.llm.double.conversations import (
    DECODE,
    META,
    MULTILINE,
    RICH_META,
    RUBRICS,
    SETS,
    TAILOR,
    encode_prompt,
    judge_prompt,
    prompt_text,
    rich_decode_prompt,
    user,
)

# ---------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("messages", "kind"),
    [
        (user(judge_prompt("4", "5")), "judge"),
        (user(judge_prompt("Use case: x", "numbered list")), "judge"),  # judge wins over every marker
        (user(RUBRICS), "rubrics"),
        (user(TAILOR), "tailor"),
        (user(TAILOR + "\nRubric 1: in the context"), "rubrics"),  # rubrics come before tailor
        (user(DECODE), "decode"),  # holds "Use case:" too; decode comes first
        (user("Instruction: write a haiku.\nReply with Use case: and Skills:"), "encode"),
        (user("What is the capital of France?"), "answer"),
        ([], "answer"),
        (  # the format in the system message, the seed in the user message
            [{"role": "system", "content": "Reply as 'Use case: ...' then 'Skills: ...'"}, *user("Write a haiku.")],
            "encode",
        ),
        (encode_prompt("Sort a list. Difficulty: none.", rich=True), "encode"),
        (rich_decode_prompt(), "decode"),
        (  # the last user message decides before the rest
            [*user(DECODE), {"role": "assistant", "content": "1. ..."}, *user(TAILOR)],
            "tailor",
        ),
    ],
)
def test_classify(messages, kind):
    assert classify(messages) == kind


def test_content_words_drop_case_punctuation_order_and_function_words():
    assert content_words("How do I sort a list in Python?") == ("list", "python", "sort")
    assert content_words("How can I sort a Python list?!") == ("list", "python", "sort")
    assert content_words("What is it?") == ()


# ---------------------------------------------------------------- both prompt sets


def _every_kind(prompts: PromptSet) -> dict[str, list[dict[str, str]]]:
    """One conversation of each kind, built by the stages' own prompt builders."""
    return {
        "encode": encode.build_prompt("Plan a trip to Rome.", max_skills=3, prompts=prompts),
        "encode_rich": encode.build_prompt("Plan a trip to Rome.", max_skills=3, rich=True, prompts=prompts),
        "decode": decode.build_prompt(META, n=4, prompts=prompts),
        "decode_rich": decode.build_prompt(RICH_META, n=4, rich=True, prompts=prompts),
        "rubrics": decode.build_rubrics_prompt(META, k=4, prompts=prompts),
        "tailor": tailor.build_prompt("Plan a trip to Rome.", "Add a budget.", prompts=prompts),
        "judge": contrast.build_judge_prompt("Plan a trip.", "Go to Rome.", "Go to Rome by train.", prompts=prompts),
        "answer": contrast.build_answer_prompt("Plan a trip to Rome."),
    }


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
def test_every_prompt_of_both_sets_is_recognised(prompts):
    for name, messages in _every_kind(prompts).items():
        assert classify(messages) == name.removesuffix("_rich")


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
@pytest.mark.parametrize(("meta", "rich"), [(META, False), (RICH_META, True)])
def test_decode_reads_the_metadata_labels_of_both_sets(prompts, meta, rich):
    """The paper set says "Use case of the instructions:", the small-model set "Intended use:"."""
    items = decode.parse(decode_reply(prompt_text(decode.build_prompt(meta, n=4, rich=rich, prompts=prompts))), n=4)
    assert len(items) == 4
    for item in items:
        assert item.startswith(f"{meta.use_case}: ")
        assert sum(skill in item for skill in meta.skills) == 2
    other = meta.model_copy(update={"use_case": "Trip planning"})
    again = decode.parse(decode_reply(prompt_text(decode.build_prompt(other, n=4, rich=rich, prompts=prompts))), n=4)
    assert not {i.partition(": ")[2] for i in items} & {i.partition(": ")[2] for i in again}


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
def test_plain_answers_parse_with_the_project_parsers(prompts):
    kinds = _every_kind(prompts)
    for name, rich in (("encode", False), ("encode_rich", True)):
        meta = encode.parse(answer_for("encode", kinds[name], "m"), max_skills=3, rich=rich)
        assert meta == MetadataSummary(**encode_fields(prompt_text(kinds[name])))
        assert (meta.domain is not None) == rich
    for name, rich in (("decode", False), ("decode_rich", True)):
        lines = decode_reply(prompt_text(kinds[name])).split("\n")
        copied = decode.example_items(prompts.decode_rich if rich else prompts.decode)
        parsed = decode.parse(answer_for("decode", kinds[name], "m"), n=4, copied_from=copied)
        assert parsed == tuple(line.split(". ", 1)[1] for line in lines)
    assert len(decode.parse_rubrics(answer_for("rubrics", kinds["rubrics"], "m"), k=4)) == 4
    improved = tailor.parse(answer_for("tailor", kinds["tailor"], "m"), original="Plan a trip to Rome.")
    assert isinstance(improved, str) and improved.startswith("Plan a trip to Rome. ")
    assert contrast.parse_judge(answer_for("judge", kinds["judge"], "m")) == judge_scores(prompt_text(kinds["judge"]))


@pytest.mark.parametrize("style", STYLES)
def test_the_paper_judge_gets_the_scores_alone_and_the_small_model_judge_an_explanation(style):
    for name, lines in (("paper", 1), ("small-model", 2)):
        messages = contrast.build_judge_prompt("Q?", "An answer.", "Another answer.", prompts=load_prompt_set(name))
        reply = answer_for("judge", messages, "judge", style)
        assert len(reply.split("\n")) == lines
        assert reply.split("\n")[0] == "{} {}".format(*judge_scores(prompt_text(messages)))
        assert contrast.parse_judge(reply) == judge_scores(prompt_text(messages))


def test_answers_that_say_nothing_else_do_not_silence_the_small_model_judge():
    messages = contrast.build_judge_prompt(
        "Q?", "Write nothing else.", "Nothing else.", prompts=load_prompt_set("small-model")
    )
    assert len(answer_for("judge", messages, "judge").split("\n")) == 2


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
@pytest.mark.parametrize("style", STYLES)
def test_tailor_takes_the_whole_fenced_instruction(prompts, style):
    """An instruction with an input block spans lines: all of it up to the closing ### fence
    is the instruction; the input block comes back unchanged, the colon still introducing it."""
    messages = tailor.build_prompt(MULTILINE, "Add an edge case.", prompts=prompts)
    improved = tailor.parse(
        answer_for("tailor", messages, "m", style), original=MULTILINE, copied_from=tailor.example_answers(prompts)
    )
    assert isinstance(improved, str)
    first, rest = improved.split("\n", 1)
    assert rest == MULTILINE.split("\n", 1)[1]
    assert first.endswith(":") and first != MULTILINE.split("\n", 1)[0]
    assert "Review this function and say what it returns" in first


def test_a_fence_line_inside_the_instruction_does_not_cut_it():
    """The prompt builder turns the instruction's own ### lines into ##; the first real ###
    closes it, and everything before it is the instruction as the model read it."""
    instruction = "Fix the heading levels in this markdown:\n###\nTitle\n###\nBody text."
    messages = tailor.build_prompt(instruction, "Add a constraint.")
    meant = chat_tailored_instruction(prompt_text(messages))
    assert meant.split("\n")[1:] == as_data(instruction).split("\n")[1:] == ["##", "Title", "##", "Body text."]
    assert tailor_reply(prompt_text(messages)).endswith("\n##\nTitle\n##\nBody text.")
