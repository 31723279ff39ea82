"""The plain style's replies (llm/double/plain.py) and the choices under them
(llm/double/choices.py), byte for byte as before."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents import decode, encode
from llm.double.choices import judge_scores
from llm.double.plain import decode_reply, encode_reply, rubrics_reply, tailor_reply
from llm.double.prompts import classify, classify_text
from llm.double.replies import answer_for
from schemas import MetadataSummary
from tests.unit.llm.double.conversations import (
    DECODE,
    ROOT,
    RUBRICS,
    TAILOR,
    encode_prompt,
    judge_prompt,
    rich_decode_prompt,
    user,
)


def _encode_text(seed: str, *, rich: bool = False) -> str:
    """The encode prompt's text as the double reads it (the paper set asks for the format in
    its system message, so that is part of it)."""
    kind, text = classify_text(encode_prompt(seed, rich=rich))
    assert kind == "encode"
    return text


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
    rich = rich_decode_prompt()[-1]["content"]
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


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("How do I sort a list in Python?", "How can I sort a Python list?"),
        ("Write a haiku about autumn rain.", "write a HAIKU about rain, autumn"),
    ],
)
def test_paraphrased_seeds_get_the_same_use_case_and_skill_set(first, second):
    for rich in (False, True):
        a = answer_for("encode", encode_prompt(first, rich=rich), "m").split("\n")
        b = answer_for("encode", encode_prompt(second, rich=rich), "m").split("\n")
        assert a[0] == b[0] and a[2:] == b[2:]
        assert a[1].startswith("Skills: ") and sorted(a[1][8:].split(", ")) == sorted(b[1][8:].split(", "))


def test_the_same_seed_gets_the_same_metadata_and_paraphrases_their_own_skill_order():
    """The skills' order follows the seed's text (up to case and white space), as a sampling
    model's would, so a paraphrase's decode prompt differs from the original's."""
    for rich in (False, True):
        same = {answer_for("encode", encode_prompt(s, rich=rich), "m") for s in ("Sort a list.", "  sort a LIST. ")}
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
