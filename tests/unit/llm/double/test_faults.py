"""The double's knobs (llm/double/faults.py): the fault draw and the checks on the rates."""

from __future__ import annotations

import pytest

from llm.double.faults import DoubleConfig, draw_fault


@pytest.mark.parametrize(
    ("u", "fault"),
    [(0.0, "429"), (0.099, "429"), (0.1, "5xx"), (0.29, "5xx"), (0.31, None), (0.99, None)],
)
def test_draw_fault_partitions_the_unit_interval(u, fault):
    rates = {"429": 0.1, "5xx": 0.2, "timeout": 0.0}
    assert draw_fault(rates, u) == fault


@pytest.mark.parametrize(
    "bad", [{"rate_429": 1.5}, {"rate_429": 0.6, "rate_5xx": 0.6}, {"rate_5xx": -0.1}, {"latency_ms": -1}]
)
def test_config_rejects_impossible_knobs(bad):
    with pytest.raises(ValueError):
        DoubleConfig(**bad)
