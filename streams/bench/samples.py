"""Pure arithmetic on what a run sampled: rates, the steady-state window, percentiles.

A run samples cumulative counters (LLM calls by endpoint and kind, worker CPU seconds) a few
times a second. Whole-run rates include the pipeline's start (seeds not yet fanned out into
instructions) and its tail (the last instructions trickling through their iterations); the
steady-state window, between the moments 10% and 90% of the strong endpoint's calls had been
made, is when the pipeline is full, and it is what the targets are judged on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

STEADY = (0.10, 0.90)


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at `t` seconds after the run began."""

    t: float
    strong_calls: int
    target_calls: int
    strong_in_flight: int
    target_in_flight: int
    by_kind: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # worker process trees, summed
    rss_kb: int = 0  # worker process trees, summed
    tokens: int = 0  # prompt + completion, both endpoints


Series = Callable[[Sample], float]


def strong(s: Sample) -> float:
    return s.strong_calls


def all_calls(s: Sample) -> float:
    return s.strong_calls + s.target_calls


def crossing(samples: Sequence[Sample], series: Series, level: float) -> float:
    """When `series` (non-decreasing) first reached `level`, interpolated between samples."""
    previous = samples[0]
    if series(previous) >= level:
        return previous.t
    for sample in samples[1:]:
        if series(sample) >= level:
            span = series(sample) - series(previous)
            share = (level - series(previous)) / span if span else 1.0
            return previous.t + share * (sample.t - previous.t)
        previous = sample
    return samples[-1].t


def value_at(samples: Sequence[Sample], series: Series, t: float) -> float:
    """`series` at time `t`, interpolated between the samples around it."""
    if t <= samples[0].t:
        return series(samples[0])
    for before, after in itertools.pairwise(samples):
        if after.t >= t:
            share = (t - before.t) / (after.t - before.t) if after.t > before.t else 1.0
            return series(before) + share * (series(after) - series(before))
    return series(samples[-1])


def steady_window(samples: Sequence[Sample], series: Series = strong, bounds=STEADY) -> tuple[float, float]:
    """(start, end) in seconds: when `series` passed bounds[0] and bounds[1] of its final value."""
    total = series(samples[-1])
    return crossing(samples, series, bounds[0] * total), crossing(samples, series, bounds[1] * total)


def rate(samples: Sequence[Sample], series: Series, start: float, end: float) -> float:
    if end <= start:
        return 0.0
    return (value_at(samples, series, end) - value_at(samples, series, start)) / (end - start)


def mean_level(samples: Sequence[Sample], series: Series, start: float, end: float) -> float:
    """Time-weighted mean of a level (not a counter), such as calls in flight, over [start, end]:
    each sample's value holds until the next sample."""
    total, covered = 0.0, 0.0
    for sample, following in itertools.pairwise(samples):
        lo, hi = max(sample.t, start), min(following.t, end)
        if hi > lo:
            total += series(sample) * (hi - lo)
            covered += hi - lo
    return total / covered if covered else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bound(max_in_flight: int, latency_s: float) -> float:
    """Calls per second one endpoint can serve at most: M requests in flight, each taking L."""
    return max_in_flight / latency_s if latency_s > 0 else math.inf


def calls_of(kind: str) -> Series:
    return lambda s: s.by_kind.get(kind, 0)


def timeline(samples: Sequence[Sample], kinds: Sequence[str], rows: int) -> list[tuple[float, dict[str, float]]]:
    """About `rows` equal time buckets over the run: (bucket start, calls started per second by
    kind in that bucket). Kinds busy in the same bucket were in flight at once."""
    start, end = samples[0].t, samples[-1].t
    if end <= start or rows < 1:
        return []
    width = (end - start) / rows
    buckets = []
    for i in range(rows):
        lo, hi = start + i * width, start + (i + 1) * width
        rates = {kind: rate(samples, calls_of(kind), lo, hi) for kind in kinds}
        buckets.append((lo, rates))
    return buckets
