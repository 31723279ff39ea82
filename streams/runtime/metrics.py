"""The worker's Prometheus metrics, defined once; stages update them and the worker's HTTP
endpoint renders them (`/metrics`), with the LLM layer's (`llm/metrics.py`)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from agents.base import Emit, Stage
from agents.cost import Price
from llm import metrics as llm_metrics

REGISTRY = CollectorRegistry(auto_describe=True)
for _metric in llm_metrics.ALL:  # the LLM layer's own, served with the worker's
    REGISTRY.register(_metric)

RECORDS = Counter(
    "codeclm_records_total",
    "Records a stage finished, by outcome (processed or dead_lettered)",
    ["stage", "outcome"],
    registry=REGISTRY,
)
EMITTED = Counter("codeclm_emitted_total", "Records a stage produced, by topic", ["stage", "topic"], registry=REGISTRY)
VERDICTS = Counter("codeclm_verdicts_total", "Filter decisions: accept, retry, reject", ["verdict"], registry=REGISTRY)
STAGE_IN_FLIGHT = Gauge("codeclm_stage_in_flight", "Records a stage is working on", ["stage"], registry=REGISTRY)

STAGE_COST = Counter(
    "codeclm_stage_cost_usd_total",
    "What each stage's LLM calls cost, in US dollars, from the endpoints' prices (answer-cache hits cost nothing)",
    ["stage"],
    registry=REGISTRY,
)
DEDUP_DECISIONS = Counter(
    "codeclm_dedup_decisions_total",
    "dedup decisions on basic instructions: kept, or dropped by method (exact, embedding)",
    ["outcome"],
    registry=REGISTRY,
)
DEDUP_INDEX_SIZE = Gauge(
    "codeclm_dedup_index_size", "Kept instructions the dedup stage compares each new one with", registry=REGISTRY
)

VERDICT_OF_TOPIC = {"accepted": "accept", "retry": "retry", "rejected": "reject"}


def count_decision(stage: str, emit: Emit) -> None:
    """The decision an output stands for: filter's verdicts, dedup's keep or drop (by method)."""
    if emit.topic in VERDICT_OF_TOPIC:
        return  # counted with the topic's other counters (VERDICTS)
    if emit.topic == "duplicates":
        DEDUP_DECISIONS.labels(getattr(emit.record, "method", "exact")).inc()
    elif stage == "dedup" and emit.topic == "basic":
        DEDUP_DECISIONS.labels("kept").inc()


def count_cost(stage: Stage, emits: list[Emit], prices: Mapping[str, Price]) -> None:
    """What the calls this stage made for its outputs cost (a record passed on, as filter
    passes scored pairs to retry, carries calls another stage made and paid)."""
    if not prices:
        return
    spent = 0.0
    for emit in emits:
        calls = getattr(emit.record, "llm_calls", ())
        for call in calls if isinstance(calls, tuple) else ():
            price = prices.get(stage.calls.get(call.purpose, ""))
            if price is not None and not call.cached:
                spent += price.of(call.prompt_tokens, call.completion_tokens)
    if spent:
        STAGE_COST.labels(stage.name).inc(spent)
