"""`codeclm lag` against Kafka's own consumer-groups tool, on the same broker and the same groups."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.pipeline import STAGE_INPUTS
from streams.kafka.admin import client_options, ensure_topics
from streams.ops.consumer_lag import LagReport, lag_report, stage_group
from streams.ops.feeder import feed_seeds
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay, settings_env
from tests.integration.kafka_tool import describe_groups

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


def assert_matches_kafka_tool(report: LagReport, tool: dict) -> int:
    """Every row Kafka's tool prints equals ours; every partition we call committed, it prints.
    Returns how many rows were compared."""
    ours = {(s.group, p.topic, p.partition): p for s in report.stages for p in s.partitions}
    for key, (current, log_end, lag) in tool.items():
        mine = ours[key]
        assert (mine.committed, mine.log_end) == (current, log_end), key
        if lag is not None:
            assert mine.lag == lag, key
    committed = {k for k, p in ours.items() if p.committed is not None}
    assert committed <= {k for k, row in tool.items() if row[0] is not None}
    return len(tool)


async def commit(settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit offsets for a group as a stopped worker would have left them."""
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def test_lag_of_a_group_with_a_backlog_matches_kafkas_tool(settings):
    await ensure_topics(settings)
    seeds = [seed_from_text(f"lag seed {i}") for i in range(40)]
    await feed_seeds(settings, seeds)
    seeds_topic = settings.topic("seeds")
    before = await lag_report(settings)
    ends = {p.partition: p.log_end for p in before.stage("encode").partitions}
    assert sum(ends.values()) == 40
    # Nothing committed yet: the whole topic is the backlog.
    assert before.stage("encode").lag == 40 and all(p.committed is None for p in before.stage("encode").partitions)

    # Partition 0 fully read, 1 half read, 2 untouched-but-committed at 0; 3 never committed.
    group = stage_group(settings, "encode")
    await commit(
        settings,
        group,
        {
            TopicPartition(seeds_topic, 0): ends[0],
            TopicPartition(seeds_topic, 1): ends[1] // 2,
            TopicPartition(seeds_topic, 2): 0,
        },
    )
    report = await lag_report(settings)
    encode = report.stage("encode")
    by_partition = {p.partition: p for p in encode.partitions}
    assert by_partition[0].lag == 0
    assert by_partition[1].lag == ends[1] - ends[1] // 2
    assert by_partition[2].lag == ends[2]
    assert by_partition[3].committed is None and by_partition[3].lag == ends[3]
    assert encode.lag == 40 - ends[0] - ends[1] // 2

    tool = describe_groups(settings.kafka.bootstrap_servers, [group])
    assert assert_matches_kafka_tool(report, tool) >= 3

    # The command line says the same, as JSON for scripts.
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "lag", "--json"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    assert cli["total_lag"] == report.total
    assert [s["lag"] for s in cli["stages"]] == [s.lag for s in report.stages]


async def test_lag_stays_right_when_the_worker_is_idle_and_when_it_is_stopped(settings, llm_double, start_worker):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2},
        },
    )
    await ensure_topics(settings)
    worker = start_worker(settings)
    # Seeds that differ in words: the double gives seeds differing only in a digit the same
    # metadata, and dedup would drop their instructions before most partitions saw a record.
    # Ten of them put a seed on each of the 4 partitions of seeds (keys are the seeds' ids), so
    # every encode partition has a committed offset, and Kafka's tool a lag, once they are read.
    topics = (
        "apples",
        "bridges",
        "castles",
        "dolphins",
        "engines",
        "forests",
        "glaciers",
        "harbours",
        "islands",
        "jungles",
    )
    await feed_seeds(settings, [seed_from_text(f"Tell me about {topic} in history") for topic in topics])

    # Idle: everything read and committed; every stage's lag is 0, and Kafka agrees.
    report = await lag_report(settings)
    for _ in range(240):
        assert worker.popen.poll() is None, worker.tail()
        report = await lag_report(settings)
        if report.total == 0 and all(s.committed > 0 for s in report.stages):
            break
        await asyncio.sleep(0.5)
    assert report.total == 0, worker.tail()
    groups = [stage_group(settings, stage) for stage in STAGE_INPUTS]
    assert assert_matches_kafka_tool(report, describe_groups(settings.kafka.bootstrap_servers, groups)) >= 20

    # Stopped: new seeds wait on the seeds topic. A worker's own gauges would never see them;
    # the broker's figures do, and they hold still until someone reads.
    worker.stop()
    await feed_seeds(settings, [seed_from_text(f"late seed {i}") for i in range(5)])
    stopped = await lag_report(settings)
    assert stopped.stage("encode").lag == 5
    assert all(stopped.stage(s).lag == 0 for s in STAGE_INPUTS if s != "encode")
    tool = describe_groups(settings.kafka.bootstrap_servers, groups)
    assert assert_matches_kafka_tool(stopped, tool) >= 20
    assert sum(lag for (g, _, _), (_, _, lag) in tool.items() if g == stage_group(settings, "encode")) == 5
    again = await lag_report(settings)
    assert [s.lag for s in again.stages] == [s.lag for s in stopped.stages]
