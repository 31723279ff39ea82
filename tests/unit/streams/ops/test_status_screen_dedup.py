"""The dedup stage's counters in /metrics and on `codeclm status`'s screen."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from streams.ops.status_screen import parse_metrics, render_status


def metrics_text(kept: int, exact: int, near: int) -> str:
    registry = CollectorRegistry()
    decisions = Counter("codeclm_dedup_decisions_total", "dedup decisions", ["outcome"], registry=registry)
    decisions.labels("kept").inc(kept)
    decisions.labels("exact").inc(exact)
    decisions.labels("embedding").inc(near)
    return generate_latest(registry).decode()


def test_dedup_decisions_by_outcome_reach_the_screen():
    figures = parse_metrics(metrics_text(kept=132, exact=45, near=3), 10.0)
    assert figures.dedup == {"kept": 132.0, "exact": 45.0, "embedding": 3.0}
    screen = render_status("http://127.0.0.1:6066", 10.0, figures, None, None)
    assert "dedup kept 132   dropped as duplicates 48 (exact 45, near 3)" in screen


def test_no_dedup_line_before_dedup_decided_anything():
    figures = parse_metrics("", 10.0)
    assert "dedup" not in render_status("u", 10.0, figures, None, None).split("STAGE")[0]
    assert "dropped as duplicates" not in render_status("u", 10.0, figures, None, None)


def test_the_worker_defines_the_counters_it_updates():
    from streams.runtime import metrics

    metrics.DEDUP_DECISIONS.labels("kept").inc(0)
    text = generate_latest(metrics.REGISTRY).decode()
    assert "codeclm_dedup_decisions_total" in text and "codeclm_dedup_index_size" in text
