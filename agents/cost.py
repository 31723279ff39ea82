"""What a root instruction costs, carried along its iterations to the sink.

Calls made once for several instructions (encode for a seed; decode and rubrics for a
metadata) are shared: each of the metadata's basic instructions carries 1/siblings of them.
Each iteration adds its tailor call, both answers and the judge passes. So an accepted pair's
cost is everything its root spent, and summing it over every root of a seed gives the seed's
whole bill, shares and all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from schemas import CallTotals, LLMCall

ByPurpose = dict[str, CallTotals]
_DIGITS = 6  # of the figures a pair shows; what travels between stages is not rounded


def by_purpose(calls: Iterable[LLMCall], *, share: float = 1.0) -> ByPurpose:
    """`calls` summed per purpose, each weighing `share` (1/siblings for shared calls)."""
    out: dict[str, list[float]] = {}
    for call in calls:
        totals = out.setdefault(call.purpose, [0.0, 0.0, 0.0])
        totals[0] += share
        totals[1] += call.prompt_tokens * share
        totals[2] += call.completion_tokens * share
    return {purpose: CallTotals(calls=c, prompt_tokens=p, completion_tokens=t) for purpose, (c, p, t) in out.items()}


def combine(*parts: Mapping[str, CallTotals]) -> ByPurpose:
    out: dict[str, list[float]] = {}
    for part in parts:
        for purpose, totals in part.items():
            values = out.setdefault(purpose, [0.0, 0.0, 0.0])
            values[0] += totals.calls
            values[1] += totals.prompt_tokens
            values[2] += totals.completion_tokens
    return {purpose: CallTotals(calls=c, prompt_tokens=p, completion_tokens=t) for purpose, (c, p, t) in out.items()}


def total(parts: Mapping[str, CallTotals]) -> CallTotals:
    return rounded(combine(*({"all": t} for t in parts.values()))).get("all", CallTotals())


def rounded(parts: Mapping[str, CallTotals]) -> ByPurpose:
    """The figures as a record shows them: 1/3 call is 0.333333, not 0.33333333333333331."""
    return {
        purpose: CallTotals(
            calls=round(t.calls, _DIGITS),
            prompt_tokens=round(t.prompt_tokens, _DIGITS),
            completion_tokens=round(t.completion_tokens, _DIGITS),
        )
        for purpose, t in parts.items()
    }


@dataclass(frozen=True)
class Price:
    """What an endpoint charges, in US dollars per million tokens."""

    prompt_per_million: float = 0.0
    completion_per_million: float = 0.0

    def of(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.prompt_per_million + completion_tokens * self.completion_per_million) / 1e6


def dollars(
    parts: Mapping[str, CallTotals], prices: Mapping[str, Price], role_of: Mapping[str, str]
) -> dict[str, float]:
    """By purpose, what the calls cost at the price of the role that answers that purpose
    (`role_of`); purposes of a role without a price are left out."""
    out = {}
    for purpose, totals in parts.items():
        price = prices.get(role_of.get(purpose, ""))
        if price is not None:
            out[purpose] = price.of(totals.prompt_tokens, totals.completion_tokens)
    return out
