"""`codeclm check --seed "..."`: one seed through every stage, in this process and without
Kafka, with the real clients: encode, decode (and rubrics), contrast on the first instruction,
filter's verdict, and one tailor iteration on it whatever the verdict (dedup is skipped). Each
stage runs through its own `process`, as a worker runs it, and what it made is printed with
its calls and tokens. The formatting is pure; `run_seed` does the calls.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from agents import contrast, decode, encode, tailor
from agents import filter as filter_stage
from agents.base import Stage, StageContext, StageFailure
from agents.settings import PipelineSettings
from llm.client import OpenAIChatClient, build_clients, open_session, refusal_hint
from llm.settings import EndpointSettings
from llm.wire import ErrorBody
from schemas import AcceptedPair, Instruction, LLMCall, Metadata, Record, RejectedInstruction, ScoredPair
from streams.ops.check import Problem, Refused, Say, watched
from streams.ops.seed_files import seed_from_text
from streams.settings import Settings

DEFAULT_STAGE_TIMEOUT_S = 300.0
SEED_RUN_RETRIES = 2  # a failing endpoint is reported after a few tries, not the worker's six
ANSWER_CHARS = 240  # of each answer shown


R = TypeVar("R", bound=Record)


class StageStopped(Exception):
    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


@dataclass(frozen=True)
class Ran:
    """What one stage made of one record, and how long it took."""

    records: list[Record]
    seconds: float


RunStage = Callable[[Stage, Record], Awaitable[Ran]]


# -- formatting (pure) ---------------------------------------------------------------------------


def shorten(text: str, limit: int = ANSWER_CHARS) -> str:
    """On one line, cut at `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def indented(text: str, indent: str = "    ") -> str:
    """A multi-line text under its label: its later lines indented."""
    return text.strip().replace("\n", "\n" + indent)


def calls_summary(calls: Sequence[LLMCall]) -> str:
    """`3 calls (decode 1, rubrics 2), 310 prompt + 95 completion tokens`."""
    by_purpose = Counter(call.purpose for call in calls)
    purposes = f" ({', '.join(f'{p} {n}' for p, n in by_purpose.items())})" if len(by_purpose) > 1 else ""
    prompt = sum(call.prompt_tokens for call in calls)
    completion = sum(call.completion_tokens for call in calls)
    plural = "" if len(calls) == 1 else "s"
    return f"{len(calls)} call{plural}{purposes}, {prompt} prompt + {completion} completion tokens"


def stage_head(name: str, calls: Sequence[LLMCall], seconds: float) -> str:
    return f"{name}: {calls_summary(calls)}, {seconds:.2f} s"


def encode_lines(metadata: Metadata, seconds: float) -> list[str]:
    m = metadata.metadata
    lines = [stage_head("encode", metadata.llm_calls, seconds), f"  use case: {m.use_case}"]
    lines.append(f"  skills: {', '.join(m.skills)}")
    if m.domain:
        lines.append(f"  domain: {m.domain}")
    if m.difficulty:
        lines.append(f"  difficulty: {m.difficulty}")
    if m.format_constraints:
        lines.append(f"  format: {'; '.join(m.format_constraints)}")
    return lines


def decode_lines(instructions: Sequence[Instruction], seconds: float) -> list[str]:
    # The decode and rubrics calls ride on the first instruction only (agents/decode.py).
    calls = [call for instruction in instructions for call in instruction.llm_calls]
    lines = [stage_head("decode", calls, seconds)]
    lines += [f"  instruction {n}: {indented(i.text)}" for n, i in enumerate(instructions, 1)]
    first = instructions[0]
    for n, (rubric, action) in enumerate(zip(first.rubrics, first.actions, strict=True), 1):
        lines += [f"  rubric {n}: {rubric}", f"    action: {action}"]
    return lines


def contrast_lines(scored: ScoredPair, seconds: float) -> list[str]:
    models = {call.purpose: call.model for call in scored.llm_calls}
    passes = "; ".join(
        f"{'strong' if j.strong_first else 'target'} first {j.strong_score:g}/{j.target_score:g}"
        for j in scored.judgements
    )
    return [
        stage_head("contrast on instruction 1", scored.llm_calls, seconds),
        f"  strong answer ({models.get('answer_strong')}): {shorten(scored.strong_answer)}",
        f"  target answer ({models.get('answer_target')}): {shorten(scored.target_answer)}",
        f"  judge ({models.get('judge')}): strong {scored.strong_score:g}, target {scored.target_score:g}, "
        f"gap {scored.gap:g} (strong/target per pass: {passes})",
    ]


def filter_lines(verdict: Record, pipeline: PipelineSettings) -> list[str]:
    threshold = f"{pipeline.gap_threshold:g}"
    if isinstance(verdict, AcceptedPair):
        by_purpose = ", ".join(f"{purpose} {t.calls:g}" for purpose, t in verdict.cost_by_purpose.items())
        return [
            f"filter: accept (|gap| {abs(verdict.gap):g} > {threshold}): the pair keeps the "
            f"{verdict.response_source} answer",
            f"  the pair cost {verdict.llm_calls:g} calls ({by_purpose}), "
            f"{verdict.prompt_tokens:g} prompt + {verdict.completion_tokens:g} completion tokens",
        ]
    if isinstance(verdict, RejectedInstruction):
        return [f"filter: reject: {verdict.reason}"]
    assert isinstance(verdict, ScoredPair)
    return [
        f"filter: retry (|gap| {abs(verdict.gap):g} <= {threshold} at iteration {verdict.iteration} "
        f"of {pipeline.max_iterations}): tailor makes the instruction harder"
    ]


def tailor_lines(tailored: Instruction, seconds: float) -> list[str]:
    return [
        stage_head("tailor", tailored.llm_calls, seconds),
        f"  action: {tailored.applied_action}",
        f"  tailored instruction (iteration {tailored.iteration}): {indented(tailored.text)}",
    ]


# -- the run -------------------------------------------------------------------------------------


def seed_run_endpoint(endpoint: EndpointSettings) -> EndpointSettings:
    """The endpoint as configured (answers take their time), but failing after a few tries
    instead of waiting while it is down."""
    retries = min(endpoint.max_retries, SEED_RUN_RETRIES)
    return endpoint.model_copy(update={"pause_when_down": False, "max_retries": retries})


async def run_stage(
    stage: Stage, record: Record, ctx: StageContext, clients: Iterable[OpenAIChatClient], timeout_s: float
) -> Ran:
    """The stage's own `process` on one record; a failure stops the run with what to fix."""
    started = time.monotonic()
    try:
        emits = await watched(stage.process(record, ctx), clients, timeout_s)
    except Refused as exc:
        hint = refusal_hint(exc.role, exc.status, ErrorBody(exc.reason))
        problem = Problem(f"{exc.role} endpoint", f"refused at {stage.name}: {exc.reason}; check {hint}")
        raise StageStopped(problem) from None
    except StageFailure as exc:
        raise StageStopped(Problem("seed run", f"{stage.name}: {exc.reason}")) from exc
    except TimeoutError:
        raise StageStopped(Problem("seed run", f"{stage.name}: no result within {timeout_s:g}s")) from None
    return Ran([emit.record for emit in emits], time.monotonic() - started)


async def run_seed(
    settings: Settings,
    text: str,
    say: Say,
    *,
    instructions: int = 1,
    stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S,
) -> list[Problem]:
    """The seed through every stage, printing what each made; the problem that stopped it, if any."""
    pipeline = settings.pipeline.model_copy(update={"instructions_per_metadata": instructions})
    strong, target = seed_run_endpoint(settings.strong), seed_run_endpoint(settings.target)
    judge = seed_run_endpoint(settings.judge) if settings.judge is not None else None
    async with open_session(strong, target, judge or strong) as session:
        clients = build_clients(strong, target, judge, session)
        ctx = StageContext(*clients, pipeline=pipeline)

        async def run(stage: Stage, record: Record) -> Ran:
            return await run_stage(stage, record, ctx, set(clients), stage_timeout_s)

        say(f"seed: {shorten(text)} (decode asked for {instructions} instruction{'' if instructions == 1 else 's'})")
        try:
            await through_stages(seed_from_text(text, source="codeclm check"), run, pipeline, say)
        except StageStopped as stopped:
            say(f"seed run stopped: {stopped.problem}")
            return [stopped.problem]
    return []


async def through_stages(seed: Record, run: RunStage, pipeline: PipelineSettings, say: Say) -> None:
    """encode, decode, contrast on the first instruction, filter, tailor; each printed when done."""
    encoded = await run(encode.STAGE, seed)
    (metadata,) = made(encoded, Metadata)
    say_all(say, encode_lines(metadata, encoded.seconds))
    decoded = await run(decode.STAGE, metadata)
    instructions = made(decoded, Instruction)
    say_all(say, decode_lines(instructions, decoded.seconds))
    contrasted = await run(contrast.STAGE, instructions[0])
    (scored,) = made(contrasted, ScoredPair)
    say_all(say, contrast_lines(scored, contrasted.seconds))
    (verdict,) = (await run(filter_stage.STAGE, scored)).records
    say_all(say, filter_lines(verdict, pipeline))
    # Tailor whatever the verdict: the check shows what an iteration would make of it.
    tailored = await run(tailor.STAGE, scored)
    say_all(say, tailor_lines(made(tailored, Instruction)[0], tailored.seconds))


def made(ran: Ran, kind: type[R]) -> list[R]:
    """The records a stage made, as the type its declaration says it makes."""
    assert all(isinstance(record, kind) for record in ran.records), ran.records
    return [record for record in ran.records if isinstance(record, kind)]


def say_all(say: Say, lines: Iterable[str]) -> None:
    for line in lines:
        say(line)
