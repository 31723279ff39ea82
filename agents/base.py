"""What every stage shares: its declaration (`Stage`: name, the topics it reads and writes,
`process`, the LLM roles and the state it needs), the context it runs in, what it emits, how it
fails, and `ask`, one LLM call with parsing and bounded re-asks. No Kafka here: stages are
testable alone, and the worker (streams/runtime) builds every stage from its declaration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import orjson

from agents.prompt_sets import PromptSet, load_prompt_set
from agents.settings import DedupSettings, PipelineSettings
from llm.base import ChatModel, Completion, LLMError, Message
from schemas import LLMCall, Record
from schemas.topics import TopicName, record_type

T = TypeVar("T")


Role = Literal["strong", "target", "judge"]


@dataclass(frozen=True)
class Emit:
    """A record for one of the pipeline's topics, named without prefix ("metadata", "accepted");
    the stage must have declared the topic among its outputs."""

    topic: TopicName
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


class StageState(Protocol):
    """A stage's own state (dedup's index of kept instructions), built once per worker."""

    def close(self) -> None: ...


Tail = Callable[[], Awaitable[list[Record]]]  # each call: the records a topic gained since the last one


@dataclass(frozen=True)
class StageEnv:
    """What the worker hands a stage to build its state from: plain values, and `tail(topic)`,
    a reader of what a topic gained since the previous call (from its start the first time)."""

    pipeline: PipelineSettings
    dedup: DedupSettings
    data_dir: Path
    tail: Callable[[TopicName], Tail]


@dataclass(frozen=True)
class StageContext:
    strong: ChatModel
    target: ChatModel
    judge: ChatModel
    pipeline: PipelineSettings
    state: Any = None  # the running stage's own state (`Stage.open_state`), None for most

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
class Stage:
    """A stage as the worker runs it: one consumer group reading `inputs` (records of one
    type), `process` turning each record into records for `outputs`, with the LLM `roles` it
    calls and, for a stage that keeps state across records, `open_state`. Any stage may also
    dead-letter a record; the worker does that, so `deadletter` is never an output here."""

    name: str
    inputs: tuple[TopicName, ...]
    outputs: tuple[TopicName, ...]
    process: Callable[[Any, StageContext], Awaitable[list[Emit]]]
    # Its LLM calls: purpose (LLMCall.purpose) -> the role that answers them, in calling order.
    calls: Mapping[str, Role] = field(default_factory=dict)
    open_state: Callable[[StageEnv], StageState] | None = None

    def __post_init__(self) -> None:
        if len({record_type(topic) for topic in self.inputs}) != 1:
            raise ValueError(f"stage {self.name}: its inputs hold different records")

    @property
    def roles(self) -> tuple[Role, ...]:
        """The LLM endpoints this stage calls."""
        return tuple(dict.fromkeys(self.calls.values()))

    @property
    def purposes(self) -> tuple[str, ...]:
        return tuple(self.calls)

    @property
    def record(self) -> type[Record]:
        """The record type of every input topic."""
        return record_type(self.inputs[0])

    def undeclared(self, emits: list[Emit]) -> list[str]:
        """The topics among `emits` this stage did not declare (a bug, never data)."""
        return [emit.topic for emit in emits if emit.topic not in self.outputs]


@dataclass(frozen=True)
class Budget:
    """How one kind of call is asked: its temperature and completion tokens, how many asks an
    unparsable answer gets, and the least temperature of a re-ask."""

    temperature: float
    max_tokens: int
    attempts: int
    reask_temperature: float

    @classmethod
    def generation(cls, p: PipelineSettings) -> Budget:
        """encode, decode, rubrics and tailor."""
        return cls(p.generation_temperature, p.max_tokens, p.parse_attempts, p.reask_temperature)

    @classmethod
    def answers(cls, p: PipelineSettings) -> Budget:
        return cls(p.answer_temperature, p.answer_max_tokens, p.parse_attempts, p.reask_temperature)

    @classmethod
    def judge(cls, p: PipelineSettings) -> Budget:
        return cls(p.judge_temperature, p.judge_max_tokens, p.parse_attempts, p.reask_temperature)

    def temperature_of(self, attempt: int) -> float:
        """A re-ask samples: a greedy one would repeat the unparsable answer."""
        return self.temperature if attempt == 0 else max(self.temperature, self.reask_temperature)


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
    budget: Budget,
    sample_base: int = 0,
) -> Asked[T]:
    """Call `model` and parse its answer; an unparsable answer is asked again (next sample)
    up to `budget.attempts` times. Raises StageFailure when the LLM fails or nothing parses."""
    failure: ParseFailure | None = None
    calls: list[LLMCall] = []
    for attempt in range(budget.attempts):
        completion = await _complete(model, messages, purpose, budget, attempt, sample_base + attempt)
        calls.append(llm_call(purpose, completion))
        parsed = parse(completion.text)
        if not isinstance(parsed, ParseFailure):
            return Asked(parsed, tuple(calls))
        failure = parsed
    assert failure is not None
    raise _unparsable(purpose, failure, budget.attempts)


async def ask_for_items(
    model: ChatModel,
    build: Callable[[int], list[Message]],
    parse: Callable[[str, int], tuple[T, ...] | ParseFailure],
    *,
    want: int,
    key: Callable[[T], Hashable],
    purpose: str,
    budget: Budget,
) -> Asked[tuple[T, ...]]:
    """`want` distinct items (by `key`), asking again for the ones still missing when an
    answer brings fewer usable ones, up to `budget.attempts` asks in all. Fewer than `want`
    after that is what the model gave; none at all is a StageFailure."""
    items: list[T] = []
    seen: set[Hashable] = set()
    calls: list[LLMCall] = []
    failure: ParseFailure | None = None
    for attempt in range(budget.attempts):
        completion = await _complete(model, build(want - len(items)), purpose, budget, attempt, attempt)
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
        raise _unparsable(purpose, failure, budget.attempts)
    return Asked(tuple(items), tuple(calls))


async def _complete(
    model: ChatModel, messages: list[Message], purpose: str, budget: Budget, attempt: int, sample: int
) -> Completion:
    temperature = budget.temperature_of(attempt)
    try:
        return await model.complete(messages, temperature=temperature, max_tokens=budget.max_tokens, sample=sample)
    except LLMError as exc:
        raise StageFailure(f"{purpose}: LLM call failed: {exc}", type(exc).__name__, exc.attempts) from exc


def _unparsable(purpose: str, failure: ParseFailure, attempts: int) -> StageFailure:
    raw = failure.raw if len(failure.raw) <= 500 else failure.raw[:500] + "..."
    return StageFailure(
        f"{purpose}: unparsable answer after {attempts} asks: {failure.reason}; last answer: {raw!r}",
        "ParseFailure",
        attempts,
    )
