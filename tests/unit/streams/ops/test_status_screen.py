"""The status screen from fixed scrapes and a fixed lag report."""

from __future__ import annotations

from aiokafka import TopicPartition

from streams.ops.consumer_lag import build_report
from streams.ops.status_screen import parse_metrics, render_status
from streams.settings import Settings, overlay

METRICS = """
# TYPE codeclm_records_total counter
codeclm_records_total{outcome="processed",stage="encode"} %(encode)s
codeclm_records_total{outcome="dead_lettered",stage="encode"} 2.0
codeclm_records_total{outcome="processed",stage="contrast"} 40000.0
codeclm_stage_in_flight{stage="contrast"} 37.0
codeclm_verdicts_total{verdict="accept"} 120.0
codeclm_verdicts_total{verdict="retry"} 80.0
codeclm_llm_requests_total{outcome="ok",role="strong"} 950.0
codeclm_llm_requests_total{outcome="rate_limited",role="strong"} 40.0
codeclm_llm_requests_total{outcome="ok",role="target"} 10.0
codeclm_llm_failures_total{role="strong"} 3.0
codeclm_llm_tokens_total{kind="prompt",role="strong"} 1500000.0
codeclm_llm_tokens_total{kind="prompt",role="target"} 500000.0
codeclm_llm_tokens_total{kind="completion",role="strong"} 12345.0
codeclm_llm_latency_seconds_sum{role="strong"} 475.0
codeclm_llm_latency_seconds_count{role="strong"} 950.0
"""


def lag():
    settings = overlay(Settings(), {"kafka": {"topic_prefix": "p."}, "worker": {"app_id": "app"}})
    return build_report(
        settings,
        {"p.seeds": 1, "p.basic": 1},
        {},
        {TopicPartition("p.seeds", 0): 50, TopicPartition("p.basic", 0): 12000},
        {"app-encode": {TopicPartition("p.seeds", 0): 42}, "app-contrast": {TopicPartition("p.basic", 0): 0}},
        taken_at=0.0,
    )


def row(screen: str, stage: str) -> list[str]:
    return next(line.split() for line in screen.splitlines() if line.startswith(stage + " "))


def test_parse_metrics_collects_the_figures():
    f = parse_metrics(METRICS % {"encode": "100.0"}, taken_at=10.0)
    assert f.processed == {"encode": 100.0, "contrast": 40000.0}
    assert f.dead_lettered == {"encode": 2.0}
    assert f.llm_total == 1000 and f.llm_errors == 40
    assert f.tokens == {"prompt": 2_000_000.0, "completion": 12345.0}


def test_screen_shows_rate_lag_errors_pairs_calls_tokens():
    before = parse_metrics(METRICS % {"encode": "100.0"}, taken_at=10.0)
    now = parse_metrics(METRICS % {"encode": "130.0"}, taken_at=12.0)
    screen = render_status("http://127.0.0.1:6066", 12.0, now, before, lag())
    assert row(screen, "encode") == ["encode", "15.0", "130", "2", "0", "8"]  # (130-100)/2 s; lag 50-42
    assert row(screen, "contrast") == ["contrast", "0.0", "40.0k", "0", "37", "12.0k"]
    assert row(screen, "tailor") == ["tailor", "0.0", "0", "0", "0", "0"]
    assert "pairs accepted 120   rejected 0   sent back to tailor 80" in screen
    assert "LLM calls 1000 (strong 990, target 10)   errors 40 (4.0%)" in screen
    assert "failed after retries 3" in screen
    assert "tokens prompt 2.0M   completion 12.3k   mean latency strong 500 ms" in screen
    assert "total lag 12.0k records" in screen


def test_first_screen_has_no_rates_and_a_missing_side_is_said_not_fatal():
    now = parse_metrics(METRICS % {"encode": "1.0"}, taken_at=1.0)
    assert row(render_status("u", 1.0, now, None, lag()), "encode")[1] == "-"
    down = render_status("u", 1.0, None, None, lag(), worker_error="Connection refused")
    assert "worker: not reachable (Connection refused); counters unknown" in down
    assert row(down, "encode") == ["encode", "-", "-", "-", "-", "8"]
    no_broker = render_status("u", 1.0, now, None, None, lag_error="KafkaConnectionError")
    assert "broker: lag unknown (KafkaConnectionError)" in no_broker and row(no_broker, "encode")[-1] == "-"


def test_an_endpoint_that_refuses_the_configuration_or_is_down_is_on_the_screen():
    text = (
        METRICS % {"encode": "1.0"}
        + 'codeclm_llm_endpoint_refused{reason="HTTP 401: Incorrect API key provided",role="strong",status="401"} 1.0\n'
        + 'codeclm_llm_endpoint_down{role="target"} 1.0\ncodeclm_llm_endpoint_down{role="strong"} 0.0\n'
    )
    figures = parse_metrics(text, 10.0)
    assert figures.refused == {"strong": ("401", "HTTP 401: Incorrect API key provided")}
    assert figures.down == {"target"}
    screen = render_status("http://w", 10.0, figures, None, None)
    assert "strong endpoint REFUSES the configuration (HTTP 401): HTTP 401: Incorrect API key provided" in screen
    assert "target endpoint DOWN" in screen and "strong endpoint DOWN" not in screen


def test_what_the_calls_cost_shows_when_the_endpoints_have_prices():
    text = (
        METRICS % {"encode": "1.0"}
        + 'codeclm_llm_cost_usd_total{kind="prompt",role="strong"} 3.0\n'
        + 'codeclm_llm_cost_usd_total{kind="completion",role="strong"} 1.5\n'
        + 'codeclm_llm_cost_usd_total{kind="prompt",role="target"} 0.5\n'
        + 'codeclm_stage_cost_usd_total{stage="contrast"} 4.0\ncodeclm_stage_cost_usd_total{stage="tailor"} 1.0\n'
    )
    screen = render_status("http://w", 10.0, parse_metrics(text, 10.0), None, None)
    assert "cost $5.00 (strong $4.50, target $0.50)   per accepted pair $0.0417" in screen  # 120 accepted
    assert "by stage: contrast $4.00, tailor $1.00" in screen
    assert "cost $" not in render_status("http://w", 10.0, parse_metrics(METRICS % {"encode": "1.0"}, 10.0), None, None)
