"""The LLM layer's Prometheus metrics. Created without a registry: the worker adds them to its
own (`streams.runtime.metrics.REGISTRY`), so this layer never reaches up to the one that serves them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLS = Counter(
    "codeclm_llm_requests_total",
    "LLM HTTP requests by role and outcome (ok, rate_limited, server_error, timeout, connection_error, malformed, client_error)",
    ["role", "outcome"],
    registry=None,
)
FAILURES = Counter(
    "codeclm_llm_failures_total", "LLM calls that failed for good, after retries", ["role"], registry=None
)
LATENCY = Histogram(
    "codeclm_llm_latency_seconds",
    "Latency of successful LLM requests",
    ["role"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
    registry=None,
)
TOKENS = Counter(
    "codeclm_llm_tokens_total", "Tokens used, by role and kind (prompt, completion)", ["role", "kind"], registry=None
)
IN_FLIGHT = Gauge("codeclm_llm_in_flight", "LLM requests sent and not yet answered", ["role"], registry=None)
CONCURRENCY_LIMIT = Gauge(
    "codeclm_llm_concurrency_limit",
    "Requests allowed in flight per endpoint (halved on 429, creeps back up on successes)",
    ["role"],
    registry=None,
)
ENDPOINT_DOWN = Gauge(
    "codeclm_llm_endpoint_down",
    "1 while an endpoint is down and its calls wait for it, else 0",
    ["role"],
    registry=None,
)
ENDPOINT_REFUSED = Gauge(
    "codeclm_llm_endpoint_refused",
    "1 while an endpoint refuses the configuration (a wrong key, an unknown model, a parameter it never "
    "takes) and its calls wait; the labels say what it answered",
    ["role", "status", "reason"],
    registry=None,
)
COST = Counter(
    "codeclm_llm_cost_usd_total",
    "What the LLM calls cost, in US dollars, from the endpoint's prices per million tokens (only where set)",
    ["role", "kind"],
    registry=None,
)
TRUNCATED = Counter(
    "codeclm_llm_truncated_total",
    "Answers cut at max_tokens (finish_reason=length), used as they are",
    ["role"],
    registry=None,
)
CACHE_LOOKUPS = Counter(
    "codeclm_llm_cache_lookups_total",
    "Answer cache lookups by role and outcome (hit: a call saved, miss: the LLM was asked)",
    ["role", "outcome"],
    registry=None,
)

ALL = (
    CALLS,
    FAILURES,
    LATENCY,
    TOKENS,
    IN_FLIGHT,
    CONCURRENCY_LIMIT,
    ENDPOINT_DOWN,
    ENDPOINT_REFUSED,
    COST,
    TRUNCATED,
    CACHE_LOOKUPS,
)


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
