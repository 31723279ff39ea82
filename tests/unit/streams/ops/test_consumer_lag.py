"""Arranging broker offsets into per-stage lag, and printing it."""

from __future__ import annotations

from aiokafka import TopicPartition

from agents.pipeline import STAGE_INPUTS
from streams.ops.consumer_lag import PartitionLag, build_report, render_table
from streams.settings import Settings, overlay
from tests.integration.kafka_tool import parse_describe

SETTINGS = overlay(Settings(), {"kafka": {"topic_prefix": "p."}, "worker": {"app_id": "app"}})


def tp(name: str, partition: int) -> TopicPartition:
    return TopicPartition(f"p.{name}", partition)


def report():
    counts = {f"p.{n}": 2 for inputs in STAGE_INPUTS.values() for n in inputs}
    ends = {tp("seeds", 0): 10, tp("seeds", 1): 7, tp("basic", 0): 5, tp("tailored", 1): 3}
    starts = {tp("seeds", 1): 2}  # retention removed the first two records
    committed = {"app-encode": {tp("seeds", 0): 4}, "app-contrast": {tp("basic", 0): 5, tp("tailored", 1): 1}}
    return build_report(SETTINGS, counts, starts, ends, committed, taken_at=1.0)


def test_lag_is_end_minus_committed_and_from_log_start_when_nothing_is_committed():
    assert PartitionLag("t", 0, log_start=0, log_end=10, committed=4).lag == 6
    assert PartitionLag("t", 0, log_start=2, log_end=7, committed=None).lag == 5
    # A commit seen after the end offset was read can pass it for a moment: never negative.
    assert PartitionLag("t", 0, log_start=0, log_end=3, committed=5).lag == 0


def test_report_has_every_stage_in_pipeline_order_with_its_groups_and_input_partitions():
    r = report()
    assert [s.stage for s in r.stages] == list(STAGE_INPUTS)
    assert [s.group for s in r.stages] == [f"app-{s}" for s in STAGE_INPUTS]
    encode = r.stage("encode")
    assert [(p.topic, p.partition, p.committed) for p in encode.partitions] == [
        ("p.seeds", 0, 4),
        ("p.seeds", 1, None),
    ]
    assert encode.lag == 6 + 5 and encode.log_end == 17 and encode.committed == 4
    contrast = r.stage("contrast")
    assert {p.topic for p in contrast.partitions} == {"p.basic", "p.tailored"}
    assert contrast.lag == 2
    assert r.total == 13


def test_json_form_carries_totals_and_partitions():
    d = report().to_dict()
    assert d["total_lag"] == 13
    encode = d["stages"][0]
    assert encode["stage"] == "encode" and encode["lag"] == 11
    assert encode["partitions"][1] == {
        "topic": "p.seeds",
        "partition": 1,
        "log_start": 2,
        "log_end": 7,
        "committed": None,
        "lag": 5,
    }


def test_table_shows_partitions_with_dash_for_nothing_committed_and_a_total_per_stage():
    text = render_table(report())
    lines = text.splitlines()
    assert lines[0].split() == ["STAGE", "GROUP", "TOPIC", "PART", "LOG-END", "COMMITTED", "LAG"]
    assert lines[1].split() == ["encode", "app-encode", "p.seeds", "0", "10", "4", "6"]
    assert lines[2].split() == ["encode", "app-encode", "p.seeds", "1", "7", "-", "5"]
    assert lines[3].split() == ["encode", "app-encode", "total", "17", "4", "11"]
    assert lines[-1] == "total lag: 13"
    totals = render_table(report(), per_partition=False).splitlines()
    assert len(totals) == 1 + len(STAGE_INPUTS) + 1


def test_kafka_tool_table_is_parsed_with_dash_as_none():
    out = """
Consumer group 'g' has no active members.

GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID
g               t.seeds         0          6               6               0               -               -               -
g               t.seeds         1          -               12              -               c-1             /127.0.0.1      c
"""
    assert parse_describe(out) == {("g", "t.seeds", 0): (6, 6, 0), ("g", "t.seeds", 1): (None, 12, None)}


def test_member_assignment_bytes_and_the_members_table():
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    from streams.ops.consumer_lag import decode_assignment, render_members

    raw = ConsumerProtocolMemberAssignment(
        0, [("p.seeds", [2, 3]), ("app-encode-__assignor-__leader", [0])], b""
    ).encode()
    assert decode_assignment(raw) == [("p.seeds", [2, 3]), ("app-encode-__assignor-__leader", [0])]
    text = render_members({"encode": {"m-2": [tp("seeds", 3), tp("seeds", 2)], "m-1": []}, "decode": {}})
    lines = [line.split(maxsplit=2) for line in text.splitlines()]
    assert lines[1] == ["encode", "m-1", "-"]
    assert lines[2] == ["encode", "m-2", "p.seeds:2, p.seeds:3"]
    assert lines[3][0] == "decode" and "no worker runs this stage" in text
