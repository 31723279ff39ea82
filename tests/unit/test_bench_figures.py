"""The benchmark's arithmetic: steady-state window, rates, levels, percentiles, cost tally."""

from __future__ import annotations

import math

import pytest

from schemas import Instruction, LLMCall, Metadata, MetadataSummary
from streams.bench import figures as f
from streams.bench.cost import tally
from streams.bench.report import table


def samples(points: list[tuple[float, int, int]]) -> list[f.Sample]:
    """(t, strong calls so far, strong in flight)"""
    return [f.Sample(t=t, strong_calls=c, target_calls=0, strong_in_flight=i, target_in_flight=0) for t, c, i in points]


# A run: slow start (10 calls in 2 s), steady 100 calls/s for 8 s, slow tail.
RUN = samples([(0, 0, 0), (2, 10, 5), (10, 810, 20), (12, 820, 1)])


def test_crossing_interpolates_between_samples():
    assert f.crossing(RUN, f.strong, 10) == 2
    assert f.crossing(RUN, f.strong, 410) == pytest.approx(6.0)
    assert f.crossing(RUN, f.strong, 5000) == 12  # never reached: the end


def test_steady_window_skips_the_start_and_the_tail():
    start, end = f.steady_window(RUN)
    assert f.rate(RUN, f.strong, start, end) == pytest.approx(100.0)
    whole = f.rate(RUN, f.strong, 0, 12)
    assert whole < 100  # the whole run is diluted by start and tail


def test_mean_level_is_time_weighted():
    # 5 in flight for 8 s (from t=2 to t=10), 20 for the 2 s after
    assert f.mean_level(RUN, lambda s: s.strong_in_flight, 2, 12) == pytest.approx((5 * 8 + 20 * 2) / 10)


def test_bound_and_percentiles():
    assert f.bound(64, 0.2) == pytest.approx(320)
    assert f.percentile([3, 1, 2, 4], 50) == pytest.approx(2.5)
    assert f.percentile([5.0], 95) == 5.0
    assert math.isnan(f.percentile([], 50))


def test_timeline_gives_calls_started_per_second_by_kind():
    run = [
        f.Sample(0, 0, 0, 0, 0, by_kind={"judge": 0, "tailor": 0}),
        f.Sample(1, 10, 0, 0, 0, by_kind={"judge": 10, "tailor": 0}),
        f.Sample(2, 30, 0, 0, 0, by_kind={"judge": 20, "tailor": 10}),
    ]
    (t0, first), (t1, second) = f.timeline(run, ("judge", "tailor"), 2)
    assert (t0, first) == (0, {"judge": 10, "tailor": 0})
    assert (t1, second) == (1, {"judge": 10, "tailor": 10})


def call(purpose: str) -> LLMCall:
    return LLMCall(purpose=purpose, model="m", prompt_tokens=10, completion_tokens=5, latency_ms=1)


def test_tally_counts_decode_and_rubrics_once_per_metadata_and_dedupes_replays():
    summary = MetadataSummary(use_case="u", skills=("s",))
    meta = Metadata(
        id="meta-1", seed_id="s1", parent_id="s1", seed_text="t", metadata=summary, llm_calls=(call("encode"),)
    )
    common = dict(
        seed_id="s1",
        parent_id="meta-1",
        metadata_id="meta-1",
        siblings=2,
        metadata=summary,
        rubrics=("r",),
        actions=("a",),
    )
    first = Instruction(
        id="i0", root_id="i0", iteration=1, index=0, text="x", llm_calls=(call("decode"), call("rubrics")), **common
    )
    second = Instruction(id="i1", root_id="i1", iteration=1, index=1, text="y", **common)
    calls, accepted, metadata = tally([("metadata", meta), ("decoded", first), ("decoded", second), ("decoded", first)])
    assert metadata == 1 and accepted == 0
    assert {k: len(v) for k, v in calls.items()} == {("encode", None): 1, ("decode", None): 1, ("rubrics", None): 1}


def test_table_aligns_numbers_right():
    text = table(["name", "n"], [["a", 1.5], ["bb", 100.0]])
    assert text.splitlines() == ["name     n", "----  ----", "a     1.50", "bb     100"]
