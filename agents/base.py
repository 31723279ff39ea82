"""What every stage shares: the context a stage runs in, what it emits, how it fails, and
`ask`, one LLM call with parsing and bounded re-asks. No Kafka here: stages are testable alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cached_property
from typing import Generic, TypeVar

import orjson

from agents.prompt_sets import PromptSet, load_prompt_set
from llm.base import ChatModel, Completion, LLMError, Message
from schemas import LLMCall, Record
from streams.settings import PipelineSettings

T = TypeVar("T")


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

    @property
    def prompts(self) -> PromptSet:
        return load_prompt_set(self.pipeline.prompts)

    @cached_property
    def settings_hash(self) -> str:
        return settings_hash(self.pipeline)


def settings_hash(pipeline: PipelineSettings) -> str:
    """sha256 (first 12 hex) of the pipeline settings: equal settings, equal hash, in any process."""
    dumped = orjson.dumps(pipeline.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(dumped).hexdigest()[:12]


@dataclass(frozen=True)
class Asked(Generic[T]):
    """A parsed answer and every call it took (re-asks of unparsable answers included: each
    was paid for)."""

    value: T
    calls: tuple[LLMCall, ...]


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
    reask_temperature: float,
    sample_base: int = 0,
) -> Asked[T]:
    """Call `model` and parse its answer; an unparsable answer is asked again (next sample,
    at `reask_temperature` at least: a greedy re-ask would repeat itself) up to `attempts`
    times. Raises StageFailure when the LLM fails or nothing parses."""
    failure: ParseFailure | None = None
    calls: list[LLMCall] = []
    for attempt in range(attempts):
        completion = await _complete(
            model,
            messages,
            purpose,
            _temperature(temperature, reask_temperature, attempt),
            max_tokens,
            sample_base + attempt,
        )
        calls.append(llm_call(purpose, completion))
        parsed = parse(completion.text)
        if not isinstance(parsed, ParseFailure):
            return Asked(parsed, tuple(calls))
        failure = parsed
    assert failure is not None
    raise _unparsable(purpose, failure, attempts)


async def ask_for_items(
    model: ChatModel,
    build: Callable[[int], list[Message]],
    parse: Callable[[str, int], tuple[T, ...] | ParseFailure],
    *,
    want: int,
    key: Callable[[T], Hashable],
    purpose: str,
    temperature: float,
    max_tokens: int,
    attempts: int,
    reask_temperature: float,
) -> Asked[tuple[T, ...]]:
    """`want` distinct items (by `key`), asking again for the ones still missing when an
    answer brings fewer usable ones, up to `attempts` asks in all. Fewer than `want` after
    that is what the model gave; none at all is a StageFailure."""
    items: list[T] = []
    seen: set[Hashable] = set()
    calls: list[LLMCall] = []
    failure: ParseFailure | None = None
    for attempt in range(attempts):
        missing = want - len(items)
        completion = await _complete(
            model, build(missing), purpose, _temperature(temperature, reask_temperature, attempt), max_tokens, attempt
        )
        calls.append(llm_call(purpose, completion))
        parsed = parse(completion.text, want)
        if isinstance(parsed, ParseFailure):
            failure = parsed
            continue
        for item in parsed:
            if key(item) not in seen and len(items) < want:
                seen.add(key(item))
                items.append(item)
        if len(items) == want:
            break
    if not items:
        assert failure is not None
        raise _unparsable(purpose, failure, attempts)
    return Asked(tuple(items), tuple(calls))


def _temperature(temperature: float, reask_temperature: float, attempt: int) -> float:
    return temperature if attempt == 0 else max(temperature, reask_temperature)


async def _complete(
    model: ChatModel, messages: list[Message], purpose: str, temperature: float, max_tokens: int, sample: int
) -> Completion:
    try:
        return await model.complete(messages, temperature=temperature, max_tokens=max_tokens, sample=sample)
    except LLMError as exc:
        raise StageFailure(f"{purpose}: LLM call failed: {exc}", type(exc).__name__, exc.attempts) from exc


def _unparsable(purpose: str, failure: ParseFailure, attempts: int) -> StageFailure:
    raw = failure.raw if len(failure.raw) <= 500 else failure.raw[:500] + "..."
    return StageFailure(
        f"{purpose}: unparsable answer after {attempts} asks: {failure.reason}; last answer: {raw!r}",
        "ParseFailure",
        attempts,
    )
