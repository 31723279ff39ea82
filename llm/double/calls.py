"""What a chat request asks, whatever the endpoint, and the reply bodies. A `Call` is read from
an OpenAI chat-completions body (also Azure's, whose URL names the model) or from an Anthropic
Messages body, whose system prompt and text blocks become OpenAI-style messages, so the double
classifies and answers both alike. `chat_body` and `message_body` write the replies, with
words counted as tokens. Pure functions, no I/O."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any


def count_tokens(text: str) -> int:
    """Words stand in for tokens: close enough for cost accounting in tests."""
    return len(text.split())


def truncate_words(text: str, limit: int) -> str:
    return " ".join(text.split(" ")[: max(1, limit)])


@dataclass(frozen=True)
class Call:
    """One chat request: the model asked (Azure: the deployment), the conversation as
    OpenAI-style messages, the token limit it sets (None: no limit) and its prompt's tokens."""

    model: str
    messages: list[dict[str, Any]]
    token_limit: int | None

    @property
    def prompt_tokens(self) -> int:
        return sum(count_tokens(str(m.get("content", ""))) for m in self.messages)


def read_chat(body: Any, model: str | None = None) -> Call:
    """An OpenAI chat-completions body; `model` (Azure's deployment) overrides the body's.
    The token limit is `max_completion_tokens` when sent, else `max_tokens` (a server that
    takes only one has refused the other before the limit is read). Raises ValueError,
    KeyError or TypeError on a body the double cannot read."""
    messages = body["messages"]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise TypeError("messages is not a list of objects")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    return Call(
        model=model or str(body.get("model") or "llm-double"),
        messages=messages,
        token_limit=limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
    )


def read_messages(body: Any) -> Call:
    """An Anthropic Messages body: {model, max_tokens, system?, messages: [{role, content}]},
    content a string or a list of blocks whose text blocks are read (joined by newlines).
    Raises ValueError with Anthropic's wording ("max_tokens: Field required")."""
    if not isinstance(body, dict):
        raise ValueError("body: Input should be a valid dictionary")
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            raise ValueError(f"{field}: Field required")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise ValueError("max_tokens: Input should be a valid integer")
    if not isinstance(body["messages"], list):
        raise ValueError("messages: Input should be a valid list")
    messages = []
    if body.get("system") is not None:
        messages.append({"role": "system", "content": _text(body["system"], "system")})
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise ValueError(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        messages.append({"role": message["role"], "content": _text(message.get("content"), f"messages.{i}.content")})
    return Call(model=str(body["model"]), messages=messages, token_limit=max_tokens)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(block, dict) for block in content):
        return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    raise ValueError(f"{where}: Input should be a valid string or a list of content blocks")


def chat_body(model: str, content: str | None, *, finish_reason: str, prompt_tokens: int) -> dict[str, Any]:
    """An OpenAI-shaped response body; content None gives an empty choices list."""
    choices = (
        []
        if content is None
        else [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}]
    )
    completion_tokens = count_tokens(content or "")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def message_body(model: str, content: str | None, *, cut: bool, input_tokens: int) -> dict[str, Any]:
    """An Anthropic Messages response body; content None gives an empty content list; `cut`
    (the reply stopped at the token limit) gives stop_reason "max_tokens"."""
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [] if content is None else [{"type": "text", "text": content}],
        "stop_reason": "max_tokens" if cut else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": count_tokens(content or "")},
    }
