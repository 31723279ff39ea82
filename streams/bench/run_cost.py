"""What an accepted pair costs: LLM calls and tokens by stage and iteration, read back from the
records (every record that came out of an LLM carries its calls), and checked against what
the LLM doubles counted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas import AcceptedPair, Instruction, LLMCall, Metadata, Record, ScoredPair
from streams.kafka.topic_io import read_records
from streams.report.pair_cost import PairCostFigures, pair_cost_figures
from streams.settings import Settings


@dataclass(frozen=True)
class CostRow:
    stage: str
    iteration: int | None  # None: per seed or metadata, before any iteration
    calls: int
    cached: int  # of `calls`, answered by the worker's answer cache (no request made)
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Cost:
    rows: tuple[CostRow, ...]
    accepted: int
    metadata: int  # metadata records (one per seed that encoded)
    rubrics_calls_records: int  # rubrics calls the records carry
    rubrics_calls_double: int  # rubrics prompts the strong double answered
    calls_double: int  # every request the doubles answered (re-asks and retries included)
    # by purpose: the accepted pairs' own cost, and the run's calls / accepted pairs
    by_purpose: PairCostFigures | None = field(default=None, compare=False)

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.rows)

    @property
    def cached(self) -> int:
        return sum(r.cached for r in self.rows)

    @property
    def tokens(self) -> int:
        return sum(r.prompt_tokens + r.completion_tokens for r in self.rows)


def tally(records: Sequence[tuple[str, Record]]) -> tuple[dict[tuple[str, int | None], list[LLMCall]], int, int]:
    """Pure: the calls of each (stage, iteration), the accepted pairs and the metadata records.
    Records are de-duplicated by id (delivery is at-least-once)."""
    seen: set[tuple[str, str]] = set()
    calls: dict[tuple[str, int | None], list[LLMCall]] = defaultdict(list)
    accepted = metadata = 0
    for topic, record in records:
        key = (topic, record.id)
        if key in seen:
            continue
        seen.add(key)
        if isinstance(record, Metadata):
            metadata += 1
            calls[("encode", None)] += record.llm_calls
        elif isinstance(record, Instruction) and topic == "decoded":
            # decode and rubrics ride on the index-0 instruction of each metadata only (read from
            # `decoded`: dedup may drop that instruction before `basic`, the calls were still paid)
            for call in record.llm_calls:
                calls[(call.purpose, None)].append(call)
        elif isinstance(record, Instruction) and topic == "tailored":
            calls[("tailor", record.iteration)] += record.llm_calls
        elif isinstance(record, ScoredPair) and topic == "scored":
            for call in record.llm_calls:
                calls[(f"contrast: {call.purpose}", record.iteration)].append(call)
        elif isinstance(record, AcceptedPair):
            accepted += 1
    return calls, accepted, metadata


ORDER = (
    "encode",
    "decode",
    "rubrics",
    "contrast: answer_strong",
    "contrast: answer_target",
    "contrast: judge",
    "tailor",
)


def cost_of(records: Sequence[tuple[str, Record]], double_stats: dict[str, dict]) -> Cost:
    calls, accepted, metadata = tally(records)
    pairs = [r for topic, r in records if topic == "accepted" and isinstance(r, AcceptedPair)]
    keys = sorted(calls, key=lambda k: (k[1] or 0, ORDER.index(k[0]) if k[0] in ORDER else len(ORDER), k[0]))
    rows = tuple(
        CostRow(
            stage,
            iteration,
            len(calls[(stage, iteration)]),
            sum(c.cached for c in calls[(stage, iteration)]),
            sum(c.prompt_tokens for c in calls[(stage, iteration)]),
            sum(c.completion_tokens for c in calls[(stage, iteration)]),
        )
        for stage, iteration in keys
    )
    return Cost(
        rows=rows,
        accepted=accepted,
        metadata=metadata,
        rubrics_calls_records=len(calls.get(("rubrics", None), [])),
        rubrics_calls_double=double_stats.get("strong", {}).get("by_kind", {}).get("rubrics", 0),
        calls_double=sum(s.get("calls", 0) for s in double_stats.values()),
        by_purpose=pair_cost_figures(pairs, [c for group in calls.values() for c in group]),
    )


async def read_cost(settings: Settings, double_stats: dict[str, dict]) -> Cost:
    topics = ("metadata", "decoded", "tailored", "scored", "accepted")
    records = [(topic, record) async for topic, record in read_records(settings, topics)]
    return cost_of(records, double_stats)
