"""Two worker processes on one broker split every stage's partitions; when one stops, the other
takes its partitions over and every seed still ends in counted verdicts."""

from __future__ import annotations

import asyncio
import sys

import pytest
from aiokafka import TopicPartition

from agents.pipeline import CONSERVATION_TOPICS, STAGE_INPUTS
from schemas.topics import TOPIC_BY_NAME
from streams.demo import wait_for_http
from streams.kafka.broker import free_port
from streams.kafka.topic_io import follow_until
from streams.ops.consumer_lag import lag_report, stage_members
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


async def settled_owners(settings, workers: int, timeout: float = 90) -> dict[str, dict[str, list[TopicPartition]]]:
    """Wait until every stage's group has `workers` members, each owning some input partitions,
    and every input partition has exactly one owner. Returns the assignment."""
    members: dict = {}
    for _ in range(int(timeout * 2)):
        members = await stage_members(settings)
        if all(_one_owner_each(settings, stage, members[stage], workers) for stage in STAGE_INPUTS):
            return members
        await asyncio.sleep(0.5)
    raise AssertionError(f"partitions never settled on {workers} worker(s): {members}")


def _one_owner_each(settings, stage: str, members: dict[str, list[TopicPartition]], workers: int) -> bool:
    inputs = {settings.topic(t) for t in STAGE_INPUTS[stage]}
    expected = sorted(
        TopicPartition(settings.topic(t), p)
        for t in STAGE_INPUTS[stage]
        for p in range(TOPIC_BY_NAME[t].partitions or settings.kafka.partitions)
    )
    owned = [[tp for tp in parts if tp.topic in inputs] for parts in members.values()]
    # Every worker owns some partition, unless there are fewer partitions than workers (dedup
    # reads the one partition of `decoded`: one member works, the others stand by).
    busy = sum(1 for parts in owned if parts)
    return (
        len(members) == workers
        and busy == min(workers, len(expected))
        and sorted(tp for parts in owned for tp in parts) == expected
    )


async def test_two_workers_split_partitions_and_one_takes_over_when_the_other_stops(settings, processes, start_worker):
    port = free_port()
    # 100 ms per LLM call: long enough for the stop to land while records are in flight.
    processes("llm-double", [sys.executable, "-m", "llm.double", "--port", str(port), "--latency-ms", "100"])
    url = f"http://127.0.0.1:{port}/v1"
    wait_for_http(url + "/models", 30)
    settings = overlay(
        settings,
        {
            "strong": {"base_url": url, "model": "double-strong"},
            "target": {"base_url": url, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 3},
            "worker": {"http_port": 0},
        },
    )
    data = settings.worker.data_dir
    first = start_worker(overlay(settings, {"worker": {"data_dir": str(data / "a")}}), "worker-a")
    second = start_worker(overlay(settings, {"worker": {"data_dir": str(data / "b")}}), "worker-b")

    two = await settled_owners(settings, workers=2)
    for stage, members in two.items():
        sizes = sorted(len(parts) for parts in members.values())
        assert len(sizes) == 2 and sum(1 for n in sizes if n) == min(2, sum(sizes)), (stage, members)

    seeds = [seed_from_text(f"Scale-out seed {i}: plan a small web project") for i in range(12)]
    late = [seed_from_text(f"Scale-out late seed {i}: write a unit test") for i in range(6)]
    wanted = {s.id for s in seeds + late}
    await feed_seeds(settings, seeds)
    ledger = Ledger()

    def under_way() -> bool:
        assert first.popen.poll() is None, f"worker a died:\n{first.tail()}"
        return len(ledger.seeds) >= 3 and any(a.accepted for a in ledger.seeds.values())

    # Stop the second worker while the first batch is still in the pipeline.
    assert await follow_until(settings, CONSERVATION_TOPICS, ledger.add, under_way, 120)
    unfinished_at_stop = len(ledger.incomplete({s.id for s in seeds}))
    assert second.stop() == 0, second.tail()

    one = await settled_owners(settings, workers=1)  # the first worker now owns every partition
    assert all(len(members) == 1 for members in one.values())
    await feed_seeds(settings, late)

    ledger = Ledger()  # count again from the topics: nothing may be missing

    def finished() -> bool:
        assert first.popen.poll() is None, f"worker a died:\n{first.tail()}"
        return not ledger.incomplete(wanted)

    assert await follow_until(settings, CONSERVATION_TOPICS, ledger.add, finished, 180), [
        a.summary() for a in ledger.incomplete(wanted)
    ]
    for seed_id in wanted:
        account = ledger.account(seed_id)
        assert account.seed_dead_reason is None and account.expected == 3, account.summary()
        assert account.balanced, account.summary()
    print(f"{unfinished_at_stop} of {len(seeds)} seeds were unfinished when the second worker stopped")
    assert unfinished_at_stop > 0, "the stop should land mid-run"
    for _ in range(60):
        if (await lag_report(settings)).total == 0:
            break
        await asyncio.sleep(0.5)
    assert (await lag_report(settings)).total == 0
