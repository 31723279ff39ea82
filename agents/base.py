"""What every stage shares: the context a stage runs in, what it emits, how it fails, and
`ask`, one LLM call with parsing and bounded re-asks. No Kafka here: stages are testable alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from llm.base import ChatModel, Completion, LLMError, Message
from schemas import LLMCall, Record
from streams.settings import PipelineSettings

T = TypeVar("T")
PROMPTS = Path(__file__).parent / "prompts"


@dataclass(frozen=True)
class Emit:
    """A record for one of the pipeline's topics, named without prefix ("metadata", "accepted")."""

    topic: str
    record: Record


@dataclass(frozen=True)
class ParseFailure:
    """An LLM answer a parser could not use: the reason and the raw text."""

    reason: str
    raw: str


class StageFailure(Exception):
    """An expected failure of one record (LLM down after retries, unparsable after re-asks):
    the record goes to the dead-letter topic with this reason; the stage carries on."""

    def __init__(self, reason: str, error_class: str, attempts: int = 1):
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class
        self.attempts = attempts


@dataclass(frozen=True)
class StageContext:
    strong: ChatModel
    target: ChatModel
    judge: ChatModel
    pipeline: PipelineSettings


@dataclass(frozen=True)
class Asked(Generic[T]):
    value: T
    call: LLMCall


def load_prompt(name: str) -> str:
    return (PROMPTS / f"{name}.txt").read_text()


def llm_call(purpose: str, completion: Completion) -> LLMCall:
    return LLMCall(
        purpose=purpose,
        model=completion.model,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        latency_ms=round(completion.latency_s * 1000, 2),
        attempts=completion.attempts,
        cached=completion.cached,
    )


async def ask(
    model: ChatModel,
    messages: list[Message],
    parse: Callable[[str], T | ParseFailure],
    *,
    purpose: str,
    temperature: float,
    max_tokens: int,
    attempts: int,
    sample_base: int = 0,
) -> Asked[T]:
    """Call `model` and parse its answer; an unparsable answer is asked again (next sample)
    up to `attempts` times. Raises StageFailure when the LLM fails or nothing parses."""
    failure: ParseFailure | None = None
    for attempt in range(attempts):
        try:
            completion = await model.complete(
                messages, temperature=temperature, max_tokens=max_tokens, sample=sample_base + attempt
            )
        except LLMError as exc:
            raise StageFailure(f"{purpose}: LLM call failed: {exc}", type(exc).__name__, exc.attempts) from exc
        parsed = parse(completion.text)
        if not isinstance(parsed, ParseFailure):
            return Asked(parsed, llm_call(purpose, completion))
        failure = parsed
    assert failure is not None
    raw = failure.raw if len(failure.raw) <= 500 else failure.raw[:500] + "..."
    raise StageFailure(
        f"{purpose}: unparsable answer after {attempts} asks: {failure.reason}; last answer: {raw!r}",
        "ParseFailure",
        attempts,
    )
