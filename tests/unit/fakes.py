"""Test doubles for the stage tests: a scripted ChatModel and small record builders.

`ScriptedChatModel` is a test double of `llm.base.ChatModel`, not an LLM: it answers from a
queue of scripted replies or a function of the call, and records every call so a test can
check the messages, temperature, token budget and sample index a stage sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from agents import cost
from agents.base import Emit, StageContext
from agents.settings import PipelineSettings
from llm.base import Completion, LLMError, Message
from schemas import (
    Instruction,
    JudgeVerdict,
    LLMCall,
    Metadata,
    MetadataSummary,
    Record,
    ScoredPair,
    Seed,
    derive_id,
    seed_id_for,
)


@dataclass(frozen=True)
class Call:
    messages: list[Message]
    temperature: float
    max_tokens: int
    sample: int

    @property
    def prompt(self) -> str:
        return "\n".join(m["content"] for m in self.messages)


Reply = str | Exception | Callable[[Call], str]


class ScriptedChatModel:
    """A test double of the ChatModel protocol: replies come from `replies` in order, then
    from `respond(call)`. A reply that is an exception is raised (use LLMError for an
    endpoint that failed for good). Every call is kept in `calls`; `max_in_flight` shows
    whether a stage really ran its calls concurrently."""

    def __init__(
        self,
        *replies: Reply,
        respond: Callable[[Call], str] | None = None,
        model: str = "scripted",
        prompt_tokens: int = 11,
        completion_tokens: int = 7,
        latency_s: float = 0.25,
        delay_s: float = 0.0,
    ):
        self._queue: deque[Reply] = deque(replies)
        self._respond = respond
        self._model = model
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.latency_s = latency_s
        self.delay_s = delay_s
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def model(self) -> str:
        return self._model

    async def complete(
        self, messages: list[Message], *, temperature: float, max_tokens: int, sample: int = 0
    ) -> Completion:
        call = Call([dict(m) for m in messages], temperature, max_tokens, sample)
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            reply: Reply | None = self._queue.popleft() if self._queue else self._respond
            if reply is None:
                raise AssertionError(f"ScriptedChatModel {self._model}: no reply scripted for call {len(self.calls)}")
            if isinstance(reply, Exception):
                raise reply
            text = reply if isinstance(reply, str) else reply(call)
            return Completion(
                text=text,
                model=self._model,
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                latency_s=self.latency_s,
            )
        finally:
            self.in_flight -= 1


def by_marker(routes: Mapping[str, str | list[str] | Callable[[Call], str]]) -> Callable[[Call], str]:
    """A `respond` that picks the reply by the first marker found in the prompt; a list is
    consumed one reply per call (its last reply repeats)."""
    queues = {marker: deque(r) if isinstance(r, list) else r for marker, r in routes.items()}

    def respond(call: Call) -> str:
        for marker, route in queues.items():
            if marker in call.prompt:
                if isinstance(route, deque):
                    return route.popleft() if len(route) > 1 else route[0]
                return route if isinstance(route, str) else route(call)
        raise AssertionError(f"no route for prompt: {call.prompt[:200]!r}")

    return respond


def failing(message: str = "endpoint down") -> LLMError:
    return LLMError(message, status=503, attempts=7, retryable=True)


def make_context(
    strong: ScriptedChatModel,
    target: ScriptedChatModel | None = None,
    judge: ScriptedChatModel | None = None,
    *,
    state: object = None,
    **pipeline: object,
) -> StageContext:
    return StageContext(
        strong=strong,
        target=target or ScriptedChatModel(model="target"),
        judge=judge or strong,
        pipeline=PipelineSettings(**pipeline),  # type: ignore[arg-type]
        state=state,
    )


# -- prompts ----------------------------------------------------------------------------------
# The markers by which the benchmarks' LLM double recognises each prompt: each template must
# hold its own and none of the others'.
MARKERS = {
    "encode": ("Use case:", "Skills:"),
    "decode": ("numbered list", "Generate {n} "),
    "rubrics": ("Rubric 1:", "{k} rubrics"),
    "tailor": ("Improved Instruction:", "#Instruction#:"),
    "augment": ("Answer Yes or No", "Use of the instructions:", "Abilities a response needs:"),
    "judge": (
        "[The Start of Assistant 1's Answer]",
        "[The End of Assistant 1's Answer]",
        "[The Start of Assistant 2's Answer]",
        "[The End of Assistant 2's Answer]",
    ),
}


def assert_markers(name: str) -> None:
    """In every prompt set, `name`'s templates hold their markers and none of the others'."""
    from agents.prompt_sets import PROMPT_SETS, prompt_text

    for prompt_set in PROMPT_SETS:
        template = prompt_text(prompt_set, name)
        for marker in MARKERS[name]:
            assert marker in template, f"{prompt_set}/{name}.txt lacks its marker {marker!r}"
        for other, markers in MARKERS.items():
            if other != name:
                for marker in markers:
                    assert marker not in template, f"{prompt_set}/{name}.txt holds {other}'s marker {marker!r}"


# -- emits ------------------------------------------------------------------------------------
R = TypeVar("R", bound=Record)


def emitted(emits: list[Emit], topic: str, kind: type[R]) -> list[R]:
    """The records of `emits`, checked to all go to `topic` as `kind`."""
    assert [e.topic for e in emits] == [topic] * len(emits)
    assert all(isinstance(e.record, kind) for e in emits)
    return [e.record for e in emits]  # type: ignore[misc]


def only(emits: list[Emit], topic: str, kind: type[R]) -> R:
    (record,) = emitted(emits, topic, kind)
    return record


# -- records ----------------------------------------------------------------------------------
SUMMARY = MetadataSummary(use_case="creative writing", skills=("poetry", "imagery"))
ACTIONS = ("Add a form constraint", "Require a metaphor", "Ask for two stanzas", "Set a word limit")
RUBRICS = ("Form", "Figurative language", "Length", "Concision")


def seed(text: str = "Write a poem about the sea.") -> Seed:
    seed_id = seed_id_for(text)
    return Seed(id=seed_id, seed_id=seed_id, parent_id=None, text=text, created_at=1.0)


def metadata(summary: MetadataSummary = SUMMARY) -> Metadata:
    s = seed()
    return Metadata(
        id=derive_id("meta", s.id), seed_id=s.id, parent_id=s.id, seed_text=s.text, metadata=summary, created_at=2.0
    )


def call(purpose: str, prompt_tokens: int = 100, completion_tokens: int = 50) -> LLMCall:
    return LLMCall(
        purpose=purpose, model="m", prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, latency_ms=10.0
    )


SCORED_CALLS = (call("answer_strong"), call("answer_target"), call("judge"), call("judge"))


def instruction(
    *, iteration: int = 1, text: str = "Write a poem about the harbour at dawn.", actions: tuple[str, ...] = ACTIONS
) -> Instruction:
    """An instruction of root index 0 at `iteration`, with ids as decode and tailor make them."""
    meta = metadata()
    root_id = derive_id("inst", meta.id, 0)

    def inst_id(i: int) -> str:
        return root_id if i == 1 else derive_id("inst", root_id, i)

    parent_id = meta.id if iteration == 1 else derive_id("scored", inst_id(iteration - 1))
    # what decode and tailor would carry: a third (siblings=3) of decode and rubrics, then
    # every earlier iteration's tailor call (from 2 on), answers and judge passes
    upstream = cost.by_purpose((call("decode"), call("rubrics")), share=1 / 3)
    for earlier in range(1, iteration):
        made = (call("tailor"),) if earlier > 1 else ()
        upstream = cost.combine(upstream, cost.by_purpose((*made, *SCORED_CALLS)))
    return Instruction(
        id=inst_id(iteration),
        seed_id=meta.seed_id,
        parent_id=parent_id,
        root_id=root_id,
        metadata_id=meta.id,
        iteration=iteration,
        index=0,
        siblings=3,
        text=text,
        metadata=meta.metadata,
        rubrics=RUBRICS[: len(actions)],
        actions=actions,
        applied_action=None if iteration == 1 else actions[0],
        llm_calls=(call("decode"), call("rubrics")) if iteration == 1 else (call("tailor"),),
        created_at=3.0,
        upstream_cost=upstream,
    )


def scored(*, gap: float = 1.0, iteration: int = 1, inst: Instruction | None = None) -> ScoredPair:
    inst = inst or instruction(iteration=iteration)
    strong_score = 5.0 + gap / 2
    target_score = 5.0 - gap / 2
    return ScoredPair(
        id=derive_id("scored", inst.id),
        seed_id=inst.seed_id,
        parent_id=inst.id,
        root_id=inst.root_id,
        iteration=inst.iteration,
        instruction=inst,
        strong_answer="STRONG ANSWER",
        target_answer="TARGET ANSWER",
        strong_score=strong_score,
        target_score=target_score,
        gap=gap,
        judgements=(JudgeVerdict(strong_first=True, strong_score=strong_score, target_score=target_score),),
        llm_calls=SCORED_CALLS,
        created_at=4.0,
    )
