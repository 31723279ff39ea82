"""Consumer lag of every stage, asked of the broker: committed offsets against log-end offsets.

Faust's own end-offset gauges only move when records are fetched, so an idle, stuck or stopped
worker would show stale lag; the broker's figures are right whatever the workers do. Each
stage is one consumer group, `<app_id>-<stage>` (streams.runtime.stage_app.create_stage_app), reading the
topics in agents.pipeline.STAGE_INPUTS.

A partition on which the group has committed nothing yet has `committed=None`; its lag is
then what the group will read from there (auto.offset.reset=earliest): log end - log start.
Kafka's consumer-groups tool prints "-" for both in that case.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError, NotCoordinatorError

from agents.pipeline import STAGE_INPUTS
from streams.kafka.admin import client_options, topic_partitions
from streams.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    log_start: int
    log_end: int
    committed: int | None  # None: the group has no offset here yet

    @property
    def lag(self) -> int:
        start = self.committed if self.committed is not None else self.log_start
        return max(0, self.log_end - start)


@dataclass(frozen=True)
class StageLag:
    stage: str
    group: str
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def log_end(self) -> int:
        return sum(p.log_end for p in self.partitions)

    @property
    def committed(self) -> int:
        return sum(p.committed or 0 for p in self.partitions)


@dataclass(frozen=True)
class LagReport:
    taken_at: float  # unix seconds
    stages: tuple[StageLag, ...]

    @property
    def total(self) -> int:
        return sum(s.lag for s in self.stages)

    def stage(self, name: str) -> StageLag:
        return next(s for s in self.stages if s.stage == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "total_lag": self.total,
            "stages": [
                {
                    "stage": s.stage,
                    "group": s.group,
                    "log_end": s.log_end,
                    "committed": s.committed,
                    "lag": s.lag,
                    "partitions": [{**asdict(p), "lag": p.lag} for p in s.partitions],
                }
                for s in self.stages
            ],
        }


def stage_group(settings: Settings, stage: str) -> str:
    """The consumer group of a stage (as streams.runtime.stage_app.create_stage_app names it)."""
    return f"{settings.worker.app_id}-{stage}"


def build_report(
    settings: Settings,
    partition_counts: dict[str, int],
    log_starts: dict[TopicPartition, int],
    log_ends: dict[TopicPartition, int],
    committed: dict[str, dict[TopicPartition, int]],
    taken_at: float,
) -> LagReport:
    """Pure: the figures gathered from the broker, arranged per stage and partition.
    `committed` maps each group to its committed offsets (a missing partition: none yet)."""
    stages = []
    for stage, inputs in STAGE_INPUTS.items():
        group = stage_group(settings, stage)
        rows = []
        for name in inputs:
            topic = settings.topic(name)
            for p in range(partition_counts.get(topic, 0)):
                tp = TopicPartition(topic, p)
                rows.append(
                    PartitionLag(
                        topic=topic,
                        partition=p,
                        log_start=log_starts.get(tp, 0),
                        log_end=log_ends.get(tp, 0),
                        committed=committed.get(group, {}).get(tp),
                    )
                )
        stages.append(StageLag(stage, group, tuple(rows)))
    return LagReport(taken_at, tuple(stages))


class LagProbe:
    """Holds an admin client and a group-less consumer open, for repeated snapshots
    (`codeclm lag --watch`, the worker's /metrics). Use as `async with LagProbe(s) as probe`."""

    def __init__(self, settings: Settings, coordinator_timeout: float = 30.0):
        self.settings = settings
        self.coordinator_timeout = coordinator_timeout
        options = client_options(settings.kafka)
        self._admin = AIOKafkaAdminClient(**options)
        # No group: asking for end offsets never joins or disturbs any consumer group.
        self._consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)

    async def __aenter__(self) -> LagProbe:
        await self._admin.start()
        try:
            await self._consumer.start()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._consumer.stop()
        finally:
            await self._admin.close()

    async def snapshot(self) -> LagReport:
        settings = self.settings
        topics = sorted({settings.topic(n) for inputs in STAGE_INPUTS.values() for n in inputs})
        counts = await topic_partitions(self._admin, topics)
        partitions = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        # Committed offsets first, end offsets after: a record committed in between can then
        # only make the lag look larger for a moment, never negative.
        committed: dict[str, dict[TopicPartition, int]] = {}
        for stage in STAGE_INPUTS:
            group = stage_group(settings, stage)
            offsets = await self._group_offsets(group)
            committed[group] = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        starts = await self._consumer.beginning_offsets(partitions) if partitions else {}
        ends = await self._consumer.end_offsets(partitions) if partitions else {}
        return build_report(settings, counts, starts, ends, committed, time.time())

    async def _group_offsets(self, group: str) -> dict[TopicPartition, Any]:
        return await with_coordinator(lambda: self._admin.list_consumer_group_offsets(group), self.coordinator_timeout)


async def with_coordinator(call: Callable[[], Awaitable[T]], timeout: float) -> T:
    """`call()`, again while the group coordinator is not ready: on a fresh cluster the first
    lookup creates __consumer_offsets, and until it is loaded the broker says "not available"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def lag_report(settings: Settings) -> LagReport:
    async with LagProbe(settings) as probe:
        return await probe.snapshot()


def render_table(report: LagReport, per_partition: bool = True) -> str:
    """The report as a plain-text table, a total line per stage."""
    header = f"{'STAGE':<9} {'GROUP':<28} {'TOPIC':<28} {'PART':>4} {'LOG-END':>9} {'COMMITTED':>9} {'LAG':>7}"
    lines = [header]
    for s in report.stages:
        if per_partition:
            for p in s.partitions:
                committed = "-" if p.committed is None else str(p.committed)
                lines.append(
                    f"{s.stage:<9} {s.group:<28} {p.topic:<28} {p.partition:>4} {p.log_end:>9} {committed:>9} {p.lag:>7}"
                )
        lines.append(f"{s.stage:<9} {s.group:<28} {'total':<28} {'':>4} {s.log_end:>9} {s.committed:>9} {s.lag:>7}")
    lines.append(f"total lag: {report.total}")
    return "\n".join(lines)


async def stage_members(settings: Settings, timeout: float = 30.0) -> dict[str, dict[str, list[TopicPartition]]]:
    """Per stage: each member of its consumer group and the input partitions assigned to it
    (who does what when several workers share a stage)."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        members: dict[str, dict[str, list[TopicPartition]]] = {}
        for stage in STAGE_INPUTS:
            group = stage_group(settings, stage)
            inputs = {settings.topic(name) for name in STAGE_INPUTS[stage]}
            members[stage] = {}
            responses = await with_coordinator(partial(admin.describe_consumer_groups, [group]), timeout)
            for response in responses:
                for _error, _group, _state, _ptype, _protocol, group_members, *_ in response.groups:
                    for member_id, _client, _host, _metadata, assignment, *_ in group_members:
                        members[stage][member_id] = [
                            TopicPartition(t, p)
                            for t, parts in (decode_assignment(assignment) if assignment else [])
                            if t in inputs  # not Faust's own <group>-__assignor-__leader topic
                            for p in parts
                        ]
        return members
    finally:
        await admin.close()


def decode_assignment(raw: bytes) -> list[tuple[str, list[int]]]:
    """The topic partitions in a consumer-protocol member assignment (Faust's assignor uses it too)."""
    return list(ConsumerProtocolMemberAssignment.decode(raw).assignment)


def render_members(members: dict[str, dict[str, list[TopicPartition]]]) -> str:
    """Who owns what: one line per group member with its partitions (topic:partition)."""
    lines = [f"{'STAGE':<9} {'MEMBER':<52} PARTITIONS"]
    for stage, by_member in members.items():
        if not by_member:
            lines.append(f"{stage:<9} {'(no members: no worker runs this stage)':<52}")
        for member, parts in sorted(by_member.items()):
            owned = ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(parts)) or "-"
            lines.append(f"{stage:<9} {member:<52} {owned}")
    return "\n".join(lines)
