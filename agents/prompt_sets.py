"""The prompt sets: every stage's prompts, chosen by one setting (`pipeline.prompts`).

- `paper` (the default): the paper's Figures 7-11 in our words. Encode shows three
  demonstrations; decode, rubrics and tailor are zero-shot, so a model has nothing to copy;
  the judge answers with one line of two scores and nothing else. `augment` (the strong
  model's check of a combination metadata augmentation made) answers Yes or No.
- `small-model`: few-shot examples in every prompt and a judge that explains itself, for
  models too small to follow a format they have only been told (the demo's SmolLM2-135M).

A set is a folder of `agents/prompts/<set>/`; its version is a hash of its files, so any
edit of a prompt shows on the records made with it (`PromptSetRef`).
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from llm.base import Message
from schemas import PromptSetRef

PromptSetName = Literal["paper", "small-model"]
PROMPT_SETS: tuple[PromptSetName, ...] = ("paper", "small-model")
PROMPTS_DIR = Path(__file__).parent / "prompts"
PROMPT_NAMES = ("encode", "encode_rich", "decode", "decode_rich", "rubrics", "tailor", "judge", "augment")

_SECTION = re.compile(r"^=== *(system|user|example) *===[ \t]*$", re.M)
_ANSWER_RULE = re.compile(r"^--- *answer *---[ \t]*$", re.M)


@dataclass(frozen=True)
class ChatPrompt:
    """A prompt as chat turns: a system message, example exchanges (none in a zero-shot
    prompt), then the user turn. Small chat models follow a format far more often when they
    have seen it answered in earlier turns than when it is only described.

    The file (agents/prompts/<set>/<name>.txt) has sections, each opened by a line of its
    own; text before the first section is a comment:

        === system ===
        What the model is and the answer's format; may use {parameters}.
        === user ===
        The user turn's template: {fields} of data and {parameters}.
        === example ===          (any number of these, in order)
        field: value of one of the user template's fields
        (lines not starting with a field name continue the previous value)
        --- answer ---
        The assistant's answer to that example.

    An example's user turn is the user template filled with the example's fields; fields an
    example leaves out (parameters such as {max_skills}) take the real call's values.
    """

    system: str
    user: str
    examples: tuple[tuple[dict[str, str], str], ...]

    @classmethod
    def parse(cls, text: str) -> ChatPrompt:
        parts = _SECTION.split(text)[1:]  # [kind, body, kind, body, ...]
        sections: dict[str, str] = {}
        examples: list[str] = []
        for kind, body in zip(parts[::2], parts[1::2], strict=True):
            if kind == "example":
                examples.append(body)
            elif kind in sections:
                raise ValueError(f"a chat prompt with two === {kind} === sections")
            else:
                sections[kind] = body.strip()
        if "system" not in sections or "user" not in sections:
            raise ValueError("a chat prompt needs a === system === and a === user === section")
        user = sections["user"]
        names = {name for _, name, _, _ in string.Formatter().parse(user) if name}
        return cls(sections["system"], user, tuple(_example(body, names) for body in examples))

    def messages(self, **values: object) -> list[Message]:
        """The conversation for one call: `values` fill the templates (data already passed
        through `as_data`); examples' own fields take precedence in their turns."""
        out: list[Message] = [{"role": "system", "content": self.system.format(**values)}]
        for fields, answer in self.examples:
            out.append({"role": "user", "content": self.user.format(**{**values, **fields})})
            out.append({"role": "assistant", "content": answer})
        out.append({"role": "user", "content": self.user.format(**values)})
        return out


@dataclass(frozen=True)
class PromptSet:
    name: str
    version: str
    encode: ChatPrompt
    encode_rich: ChatPrompt
    decode: ChatPrompt
    decode_rich: ChatPrompt
    rubrics: ChatPrompt
    tailor: ChatPrompt
    judge: ChatPrompt
    augment: ChatPrompt  # the check of an augmented combination (codeclm augment --check model)

    @property
    def ref(self) -> PromptSetRef:
        return PromptSetRef(name=self.name, version=self.version)


@cache
def load_prompt_set(name: str) -> PromptSet:
    """The prompt set `name`, read once per process; an unknown name is a configuration error."""
    if name not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {name!r}: choose one of {', '.join(PROMPT_SETS)}")
    texts = {prompt: prompt_text(name, prompt) for prompt in PROMPT_NAMES}
    return PromptSet(
        name=name,
        version=set_version(texts),
        **{prompt: ChatPrompt.parse(text) for prompt, text in texts.items()},  # type: ignore[arg-type]
    )


def set_version(texts: dict[str, str]) -> str:
    """sha256 (first 12 hex) over a set's prompt files, names and contents: any edit, even of a
    comment, gives a new version."""
    digest = hashlib.sha256()
    for prompt in sorted(texts):
        digest.update(f"{prompt}\x1f{texts[prompt]}\x1e".encode())
    return digest.hexdigest()[:12]


def prompt_text(prompt_set: str, prompt: str) -> str:
    return (PROMPTS_DIR / prompt_set / f"{prompt}.txt").read_text()


def _example(body: str, names: set[str]) -> tuple[dict[str, str], str]:
    rule = _ANSWER_RULE.search(body)
    head, answer = (body[: rule.start()], body[rule.end() :]) if rule else (body, "")
    if not answer.strip():
        raise ValueError(f"an example without an '--- answer ---' part: {body[:80]!r}")
    field = re.compile(rf"^({'|'.join(map(re.escape, sorted(names)))}):[ \t]?(.*)$") if names else None
    fields: dict[str, list[str]] = {}
    current = None
    for line in head.strip("\n").splitlines():
        match = field.match(line) if field else None
        if match:
            current = match.group(1)
            fields[current] = [match.group(2)]
        elif current is not None:
            fields[current].append(line)
        elif line.strip():
            raise ValueError(f"an example line before any field: {line!r}")
    return {k: "\n".join(v).strip() for k, v in fields.items()}, answer.strip()


PAPER = load_prompt_set("paper")  # the default set: what every prompt builder uses unless told otherwise
