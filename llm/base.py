"""The LLM seam: one protocol with one method, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Message = dict[str, str]  # {"role": ..., "content": ...}


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str | None = None
    attempts: int = 1
    cached: bool = False


class ChatModel(Protocol):
    """Messages and parameters in, one completion out. `sample` tells otherwise equal calls apart
    (a re-ask after an unparsable answer uses the next sample) and keys the answer cache."""

    @property
    def model(self) -> str: ...

    async def complete(
        self, messages: list[Message], *, temperature: float, max_tokens: int, sample: int = 0
    ) -> Completion: ...


class LLMError(Exception):
    """An LLM call that failed for good (after retries where retrying made sense).

    Messages never contain API keys.
    """

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.attempts = attempts
        self.retryable = retryable
