"""The plain style (the default): tidy replies, one instruction per line, each with a short tag
drawn from the prompt, so the same prompt gives the same reply and another prompt another one.
A test holds the sha256 of these replies: they must not change. Pure functions, no I/O."""

from __future__ import annotations

from llm.double.choices import (
    _ANSWER_SENTENCES,
    DEFAULT_INSTRUCTION,
    _encode_lines,
    _pick,
    _rubrics_asked,
    _subject,
    _tag,
    augment_sensible,
    encode_fields,
    judge_scores,
    stable_hash,
)
from llm.double.prompts import _augment_asked, _decode_asked, _instruction_in, _scores_only

_CONSTRAINTS = (
    "Include a worked example.",
    "Answer in under 150 words.",
    "Compare two approaches.",
    "Explain the trade-offs.",
    "State every assumption you make.",
    "Give the answer as a numbered plan.",
)


def rubrics_reply(prompt: str) -> str:
    lines = []
    for i, rubric, action in _rubrics_asked(prompt):
        lines.append(f"Rubric {i}: {rubric} ({_tag(prompt, str(i))})")
        lines.append(f"Action {i}: {action}")
    return "\n".join(lines)


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


def augment_reply(prompt: str) -> str:
    """Yes or No, as `augment_sensible` finds the combination."""
    return "Yes" if augment_sensible(*_augment_asked(prompt)) else "No"


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
