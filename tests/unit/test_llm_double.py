"""The LLM double: its pure answer generation, and its HTTP face with the fault knobs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from agents import contrast, decode, encode, tailor
from agents.parsing import as_data
from agents.prompt_sets import PROMPT_SETS, PromptSet, load_prompt_set
from llm.double import (
    FIVE_XX_CYCLE,
    MALFORMED_TEXT,
    STYLES,
    DoubleConfig,
    LLMDouble,
    _parser,
    answer_for,
    chat_decode_instructions,
    chat_rubric_pairs,
    chat_tailored_instruction,
    classify,
    classify_text,
    content_words,
    count_tokens,
    decode_reply,
    draw_fault,
    encode_fields,
    encode_reply,
    judge_scores,
    rubrics_reply,
    tailor_reply,
)
from schemas import MetadataSummary

ROOT = Path(__file__).resolve().parents[2]


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


# ---------------------------------------------------------------- classification


def _encode_prompt(seed: str, *, rich: bool = False) -> list[dict[str, str]]:
    """The real encode prompt, so the double is checked against what it serves."""
    return encode.build_prompt(seed, max_skills=3, rich=rich)


def _encode_text(seed: str, *, rich: bool = False) -> str:
    """The encode prompt's text as the double reads it (the paper set asks for the format in
    its system message, so that is part of it)."""
    kind, text = classify_text(_encode_prompt(seed, rich=rich))
    assert kind == "encode"
    return text


def _rich_decode_prompt() -> list[dict[str, str]]:
    summary = MetadataSummary(
        use_case="Travel planning",
        skills=("budgeting",),
        domain="travel",
        difficulty="easy",
        format_constraints=("a table",),
    )
    return decode.build_prompt(summary, n=3, rich=True)


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
        (_encode_prompt("Sort a list. Difficulty: none.", rich=True), "encode"),
        (_rich_decode_prompt(), "decode"),
        (  # the last user message decides before the rest
            [*user(DECODE), {"role": "assistant", "content": "1. ..."}, *user(TAILOR)],
            "tailor",
        ),
    ],
)
def test_classify(messages, kind):
    assert classify(messages) == kind


# ---------------------------------------------------------------- answers


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_judge_scores_do_not_depend_on_the_position(a, b):
    s_ab = judge_scores(judge_prompt(a, b))
    s_ba = judge_scores(judge_prompt(b, a))
    assert s_ab == (s_ba[1], s_ba[0])
    assert all(1 <= s <= 10 for s in s_ab)


def test_judge_reply_starts_with_the_two_scores():
    text = answer_for("judge", user(judge_prompt("Four.", "It is five.")), "strong")
    first, rest = text.split("\n", 1)
    assert re.fullmatch(r"\d+ \d+", first)
    assert tuple(int(s) for s in first.split()) == judge_scores(judge_prompt("Four.", "It is five."))
    assert rest.startswith("Assistant 1")


@pytest.mark.parametrize(
    ("prompt", "n"), [(DECODE, 7), ("Please generate 3 tasks as a numbered list.", 3), ("A numbered list please.", 10)]
)
def test_decode_returns_exactly_n_distinct_numbered_instructions(prompt, n):
    lines = decode_reply(prompt).split("\n")
    assert [line.split(". ", 1)[0] for line in lines] == [str(i) for i in range(1, n + 1)]
    bodies = [line.split(". ", 1)[1] for line in lines]
    assert len(set(bodies)) == n
    assert all(len(b.split()) >= 5 and b.endswith(".") for b in bodies)


def test_decoded_instructions_differ_between_prompts():
    assert not set(decode_reply(DECODE).split("\n")) & set(decode_reply(DECODE + " ").split("\n"))


def _decoded(use_case: str, skills: tuple[str, ...]) -> list[str]:
    prompt = decode.build_prompt(MetadataSummary(use_case=use_case, skills=skills), n=4)
    return [line.split(". ", 1)[1] for line in decode_reply(prompt[-1]["content"]).split("\n")]


def _topic(instruction: str) -> str:
    return instruction.partition(", drawing on")[0]


def test_decoded_topics_follow_the_skill_set_and_the_wording_the_skill_order():
    """As a sampling model would: the same use case and skills in another order, the same
    tasks in other words (near duplicates, not exact ones)."""
    ordered = _decoded("Travel planning", ("budgeting", "route planning", "packing"))
    reordered = _decoded("Travel planning", ("packing", "budgeting", "route planning"))
    assert [_topic(a) for a in ordered] == [_topic(b) for b in reordered]
    assert all(a != b for a, b in zip(ordered, reordered, strict=True))
    other_skill = _decoded("Travel planning", ("budgeting", "route planning", "map reading"))
    other_use = _decoded("Trip planning", ("budgeting", "route planning", "packing"))
    for other in (other_skill, other_use):
        assert not {_topic(a).partition(": ")[2] for a in ordered} & {_topic(b).partition(": ")[2] for b in other}


def test_decoded_topics_include_the_rich_fields():
    rich = _rich_decode_prompt()[-1]["content"]
    harder = rich.replace("Difficulty: easy", "Difficulty: hard")
    assert harder != rich
    topics = [{_topic(line.split(". ", 1)[1]) for line in decode_reply(p).split("\n")} for p in (rich, harder)]
    assert not topics[0] & topics[1]


def test_paraphrased_seeds_decode_to_near_duplicates_and_other_metadata_does_not():
    """The property bench-dedup measures, with the real embedder on the benchmark's seeds:
    paraphrases (the same content words) whose skills came in another order decode to near
    duplicates (cosine >= 0.9) that are not exact ones; other metadata stays under 0.9."""
    from agents.dedup.embeddings import MiniLMEmbedder

    seeds = [json.loads(line)["text"] for line in (ROOT / "examples" / "seeds-neardup.jsonl").read_text().splitlines()]
    texts, sets, orders = [], [], []
    for seed in seeds:
        meta = encode.parse(encode_reply(_encode_text(seed)), max_skills=3)
        assert isinstance(meta, MetadataSummary)
        prompt = decode.build_prompt(meta, n=3)[-1]["content"]
        for line in decode_reply(prompt).split("\n"):
            texts.append(line.split(". ", 1)[1])
            sets.append((meta.use_case, frozenset(meta.skills), line.split(".")[0]))
            orders.append(meta.skills)
    vectors = MiniLMEmbedder().embed(texts)
    near, other = [], []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if sets[i] == sets[j] and orders[i] != orders[j]:
                assert texts[i] != texts[j]
                near.append(float(vectors[i] @ vectors[j]))
            elif sets[i][:2] != sets[j][:2]:
                other.append(float(vectors[i] @ vectors[j]))
    assert len(near) >= 10, "the file holds paraphrases whose skills came in another order"
    assert min(near) >= 0.9 > max(other)


@pytest.mark.parametrize(("prompt", "k"), [(RUBRICS, 3), ("Rubric 1: give rubrics", 4)])
def test_rubrics_come_in_k_rubric_action_pairs(prompt, k):
    lines = rubrics_reply(prompt).split("\n")
    assert len(lines) == 2 * k
    for i in range(1, k + 1):
        assert lines[2 * i - 2].startswith(f"Rubric {i}: ")
        assert lines[2 * i - 1].startswith(f"Action {i}: ")


@pytest.mark.parametrize(
    ("prompt", "instruction"),
    [
        (TAILOR, "Plan a trip to Rome."),
        ("#Instruction#:\nWrite a limerick.\n#Action#: x\nImproved Instruction:", "Write a limerick."),
        ("Make it harder.\nImproved Instruction:", "Write a detailed"),
    ],
)
def test_tailor_builds_on_the_instruction(prompt, instruction):
    text = tailor_reply(prompt)
    assert text.startswith(f"Improved Instruction: {instruction}")
    assert re.search(r"\(v[0-9a-f]{4}\)$", text)
    assert "\n" not in text


def test_tailored_instructions_are_distinct():
    replies = {tailor_reply(f"{TAILOR}\nIteration {i}") for i in range(50)}
    assert len(replies) == 50


@given(st.text(max_size=300))
def test_encode_gives_a_use_case_and_three_short_skills(prompt):
    use_case_line, skills_line = encode_reply(prompt).split("\n")
    assert use_case_line.startswith("Use case: ") and len(use_case_line) > len("Use case: ")
    skills = skills_line.removeprefix("Skills: ").split(", ")
    assert len(skills) == len(set(skills)) == 3
    for skill in skills:
        assert 2 <= len(skill.split()) <= 3
        assert "skill" not in skill.lower() and "knowledge" not in skill.lower()


def test_content_words_drop_case_punctuation_order_and_function_words():
    assert content_words("How do I sort a list in Python?") == ("list", "python", "sort")
    assert content_words("How can I sort a Python list?!") == ("list", "python", "sort")
    assert content_words("What is it?") == ()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("How do I sort a list in Python?", "How can I sort a Python list?"),
        ("Write a haiku about autumn rain.", "write a HAIKU about rain, autumn"),
    ],
)
def test_paraphrased_seeds_get_the_same_use_case_and_skill_set(first, second):
    for rich in (False, True):
        a = answer_for("encode", _encode_prompt(first, rich=rich), "m").split("\n")
        b = answer_for("encode", _encode_prompt(second, rich=rich), "m").split("\n")
        assert a[0] == b[0] and a[2:] == b[2:]
        assert a[1].startswith("Skills: ") and sorted(a[1][8:].split(", ")) == sorted(b[1][8:].split(", "))


def test_the_same_seed_gets_the_same_metadata_and_paraphrases_their_own_skill_order():
    """The skills' order follows the seed's text (up to case and white space), as a sampling
    model's would, so a paraphrase's decode prompt differs from the original's."""
    for rich in (False, True):
        same = {answer_for("encode", _encode_prompt(s, rich=rich), "m") for s in ("Sort a list.", "  sort a LIST. ")}
        assert len(same) == 1
    paraphrases = ["How do I sort a list in Python?", "How can I sort a Python list?", "Python: sort a list, how?"]
    paraphrases += ["How would I sort a list in Python?", "Sort a list in python.", "In Python, how to sort a list?"]
    replies = [encode_reply(_encode_text(s)).split("\n") for s in paraphrases]
    assert len({r[0] for r in replies}) == len({frozenset(r[1][8:].split(", ")) for r in replies}) == 1
    assert len({r[1] for r in replies}) > 1


def test_distinct_seeds_get_varied_metadata():
    seeds = [json.loads(line)["text"] for line in (ROOT / "examples" / "seeds.jsonl").read_text().splitlines()]
    replies = [encode_reply(_encode_text(s, rich=True)).split("\n") for s in seeds]
    assert len(seeds) >= 20
    assert len({r[0] for r in replies}) >= 6  # use cases (16 in all)
    assert len({r[1] for r in replies}) >= len(seeds) * 2 // 3  # skill sets
    assert len({r[2] for r in replies}) >= 6  # domains (10 in all)
    assert {r[3] for r in replies} == {f"Difficulty: {d}" for d in ("easy", "medium", "hard")}
    assert len({r[4] for r in replies}) >= 6  # format constraints


def test_rich_fields_only_when_the_prompt_asks_for_them():
    plain = encode_reply(_encode_text("Plan a trip to Rome.")).split("\n")
    rich = encode_reply(_encode_text("Plan a trip to Rome.", rich=True)).split("\n")
    assert rich[:2] == plain  # the same use case and skills either way
    assert [line.split(":")[0] for line in rich[2:]] == ["Domain", "Difficulty", "Format constraints"]
    assert 1 <= len(rich[4].removeprefix("Format constraints: ").split("; ")) <= 2
    # a seed that mentions the word is still a plain prompt: only the prompt's own text counts
    assert len(encode_reply(_encode_text("Difficulty: rate this climb.")).split("\n")) == 2


def test_answers_depend_on_the_model():
    strong = answer_for("answer", user("Why is the sky blue?"), "strong")
    target = answer_for("answer", user("Why is the sky blue?"), "target")
    assert strong.startswith("Answer from strong: ")
    assert target.startswith("Answer from target: ")
    assert strong.removeprefix("Answer from strong: ") != target.removeprefix("Answer from target: ")
    assert 2 <= strong.count(". ") + 1 <= 5


@pytest.mark.parametrize("kind", ["judge", "rubrics", "tailor", "decode", "encode", "answer"])
def test_answers_are_deterministic(kind):
    messages = user(judge_prompt("a", "b") if kind == "judge" else TAILOR)
    assert answer_for(kind, messages, "m") == answer_for(kind, [dict(m) for m in messages], "m")


# ---------------------------------------------------------------- plain style, byte for byte

_FIXED_SEEDS = (
    "How do I sort a list in Python?",
    "Write a haiku about autumn rain.",
    "Plan a three-day trip to Rome on a budget.",
)


def _fixed_conversations():
    """Prompts of every kind written out here (not read from the prompt files, which may
    change), in the small-model set's labels, which the plain style served before the paper set."""
    for seed in _FIXED_SEEDS:
        data = f"<instruction>\n{seed}\n</instruction>"
        yield [{"role": "system", "content": "Answer as 'Use case: ...' then 'Skills: ...'."}, *user(data)]
        yield user(f"{data}\nReply with Use case:, Skills:, Domain:, Difficulty: and Format constraints:.")
        yield user(
            f"###\nIntended use: Trip planning for {seed}\nRequired abilities: budgeting, route planning, packing\n"
            "###\nGenerate 4 instructions as a numbered list."
        )
        yield user(
            f"###\nIntended use: {seed}\nRequired abilities: budgeting\nDomain: travel\nDifficulty: hard\n"
            "Format constraints: a table; under 150 words\n###\nGenerate 3 instructions as a numbered list."
        )
        yield user(f"Intended use: {seed}\nWrite 4 rubrics with their actions, as Rubric 1: and Action 1: lines.")
        yield user(
            f"Improving action: Add a budget.\n###\n#Instruction#:\n{seed}\n###\nReply with the Improved Instruction: line."
        )
        yield user(
            f"[Question]\n{seed}\n\n[The Start of Assistant 1's Answer]\nOne.\n[The End of Assistant 1's Answer]\n\n"
            "[The Start of Assistant 2's Answer]\nTwo, with detail.\n[The End of Assistant 2's Answer]\n"
            "Output the two scores on the first line, then explain."
        )
        yield user(seed)


def test_the_plain_style_answers_as_before_byte_for_byte():
    """The digest of the plain replies to fixed prompts of every kind, as the double gave them
    before the chat style and the paper prompt set existed."""
    digest = hashlib.sha256()
    kinds = Counter()
    for messages in _fixed_conversations():
        kind = classify(messages)
        kinds[kind] += 1
        for model in ("strong", "target"):
            reply = answer_for(kind, messages, model)
            assert reply == answer_for(kind, messages, model, "plain")
            digest.update(reply.encode() + b"\x1e")
    assert set(kinds) == {"encode", "decode", "rubrics", "tailor", "judge", "answer"}
    assert digest.hexdigest() == "ccb1f97e7e00fca5b2cd47699bd36807eecc1ba52245a7aa6f216d386c48effd"


# ---------------------------------------------------------------- both prompt sets

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


def _text(messages: list[dict[str, str]]) -> str:
    return classify_text(messages)[1]


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
def test_every_prompt_of_both_sets_is_recognised(prompts):
    for name, messages in _every_kind(prompts).items():
        assert classify(messages) == name.removesuffix("_rich")


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
@pytest.mark.parametrize(("meta", "rich"), [(META, False), (RICH_META, True)])
def test_decode_reads_the_metadata_labels_of_both_sets(prompts, meta, rich):
    """The paper set says "Use case of the instructions:", the small-model set "Intended use:"."""
    items = decode.parse(decode_reply(_text(decode.build_prompt(meta, n=4, rich=rich, prompts=prompts))), n=4)
    assert len(items) == 4
    for item in items:
        assert item.startswith(f"{meta.use_case}: ")
        assert sum(skill in item for skill in meta.skills) == 2
    other = meta.model_copy(update={"use_case": "Trip planning"})
    again = decode.parse(decode_reply(_text(decode.build_prompt(other, n=4, rich=rich, prompts=prompts))), n=4)
    assert not {i.partition(": ")[2] for i in items} & {i.partition(": ")[2] for i in again}


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
def test_plain_answers_parse_with_the_project_parsers(prompts):
    kinds = _every_kind(prompts)
    for name, rich in (("encode", False), ("encode_rich", True)):
        meta = encode.parse(answer_for("encode", kinds[name], "m"), max_skills=3, rich=rich)
        assert meta == MetadataSummary(**encode_fields(_text(kinds[name])))
        assert (meta.domain is not None) == rich
    for name, rich in (("decode", False), ("decode_rich", True)):
        lines = decode_reply(_text(kinds[name])).split("\n")
        copied = decode.example_items(prompts.decode_rich if rich else prompts.decode)
        parsed = decode.parse(answer_for("decode", kinds[name], "m"), n=4, copied_from=copied)
        assert parsed == tuple(line.split(". ", 1)[1] for line in lines)
    assert len(decode.parse_rubrics(answer_for("rubrics", kinds["rubrics"], "m"), k=4)) == 4
    improved = tailor.parse(answer_for("tailor", kinds["tailor"], "m"), original="Plan a trip to Rome.")
    assert isinstance(improved, str) and improved.startswith("Plan a trip to Rome. ")
    assert contrast.parse_judge(answer_for("judge", kinds["judge"], "m")) == judge_scores(_text(kinds["judge"]))


@pytest.mark.parametrize("style", STYLES)
def test_the_paper_judge_gets_the_scores_alone_and_the_small_model_judge_an_explanation(style):
    for name, lines in (("paper", 1), ("small-model", 2)):
        messages = contrast.build_judge_prompt("Q?", "An answer.", "Another answer.", prompts=load_prompt_set(name))
        reply = answer_for("judge", messages, "judge", style)
        assert len(reply.split("\n")) == lines
        assert reply.split("\n")[0] == "{} {}".format(*judge_scores(_text(messages)))
        assert contrast.parse_judge(reply) == judge_scores(_text(messages))


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
    meant = chat_tailored_instruction(_text(messages))
    assert meant.split("\n")[1:] == as_data(instruction).split("\n")[1:] == ["##", "Title", "##", "Body text."]
    assert tailor_reply(_text(messages)).endswith("\n##\nTitle\n##\nBody text.")


# ---------------------------------------------------------------- chat style


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
        fields = encode_fields(_text(messages))
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
        meant = chat_decode_instructions(_text(messages))
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
        for text in chat_decode_instructions(_text(decode.build_prompt(meta, n=7)))
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
        for text in chat_decode_instructions(_text(decode.build_prompt(meta, n=3))):
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
    for instruction in chat_decode_instructions(_text(decode.build_prompt(META, n=7, prompts=prompts))):
        current = instruction
        for action in ("Add an edge case.", "Ask for a comparison.", "Require a worked example."):
            messages = tailor.build_prompt(current, action, prompts=prompts)
            reply = answer_for("tailor", messages, "m", "chat")
            meant = chat_tailored_instruction(_text(messages))
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
    meant = chat_rubric_pairs(_text(messages))
    assert len(meant) == k
    assert reply.startswith("Here are") and re.search(r"^\*\*Rubric 1:\*\* \S.*\n\*\*Action 1:\*\* \S", reply, re.M)
    assert decode.parse_rubrics(reply, k=k) == tuple(meant)


@pytest.mark.parametrize("prompts", SETS, ids=PROMPT_SETS)
def test_chat_answers_are_markdown_that_depends_on_the_model_and_is_judged(prompts):
    for instruction in chat_decode_instructions(_text(decode.build_prompt(META, n=7, prompts=prompts))):
        messages = contrast.build_answer_prompt(instruction)
        strong, target = (answer_for("answer", messages, model, "chat") for model in ("strong", "target"))
        for answer in (strong, target):
            assert re.match(r"## \S.*\n\n", answer) and re.search(r"^1\. \*\*[^*\n]+:\*\* \S", answer, re.M)
            assert contrast.parse_answer(answer) == answer
        judge = contrast.build_judge_prompt(instruction, strong, target, prompts=prompts)
        assert classify(judge) == "judge"
        assert contrast.parse_judge(answer_for("judge", judge, "judge", "chat")) == judge_scores(_text(judge))
    assert answer_for("answer", user("Why?"), "strong", "chat") != answer_for("answer", user("Why?"), "target", "chat")


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("u", "fault"),
    [(0.0, "429"), (0.099, "429"), (0.1, "5xx"), (0.29, "5xx"), (0.31, None), (0.99, None)],
)
def test_draw_fault_partitions_the_unit_interval(u, fault):
    rates = {"429": 0.1, "5xx": 0.2, "timeout": 0.0}
    assert draw_fault(rates, u) == fault


@pytest.mark.parametrize(
    "bad", [{"rate_429": 1.5}, {"rate_429": 0.6, "rate_5xx": 0.6}, {"rate_5xx": -0.1}, {"latency_ms": -1}]
)
def test_config_rejects_impossible_knobs(bad):
    with pytest.raises(ValueError):
        DoubleConfig(**bad)


# ---------------------------------------------------------------- over HTTP


@pytest_asyncio.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def chat(http: aiohttp.ClientSession, double: LLMDouble, text: str = "Hello?", **extra):
    payload = {"model": "strong", "messages": user(text), "temperature": 0.7, "max_tokens": 512, **extra}
    async with http.post(f"{double.base_url}/chat/completions", json=payload) as response:
        raw = await response.text()
        return response.status, response.headers, raw


async def get_json(http: aiohttp.ClientSession, double: LLMDouble, path: str, method: str = "GET", **kwargs):
    async with http.request(method, double.base_url.removesuffix("/v1") + path, **kwargs) as response:
        return response.status, await response.json()


@pytest.mark.asyncio
async def test_a_response_is_shaped_like_openais(http):
    async with LLMDouble() as double:
        status, _, raw = await chat(http, double, DECODE)
    body = json.loads(raw)
    assert status == 200
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "strong"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == decode_reply(f"{DECODE}")
    assert body["usage"]["prompt_tokens"] == len(DECODE.split())
    assert body["usage"]["completion_tokens"] == len(choice["message"]["content"].split())


@pytest.mark.asyncio
async def test_the_same_request_gets_the_same_reply(http):
    async with LLMDouble() as double:
        first = await chat(http, double, TAILOR)
        second = await chat(http, double, TAILOR)
    content = [json.loads(raw)["choices"][0]["message"]["content"] for _, _, raw in (first, second)]
    assert content[0] == content[1]


@pytest.mark.asyncio
async def test_models_stats_and_reset(http):
    async with LLMDouble() as double:
        status, models = await get_json(http, double, "/v1/models")
        assert status == 200 and models["data"][0]["id"]
        await chat(http, double, DECODE)
        await chat(http, double, "Why?")
        await chat(http, double, "Why?", messages="not a list")

        _, stats = await get_json(http, double, "/stats")
        assert stats["calls"] == 3
        assert stats["by_kind"] == {"judge": 0, "rubrics": 0, "tailor": 0, "decode": 1, "encode": 0, "answer": 1}
        assert stats["by_status"] == {"200": 2, "400": 1}
        assert stats["prompt_tokens"] == len(DECODE.split()) + 1
        assert stats["completion_tokens"] > 0
        assert (stats["in_flight"], stats["max_in_flight"]) == (0, 1)

        _, stats = await get_json(http, double, "/reset", method="POST")
        assert stats["calls"] == 0 and stats["by_status"] == {} and stats["prompt_tokens"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("knobs", "statuses"),
    [
        ({"rate_429": 1.0}, [429, 429, 429]),
        ({"rate_5xx": 1.0}, list(FIVE_XX_CYCLE) * 2),
        ({"down": True}, [503, 503]),
        ({"force_status": 404}, [404]),
        ({"api_key": "k"}, [401]),
        ({"rate_5xx": 1.0, "max_faults": 2}, [500, 502, 200, 200]),
        ({}, [200, 200]),
    ],
)
async def test_knobs_produce_the_statuses_asked(http, knobs, statuses):
    async with LLMDouble(DoubleConfig(**knobs)) as double:
        got = [(await chat(http, double))[0] for _ in statuses]
    assert got == statuses


@pytest.mark.asyncio
async def test_429s_carry_retry_after_when_configured(http):
    async with LLMDouble(DoubleConfig(rate_429=1.0, retry_after_s=2)) as double:
        status, headers, _ = await chat(http, double)
        double.configure(retry_after_s=None)
        _, headers_without, _ = await chat(http, double)
    assert (status, headers["Retry-After"]) == (429, "2")
    assert "Retry-After" not in headers_without


@pytest.mark.asyncio
async def test_fault_rates_are_roughly_the_rates_asked_and_repeat_with_the_seed(http):
    async def statuses(seed: int) -> list[int]:
        async with LLMDouble(DoubleConfig(rate_429=0.3, rate_5xx=0.2, random_seed=seed)) as double:
            return [(await chat(http, double))[0] for _ in range(200)]

    first, again, other = await statuses(1), await statuses(1), await statuses(2)
    assert first == again
    assert first != other
    assert 40 <= first.count(429) <= 80
    assert 20 <= sum(first.count(s) for s in FIVE_XX_CYCLE) <= 60


@pytest.mark.asyncio
async def test_bad_answers_are_the_kind_asked(http):
    async with LLMDouble(DoubleConfig(rate_malformed=1.0)) as double:
        _, _, malformed = await chat(http, double, DECODE)
        double.configure(rate_malformed=0.0, rate_empty_choices=1.0)
        _, _, empty = await chat(http, double, DECODE)
        double.configure(rate_empty_choices=0.0, rate_length=1.0)
        _, _, length = await chat(http, double, DECODE)
        double.configure(rate_length=0.0, rate_bad_json=1.0)
        status, _, bad_json = await chat(http, double, DECODE)
    assert json.loads(malformed)["choices"][0]["message"]["content"] == MALFORMED_TEXT
    assert json.loads(empty)["choices"] == []
    cut = json.loads(length)["choices"][0]
    assert cut["finish_reason"] == "length"
    assert decode_reply(DECODE).startswith(cut["message"]["content"])
    assert len(cut["message"]["content"]) < len(decode_reply(DECODE))
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(bad_json)


@pytest.mark.asyncio
async def test_max_tokens_cuts_the_reply(http):
    async with LLMDouble() as double:
        _, _, raw = await chat(http, double, DECODE, max_tokens=5)
    choice = json.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["message"]["content"].split()) == 5


@pytest.mark.asyncio
async def test_max_concurrency_turns_the_excess_away(http):
    async with LLMDouble(DoubleConfig(latency_ms=100, max_concurrency=3)) as double:
        results = await asyncio.gather(*(chat(http, double) for _ in range(8)))
        stats = double.stats()
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 200, 429, 429, 429, 429, 429]
    assert stats["by_status"] == {"200": 3, "429": 5}


@pytest.mark.asyncio
async def test_latency_is_applied(http):
    async with LLMDouble(DoubleConfig(latency_ms=150, jitter_ms=20)) as double:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(chat(http, double) for _ in range(5)))
        elapsed = loop.time() - started
    assert 0.13 <= elapsed < 0.5  # concurrent, not one after another


@pytest.mark.asyncio
async def test_control_changes_knobs_at_runtime(http):
    async with LLMDouble() as double:
        status, config = await get_json(http, double, "/control", method="POST", json={"down": True, "rate_429": 0.2})
        assert status == 200 and config["down"] is True and config["rate_429"] == 0.2
        assert (await chat(http, double))[0] == 503
        await get_json(http, double, "/control", method="POST", json={"down": False, "rate_429": 0.0})
        assert (await chat(http, double))[0] == 200
        for bad in ({"no_such_knob": 1}, {"rate_429": 2.0}, [1, 2]):
            status, error = await get_json(http, double, "/control", method="POST", json=bad)
            assert status == 400 and "bad control request" in error["error"]["message"]
        assert double.config.down is False


def test_style_is_plain_by_default_and_checked():
    assert DoubleConfig().style == "plain"
    with pytest.raises(ValueError):
        DoubleConfig(style="fancy")
    assert _parser().parse_args([]).style == "plain"
    assert _parser().parse_args(["--style", "chat"]).style == "chat"
    with pytest.raises(SystemExit):
        _parser().parse_args(["--style", "fancy"])


@pytest.mark.asyncio
async def test_control_switches_the_style(http):
    text = _text(decode.build_prompt(META, n=3))

    async def content() -> str:
        status, _, raw = await chat(http, double, text)
        assert status == 200
        return json.loads(raw)["choices"][0]["message"]["content"]

    async with LLMDouble() as double:
        assert await content() == decode_reply(text)
        status, config = await get_json(http, double, "/control", method="POST", json={"style": "chat"})
        assert status == 200 and config["style"] == "chat"
        reply = await content()
        assert reply == answer_for("decode", user(text), "strong", "chat")
        assert decode.parse(reply, n=3) == tuple(chat_decode_instructions(text))
        status, _ = await get_json(http, double, "/control", method="POST", json={"style": "fancy"})
        assert status == 400 and double.config.style == "chat"
        await get_json(http, double, "/control", method="POST", json={"style": "plain"})
        assert await content() == decode_reply(text)


def test_runs_as_a_program_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "llm.double", "--port", "0", "--latency-ms", "1", "--rate-429", "0", "--style", "chat"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"LLM double listening on (http://127\.0\.0\.1:\d+/v1)\n", line)
        assert match, line + process.stderr.read()

        text = _text(tailor.build_prompt(MULTILINE, "Add an edge case."))

        async def calls() -> tuple[int, str]:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{match.group(1)}/models") as response:
                    status = response.status
                payload = {"model": "strong", "messages": user(text)}
                async with http.post(f"{match.group(1)}/chat/completions", json=payload) as response:
                    return status, (await response.json())["choices"][0]["message"]["content"]

        status, content = asyncio.run(calls())
        assert status == 200
        assert content.startswith(f"**Improved Instruction:** {chat_tailored_instruction(text)}\n\n")  # --style chat
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_help_calls_it_a_double():
    result = subprocess.run(
        [sys.executable, "-m", "llm.double", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "LLM double" in result.stdout
    assert "--rate-5xx" in result.stdout and "--max-concurrency" in result.stdout
    assert "--style {plain,chat}" in result.stdout
