"""The double's reply to a pipeline prompt: `answer_for` gives the reply to a prompt of a kind
(from `classify`) in one of the STYLES. Pure functions, no I/O.

It answers both prompt sets (agents/prompts/paper and agents/prompts/small-model). Two styles:
"plain" (the default) gives tidy answers, one instruction per line; "chat" gives what a strong
chat model writes: preambles, numbered items with bold titles, closing remarks, and instructions
with code spans, `__dunder__` names, maths (`2**10`, `$x^2$`), quotes and input blocks (a quoted
paragraph, a code fence, a table, sub-bullets) after a colon. `chat_decode_instructions` and
`chat_tailored_instruction` give the exact instruction texts a chat answer means, so a test can
check that the pipeline keeps them verbatim.
"""

from __future__ import annotations

from typing import Any

from llm.double.chat import (
    chat_answer_reply,
    chat_augment_reply,
    chat_decode_reply,
    chat_encode_reply,
    chat_rubrics_reply,
    chat_tailor_reply,
)
from llm.double.plain import (
    answer_reply,
    augment_reply,
    decode_reply,
    encode_reply,
    judge_reply,
    rubrics_reply,
    tailor_reply,
)
from llm.double.prompts import _all_text, classify_text

STYLES = ("plain", "chat")


def answer_for(kind: str, messages: list[dict[str, Any]], model: str, style: str = "plain") -> str:
    """The double's reply to a prompt of `kind` (from classify), in `style` (plain or chat)."""
    prompt = classify_text(messages)[1] if kind != "answer" else _all_text(messages)
    chat = style == "chat"
    if kind == "judge":
        return judge_reply(prompt)
    if kind == "rubrics":
        return chat_rubrics_reply(prompt) if chat else rubrics_reply(prompt)
    if kind == "tailor":
        return chat_tailor_reply(prompt) if chat else tailor_reply(prompt)
    if kind == "augment":
        return chat_augment_reply(prompt) if chat else augment_reply(prompt)
    if kind == "decode":
        return chat_decode_reply(prompt) if chat else decode_reply(prompt)
    if kind == "encode":
        return chat_encode_reply(prompt) if chat else encode_reply(prompt)
    return chat_answer_reply(prompt, model) if chat else answer_reply(prompt, model)
