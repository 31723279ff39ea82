"""One stage of the pipeline against a plain aiokafka consume-transform-produce loop.

Both read the same K pre-made records from an input topic of their own (same broker, same
partitions), run the stage's own `process` on each, and produce the outputs; they commit
only what has been produced. The Faust side is `codeclm worker --stage <stage>` with its
ordered ack window; the baseline is the loop anyone would write with aiokafka: fetch a
batch, process it concurrently, send every output, wait for the broker, commit the batch.
Throughput is read from the outputs' broker timestamps (10%-90% of the K outputs), so
start-up and group joins are not counted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents.base import StageContext
from agents.pipeline import STAGE_BY_NAME, STAGE_INPUTS
from llm.client import build_clients, open_session
from schemas import Instruction, JudgeVerdict, MetadataSummary, Record, ScoredPair, derive_id
from schemas.codec import encode, record_headers
from schemas.topics import decode_on
from streams.bench import procfs
from streams.bench.pipeline import bench_seeds
from streams.bench.samples import percentile
from streams.bench.stack import Stack, wait_until_consuming
from streams.kafka.admin import client_options, ensure_topics
from streams.kafka.topic_io import end_offsets, produce_all, read_messages
from streams.settings import Settings

# What each stage may write (filter's verdicts, the others' one topic, dead letters).


@dataclass(frozen=True)
class StageRate:
    name: str  # "faust stage" or "aiokafka loop"
    records: int
    rate: float  # records/s between 10% and 90% of the outputs
    rate_whole: float  # records/s from the first output to the last
    cpu_ms_per_record: float


def instruction(i: int, tag: str) -> Instruction:
    seed_id = derive_id("seed", tag, i)
    root = derive_id("inst", seed_id, 0)
    return Instruction(
        id=root,
        seed_id=seed_id,
        parent_id=derive_id("meta", seed_id),
        root_id=root,
        metadata_id=derive_id("meta", seed_id),
        iteration=1,
        index=0,
        siblings=1,
        text=f"Explain how compound interest grows a monthly saving, for a beginner (bench {tag} #{i}).",
        metadata=MetadataSummary(
            use_case="Personal finance planning", skills=("budget arithmetic", "clear explanation")
        ),
        rubrics=("Depth of reasoning", "Use of concrete examples", "Precision of constraints", "Domain accuracy"),
        actions=(
            "Ask for the reasoning behind each step.",
            "Require a worked example with real numbers.",
            "Add a strict constraint on length.",
            "Require citing the formula that applies.",
        ),
    )


def scored_pair(i: int, tag: str, max_iterations: int) -> ScoredPair:
    """Scored pairs whose gaps and iterations give all three verdicts."""
    inst = instruction(i, tag)
    strong, target = 3.0 + i % 7, 5.0
    return ScoredPair(
        id=derive_id("scored", inst.id),
        seed_id=inst.seed_id,
        parent_id=inst.id,
        root_id=inst.root_id,
        iteration=1 + i % max_iterations,
        instruction=inst,
        strong_answer="A practical approach breaks the task into small, checkable steps. " * 4,
        target_answer="It helps to state assumptions first, since they shape every later choice. " * 3,
        strong_score=strong,
        target_score=target,
        gap=strong - target,
        judgements=(JudgeVerdict(strong_first=True, strong_score=strong, target_score=target),),
    )


def input_records(stage: str, count: int, tag: str, settings: Settings) -> list[Record]:
    if stage == "encode":
        return list(bench_seeds(count, tag))
    if stage == "contrast":
        return [instruction(i, tag) for i in range(count)]
    if stage in ("filter", "tailor"):
        return [scored_pair(i, tag, settings.pipeline.max_iterations) for i in range(count)]
    raise ValueError(f"the stage benchmark feeds encode, contrast, filter or tailor, not {stage}")


async def produce(settings: Settings, topic: str, records: list[Record]) -> None:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all", linger_ms=5)
    await producer.start()
    try:
        await produce_all(producer, ((settings.topic(topic), r.id.encode(), encode(r), None) for r in records))
    finally:
        await producer.stop()


async def output_times(
    settings: Settings, stage: str, expected: int, timeout: float, alive=lambda: True
) -> list[float]:
    """Broker timestamps (seconds) of the stage's outputs, once `expected` of them are there."""
    names = [settings.topic(n) for n in (*STAGE_BY_NAME[stage].outputs, "deadletter")]
    deadline = time.monotonic() + timeout
    while sum((await end_offsets(settings.kafka, names)).values()) < expected:
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"{stage}: fewer than {expected} outputs after {timeout:.0f}s")
        await asyncio.sleep(0.2)
    return sorted([m.timestamp / 1000 async for m in read_messages(settings.kafka, names)])


def rate_of(name: str, stamps: list[float], cpu_s: float) -> StageRate:
    n = len(stamps)
    lo, hi = percentile(stamps, 10), percentile(stamps, 90)
    return StageRate(
        name=name,
        records=n,
        rate=0.8 * n / (hi - lo) if hi > lo else float("nan"),
        rate_whole=(n - 1) / (stamps[-1] - stamps[0]) if n > 1 and stamps[-1] > stamps[0] else float("nan"),
        cpu_ms_per_record=1000 * cpu_s / n if n else float("nan"),
    )


def faust_stage(stack: Stack, settings: Settings, stage: str, count: int, timeout: float) -> StageRate:
    """`codeclm worker --stage <stage>` fed `count` records once it has joined its group."""
    records = input_records(stage, count, settings.kafka.topic_prefix, settings)
    (worker,) = stack.workers(settings, 1, stages=(stage,))
    asyncio.run(wait_until_consuming(settings, (stage,), 1, [worker]))
    before = procfs.usage(worker.pid).cpu_s  # start-up is not charged
    asyncio.run(produce(settings, STAGE_INPUTS[stage][0], records))
    stamps = asyncio.run(output_times(settings, stage, count, timeout, alive=lambda: worker.poll() is None))
    return rate_of("faust stage (codeclm worker)", stamps, procfs.usage(worker.pid).cpu_s - before)


async def baseline_loop(settings: Settings, stage: str, count: int, timeout: float) -> StageRate:
    """The plain aiokafka loop on a backlog of `count` records, in this process."""
    records = input_records(stage, count, settings.kafka.topic_prefix, settings)
    await produce(settings, STAGE_INPUTS[stage][0], records)
    process = STAGE_BY_NAME[stage].process
    options = client_options(settings.kafka)
    consumer = AIOKafkaConsumer(
        *(settings.topic(n) for n in STAGE_INPUTS[stage]),
        **options,
        group_id=f"{settings.worker.app_id}-{stage}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(**options, acks="all")
    session: aiohttp.ClientSession = open_session(settings.strong, settings.target, settings.judge_endpoint)
    strong, target, judge = build_clients(settings.strong, settings.target, settings.judge, session)
    context = StageContext(strong=strong, target=target, judge=judge, pipeline=settings.pipeline)
    await consumer.start()
    await producer.start()
    cpu_before = time.process_time()
    prefix = settings.kafka.topic_prefix

    async def handle(message) -> list:
        record = decode_on(message.topic.removeprefix(prefix), message.value)
        emits = await process(record, context)
        return [
            await producer.send(
                settings.topic(e.topic),
                key=e.record.id.encode(),
                value=encode(e.record),
                headers=record_headers(e.record),
            )
            for e in emits
        ]

    async def run() -> None:
        done = 0
        while done < count:
            batch = await consumer.getmany(timeout_ms=500)
            messages = [m for ms in batch.values() for m in ms]
            sent = await asyncio.gather(*(handle(m) for m in messages))
            await asyncio.gather(*(f for futures in sent for f in futures))
            if batch:
                await consumer.commit({tp: ms[-1].offset + 1 for tp, ms in batch.items()})
            done += len(messages)

    try:
        await asyncio.wait_for(run(), timeout)
        cpu = time.process_time() - cpu_before
    finally:
        await consumer.stop()
        await producer.stop()
        await session.close()
    stamps = await output_times(settings, stage, count, timeout)
    return rate_of("plain aiokafka loop", stamps, cpu)
