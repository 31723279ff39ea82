"""The chat style's replies (llm/double/chat.py): they parse to exactly what the double meant."""

from __future__ import annotations

import re

import pytest

from agents import contrast, decode, encode, tailor
from agents.prompt_sets import PROMPT_SETS, PromptSet
from llm.double.chat import chat_decode_instructions, chat_rubric_pairs, chat_tailored_instruction
from llm.double.choices import encode_fields, judge_scores
from llm.double.prompts import classify
from llm.double.replies import answer_for
from llm.double.server import count_tokens
from schemas import MetadataSummary
from tests.unit.llm.double.conversations import META, SEED_TEXTS, SETS, prompt_text, user


def _chat_metadata(prompts: PromptSet, rich: bool) -> list[MetadataSummary]:
    """The metadata of the example seeds, as the chat style's encode answers give it."""
    out = []
    for seed in SEED_TEXTS:
        reply = answer_for("encode", encode.build_prompt(seed, max_skills=3, rich=rich, prompts=prompts), "m", "chat")
        meta = encode.parse(reply, max_skills=3, rich=rich)
        assert isinstance(meta, MetadataSummary)
        if meta not in out:
            out.append(meta)
    return out


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
@pytest.mark.parametrize("rich", [False, True])
def test_chat_encode_parses_to_the_metadata_meant(prompts, rich):
    for seed in SEED_TEXTS:
        messages = encode.build_prompt(seed, max_skills=3, rich=rich, prompts=prompts)
        reply = answer_for("encode", messages, "m", "chat")
        assert reply.startswith("Here is the analysis of the instruction:\n\n**Use case:** ")
        fields = encode_fields(prompt_text(messages))
        assert ("domain" in fields) == rich
        assert encode.parse(reply, max_skills=3, rich=rich) == MetadataSummary(**fields)


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
@pytest.mark.parametrize("rich", [False, True])
@pytest.mark.parametrize("n", [3, 10])
def test_chat_decode_parses_to_exactly_the_instructions_meant(prompts, rich, n):
    copied = decode.example_items(prompts.decode_rich if rich else prompts.decode)
    for meta in _chat_metadata(prompts, rich):
        messages = decode.build_prompt(meta, n=n, rich=rich, prompts=prompts)
        reply = answer_for("decode", messages, "m", "chat")
        meant = chat_decode_instructions(prompt_text(messages))
        assert len(meant) == len(set(meant)) == n
        assert decode.parse(reply, n=n, copied_from=copied) == tuple(meant)
        assert count_tokens(reply) <= 1024  # the pipeline's default max_tokens


def test_chat_decode_is_wrapped_as_strong_chat_models_wrap_it():
    replies = [
        answer_for("decode", decode.build_prompt(meta, n=10), "m", "chat")
        for meta in _chat_metadata(SETS[0], rich=False)
    ]
    for reply, meta in zip(replies, _chat_metadata(SETS[0], rich=False), strict=True):
        assert reply.startswith(f"Sure! Here are 10 instructions for {meta.use_case}:\n\n1. **")
        assert reply.split("\n")[-1].startswith("Let me know if you'd like")
    everything = "\n".join(replies)
    assert re.search(r"^\d+\. \*\*[^*\n]+:\*\* \S", everything, re.M)  # 1. **Title:** text
    assert re.search(r"^\d+\. \*\*[^*\n]+\*\*\n {3}\S", everything, re.M)  # a bold title line, the text below
    assert re.search(r"^\d+\. .*:\n\n\"", everything, re.M)  # an unindented quoted paragraph after a blank line
    assert re.search(r"^ {3}```python$", everything, re.M) and re.search(r"^```python$", everything, re.M)


def test_chat_instructions_carry_what_real_ones_carry():
    meant = [
        text
        for meta in _chat_metadata(SETS[0], rich=False)
        for text in chat_decode_instructions(prompt_text(decode.build_prompt(meta, n=7)))
    ]
    checks = {
        "a code span with a dunder name": r"`[^`\n]*__\w+__[^`\n]*`",
        "Python powers": r"2\*\*10 - 3\*\*4",
        "LaTeX maths": r"\$[^$\n]*x\^2 \+ y\^2[^$\n]*\$",
        "bold inside": r" \*\*(?:three|each)\*\* ",
        "quotes": r"\"[^\"\n]+\"",
        "a quoted paragraph after a colon": r":\n\n\"[^\n]+\"$",
        "a code fence after a colon": r":\n\n```python\n(?:.*\n)+```$",
        "a table after a colon": r":\n\n\| .+ \|\n\| --- \|",
        "sub-bullets after a colon": r":\n- .+\n- .+\n- .+$",
        "a backslash": r"\\sqrt",
    }
    for what, pattern in checks.items():
        assert any(re.search(pattern, text) for text in meant), what
    assert any("\n" not in text for text in meant)  # and one-line instructions
    assert all(classify(contrast.build_answer_prompt(text)) == "answer" for text in meant)  # no prompt markers


def test_chat_instructions_differ_by_metadata_and_index():
    """Distinct texts for every metadata and index, and no near duplicates (the dedup stage's
    cosine 0.9 with the real embedder) between instructions of different metadata."""
    from agents.dedup.embeddings import MiniLMEmbedder

    texts, owners = [], []
    for meta in _chat_metadata(SETS[0], rich=False):
        for text in chat_decode_instructions(prompt_text(decode.build_prompt(meta, n=3))):
            texts.append(text)
            owners.append(meta)
    assert len(set(texts)) == len(texts)
    vectors = MiniLMEmbedder().embed(texts)
    across = [
        float(vectors[i] @ vectors[j])
        for i in range(len(texts))
        for j in range(i + 1, len(texts))
        if owners[i] != owners[j]
    ]
    assert len(across) > 1000 and max(across) < 0.9


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
def test_chat_tailor_parses_to_exactly_the_instruction_meant_and_keeps_the_input(prompts):
    copied = tailor.example_answers(prompts)
    # seven consecutive items: every kind of chat instruction
    for instruction in chat_decode_instructions(prompt_text(decode.build_prompt(META, n=7, prompts=prompts))):
        current = instruction
        for action in ("Add an edge case.", "Ask for a comparison.", "Require a worked example."):
            messages = tailor.build_prompt(current, action, prompts=prompts)
            reply = answer_for("tailor", messages, "m", "chat")
            meant = chat_tailored_instruction(prompt_text(messages))
            assert reply.startswith(f"**Improved Instruction:** {meant}\n\n**Why this is harder:** ")
            assert tailor.parse(reply, original=current, copied_from=copied) == meant
            assert meant != current and len(meant) > len(current)
            assert meant.split("\n")[1:] == instruction.split("\n")[1:]  # the input block travels
            assert meant.split("\n")[0].endswith(":") == instruction.split("\n")[0].endswith(":")
            assert classify(contrast.build_answer_prompt(meant)) == "answer"
            current = meant


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
@pytest.mark.parametrize("k", [2, 4, 6])
def test_chat_rubrics_parse_to_the_pairs_meant(prompts, k):
    messages = decode.build_rubrics_prompt(META, k=k, prompts=prompts)
    reply = answer_for("rubrics", messages, "m", "chat")
    meant = chat_rubric_pairs(prompt_text(messages))
    assert len(meant) == k
    assert reply.startswith("Here are") and re.search(r"^\*\*Rubric 1:\*\* \S.*\n\*\*Action 1:\*\* \S", reply, re.M)
    assert decode.parse_rubrics(reply, k=k) == tuple(meant)


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
def test_chat_answers_are_markdown_that_depends_on_the_model_and_is_judged(prompts):
    for instruction in chat_decode_instructions(prompt_text(decode.build_prompt(META, n=7, prompts=prompts))):
        messages = contrast.build_answer_prompt(instruction)
        strong, target = (answer_for("answer", messages, model, "chat") for model in ("strong", "target"))
        for answer in (strong, target):
            assert re.match(r"## \S.*\n\n", answer) and re.search(r"^1\. \*\*[^*\n]+:\*\* \S", answer, re.M)
            assert contrast.parse_answer(answer) == answer
        judge = contrast.build_judge_prompt(instruction, strong, target, prompts=prompts)
        assert classify(judge) == "judge"
        assert contrast.parse_judge(answer_for("judge", judge, "judge", "chat")) == judge_scores(prompt_text(judge))
    assert answer_for("answer", user("Why?"), "strong", "chat") != answer_for("answer", user("Why?"), "target", "chat")
