"""The double's knobs and counters: DoubleConfig (latency, fault rates, test aids, style, the
providers' quirks it emulates), `draw_fault` (which fault one uniform draw lands on), what the
content faults send, and DoubleStats (what /stats reports)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

from llm.double.prompts import KINDS
from llm.double.providers import AUTH_STYLES, TOKEN_PARAMETERS
from llm.double.replies import STYLES

MALFORMED_TEXT = "lorem ipsum ??? <|garbled|> ~~ ::"
FIVE_XX_CYCLE = (500, 502, 503)


@dataclass
class DoubleConfig:
    """The double's knobs. Rates are probabilities of one fault per request; their sum is at
    most 1 (one uniform draw picks at most one fault)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float | None = None
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    hang_s: float = 30.0
    rate_malformed: float = 0.0
    rate_empty_choices: float = 0.0
    rate_length: float = 0.0
    rate_bad_json: float = 0.0  # a 200 whose body is cut short, as a dying proxy sends
    max_concurrency: int | None = None
    random_seed: int | None = None
    down: bool = False
    # Test aids beyond faults drawn at random:
    max_faults: int | None = None  # stop drawing faults after this many ("fail 3 times, then answer")
    force_status: int | None = None  # every chat request gets this status (400, 401, 404, ...)
    api_key: str | None = None  # when set, requests must carry this key (where `auth` says)
    echo_headers: bool = False  # error bodies echo the request headers, as careless servers do
    style: str = "plain"  # "plain": tidy answers; "chat": formatted as strong chat models write them
    # Providers' quirks, each refused with the provider's own body (llm/double/providers.py):
    # "any" takes max_tokens or max_completion_tokens; "max_completion_tokens" refuses
    # max_tokens (OpenAI's newer models); "max_tokens" refuses max_completion_tokens (old vLLM).
    token_parameter: str = "any"
    fixed_temperature: bool = False  # refuse a temperature other than 1 (OpenAI's reasoning models)
    known_models: list[str] | None = None  # None: any model answers; else others get 404 (Azure: deployments)
    context_tokens: int | None = None  # a prompt of more tokens (words) than this gets the context-length 400
    # Where /v1/chat/completions wants api_key: "bearer" (Authorization: Bearer, OpenAI),
    # "api-key" (Azure), "x-api-key" (Anthropic); Azure's and Anthropic's endpoints use their own.
    auth: str = "bearer"
    # Headers every request to a provider endpoint must carry, as a gateway demands: missing 401, other value 403.
    require_headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}: {self.style!r}")
        if self.token_parameter not in TOKEN_PARAMETERS:
            raise ValueError(f"token_parameter must be one of {', '.join(TOKEN_PARAMETERS)}: {self.token_parameter!r}")
        if self.auth not in AUTH_STYLES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_STYLES)}: {self.auth!r}")
        if self.known_models is not None:
            if isinstance(self.known_models, str) or not all(isinstance(m, str) for m in self.known_models):
                raise ValueError(f"known_models is a list of model names: {self.known_models!r}")
            self.known_models = list(self.known_models)
        if self.context_tokens is not None and (isinstance(self.context_tokens, bool) or self.context_tokens < 1):
            raise ValueError(f"context_tokens is a positive number of tokens: {self.context_tokens!r}")
        headers = self.require_headers
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError(f"require_headers maps header names to values: {headers!r}")
        rates = self.fault_rates()
        if any(not 0.0 <= r <= 1.0 for r in rates.values()) or sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1: {rates}")
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.hang_s < 0:
            raise ValueError("latency_ms, jitter_ms and hang_s are not negative")

    def fault_rates(self) -> dict[str, float]:
        return {
            "429": self.rate_429,
            "5xx": self.rate_5xx,
            "timeout": self.rate_timeout,
            "malformed": self.rate_malformed,
            "empty_choices": self.rate_empty_choices,
            "length": self.rate_length,
            "bad_json": self.rate_bad_json,
        }


def draw_fault(rates: dict[str, float], u: float) -> str | None:
    """The fault a uniform draw u in [0, 1) lands on, or None for a clean answer."""
    edge = 0.0
    for fault, rate in rates.items():
        edge += rate
        if u < edge:
            return fault
    return None


@dataclass
class DoubleStats:
    calls: int = 0
    by_kind: Counter[str] = dataclasses.field(default_factory=Counter)
    by_status: Counter[int] = dataclasses.field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "by_kind": {k: self.by_kind.get(k, 0) for k in KINDS},
            "by_status": {str(s): n for s, n in sorted(self.by_status.items())},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
