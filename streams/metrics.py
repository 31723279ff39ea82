"""The worker's Prometheus metrics, defined once; stages and the LLM client update them and
the worker's HTTP endpoint renders them (`/metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS = Counter(
    "codeclm_records_total",
    "Records a stage finished, by outcome (processed or dead_lettered)",
    ["stage", "outcome"],
    registry=REGISTRY,
)
EMITTED = Counter("codeclm_emitted_total", "Records a stage produced, by topic", ["stage", "topic"], registry=REGISTRY)
VERDICTS = Counter("codeclm_verdicts_total", "Filter decisions: accept, retry, reject", ["verdict"], registry=REGISTRY)
STAGE_IN_FLIGHT = Gauge("codeclm_stage_in_flight", "Records a stage is working on", ["stage"], registry=REGISTRY)

LLM_CALLS = Counter(
    "codeclm_llm_requests_total",
    "LLM HTTP requests by role and outcome (ok, rate_limited, server_error, timeout, connection_error, malformed, client_error)",
    ["role", "outcome"],
    registry=REGISTRY,
)
LLM_FAILURES = Counter(
    "codeclm_llm_failures_total", "LLM calls that failed for good, after retries", ["role"], registry=REGISTRY
)
LLM_LATENCY = Histogram(
    "codeclm_llm_latency_seconds",
    "Latency of successful LLM requests",
    ["role"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "codeclm_llm_tokens_total",
    "Tokens used, by role and kind (prompt, completion)",
    ["role", "kind"],
    registry=REGISTRY,
)
LLM_IN_FLIGHT = Gauge("codeclm_llm_in_flight", "LLM requests sent and not yet answered", ["role"], registry=REGISTRY)

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


def outcome_of(status: int | None, reason: str) -> str:
    """A metric label for one failed request attempt."""
    if status == 429:
        return "rate_limited"
    if status is not None and status >= 500:
        return "server_error"
    if status is not None and status != 200:
        return "client_error"
    if reason.startswith("timed out"):
        return "timeout"
    if reason.startswith("connection"):
        return "connection_error"
    return "malformed"
