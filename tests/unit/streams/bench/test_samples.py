"""The benchmark's arithmetic: steady-state window, rates, levels, percentiles, cost tally, the
prompt-set comparison."""

from __future__ import annotations

import math

import pytest

from schemas import AcceptedPair, CallTotals, Instruction, LLMCall, Metadata, MetadataSummary
from streams.bench import samples as f
from streams.bench.run_cost import cost_of, tally
from streams.bench.summary import prompt_set_table, table
from streams.report.pair_cost import per_accepted_pair


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


def test_table_prints_none_as_a_dash_and_aligns_percentages_right():
    text = table(["name", "n", "share"], [["a", None, "5.0%"], ["bb", 2.0, "75.0%"]])
    assert text.splitlines() == ["name     n  share", "----  ----  -----", "a        -   5.0%", "bb    2.00  75.0%"]


def accepted_pair(root: str, cost: dict[str, tuple[float, float, float]]) -> AcceptedPair:
    summary = MetadataSummary(use_case="u", skills=("s",))
    totals = {p: CallTotals(calls=c, prompt_tokens=pt, completion_tokens=ct) for p, (c, pt, ct) in cost.items()}
    return AcceptedPair(
        id=f"pair-{root}",
        seed_id="s1",
        parent_id=None,
        root_id=root,
        iteration=1,
        instruction="x",
        response="r",
        response_source="strong",
        strong_score=9,
        target_score=4,
        gap=5,
        metadata=summary,
        lineage=("s1", root),
        llm_calls=sum(c for c, _, _ in cost.values()),
        prompt_tokens=sum(pt for _, pt, _ in cost.values()),
        completion_tokens=sum(ct for _, _, ct in cost.values()),
        cost_by_purpose=totals,
    )


def test_cost_of_a_run_has_the_pairs_own_cost_and_the_run_per_accepted_pair_by_purpose():
    summary = MetadataSummary(use_case="u", skills=("s",))
    meta = Metadata(
        id="meta-1", seed_id="s1", parent_id="s1", seed_text="t", metadata=summary, llm_calls=(call("encode"),)
    )
    pair = accepted_pair("i0", {"encode": (0.5, 5, 2.5), "judge": (2, 20, 10)})
    records = [("metadata", meta), ("accepted", pair), ("accepted", pair)]  # a replayed copy counts once
    cost = cost_of(records, {})
    assert cost.accepted == 1 and cost.by_purpose is not None
    assert cost.by_purpose.pair.row("encode").calls == 0.5  # its share
    assert cost.by_purpose.run.row("encode").calls == 1  # the whole call, paid by the one accepted pair
    assert cost.by_purpose.pair.total.prompt_tokens == 25 and cost.by_purpose.run.total.prompt_tokens == 10


def test_prompt_set_table_shows_shares_as_percentages_and_the_ratio():
    paper = per_accepted_pair([accepted_pair("r", {"encode": (0.1, 30, 1), "judge": (2, 90, 4)})])
    small = per_accepted_pair([accepted_pair("r", {"encode": (0.1, 60, 1), "judge": (2, 240, 4)})])
    headers, rows = prompt_set_table({"paper": paper, "small-model": small})
    judge = next(r for r in rows if r[0] == "judge")
    assert judge == ["judge", "contrast", 90, "75.0%", 240, "80.0%", pytest.approx(240 / 90)]
    text = table(headers, rows)
    assert "small-model / paper" in text.splitlines()[0]
    assert text.splitlines()[-1].split() == ["total", "120", "100.0%", "300", "100.0%", "2.50"]
