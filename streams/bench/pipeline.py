"""One end-to-end run: N seeds in, every seed's instructions to a verdict, sampled on the way.

The workers are started and have joined their consumer groups before the first seed is fed,
so start-up is not counted. A sampler reads both LLM doubles' /stats (calls by kind, requests
in flight) and the workers' CPU and memory from /proc a few times a second; a follower reads
the verdict topics to know when every seed is done and when each accepted pair arrived.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agents.pipeline import CONSERVATION_TOPICS, STAGE_INPUTS
from schemas import AcceptedPair, Record, Seed
from streams.bench import procfs
from streams.bench.samples import Sample
from streams.bench.stack import Double, Worker, double_stats
from streams.kafka.admin import ensure_topics
from streams.kafka.topic_io import end_offsets, follow_until
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import seed_from_text
from streams.settings import Settings

_SUBJECTS = (
    "Explain how a bakery should price seasonal cakes",
    "Write a polite reminder to a client about an unpaid invoice",
    "Plan a week of vegetarian dinners on a small budget",
    "Describe how to find a memory leak in a Python service",
    "Compare index funds and savings accounts for a first-time saver",
    "Summarise the causes of the French Revolution for a teenager",
    "Draft a checklist for onboarding a new engineer",
    "Explain what a p-value means to a product manager",
)


def bench_seeds(count: int, tag: str) -> list[Seed]:
    """`count` distinct seeds (distinct texts give distinct seed ids); `tag` keeps runs apart."""
    return [seed_from_text(f"{_SUBJECTS[i % len(_SUBJECTS)]} (bench {tag} #{i})", "bench") for i in range(count)]


@dataclass
class PipelineRun:
    seeds: int
    workers: int
    samples: list[Sample]
    latencies_s: list[float]  # per accepted pair: its seed's produce time -> its arrival
    accepted: int
    rejected: int
    dead: int
    complete: bool
    elapsed_s: float  # first seed fed -> last seed done
    hwm_kb: int  # peak RSS of the worker processes (sum of VmHWM)
    records: int  # records the stages consumed (every record on an input topic)
    ready_s: float  # how long the workers took to join their groups
    doubles_cpu_s: float = 0.0  # CPU the LLM doubles spent serving the run (not charged to the worker)
    double_final: dict[str, dict] = field(default_factory=dict)
    # (t, records each stage works on, summed over workers), from the workers' /metrics
    stage_in_flight: list[tuple[float, dict[str, float]]] = field(default_factory=list)


async def run_pipeline(
    settings: Settings,
    doubles: dict[str, Double],
    workers: list[Worker],
    seeds: list[Seed],
    *,
    feed_rate: float = 0.0,
    interval: float = 0.25,
    timeout: float = 900.0,
    ready_s: float = 0.0,
    scrape_interval: float = 1.0,
) -> PipelineRun:
    """Feed `seeds` (all at once, or `feed_rate` per second) and follow them to their verdicts."""
    await ensure_topics(settings)
    ledger = Ledger()
    fed_at: dict[str, float] = {}
    arrivals: list[float] = []
    wanted = {s.id for s in seeds}
    samples: list[Sample] = []
    stage_in_flight: list[tuple[float, dict[str, float]]] = []
    hwm = [0]
    start = time.monotonic()
    doubles_cpu = -sum(procfs.usage(d.pid).cpu_s for d in doubles.values())

    def on_record(topic: str, record: Record) -> None:
        ledger.add(topic, record)
        if isinstance(record, AcceptedPair) and record.seed_id in fed_at:
            arrivals.append(time.monotonic() - fed_at[record.seed_id])

    def done() -> bool:
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError(f"worker {worker.pid} exited with {worker.process.returncode}; see {worker.log}")
        return len(fed_at) == len(seeds) and not ledger.incomplete(wanted)

    async with aiohttp.ClientSession() as session:
        sampler = asyncio.gather(
            _sample(session, doubles, workers, start, interval, samples, hwm),
            _scrape(session, workers, start, scrape_interval, stage_in_flight),
        )
        feeder = asyncio.ensure_future(_feed(settings, seeds, feed_rate, fed_at))
        try:
            complete = await follow_until(settings, CONSERVATION_TOPICS, on_record, done, timeout)
            await feeder
        finally:
            feeder.cancel()
            sampler.cancel()
            await asyncio.gather(feeder, sampler, return_exceptions=True)
        elapsed = time.monotonic() - start
        samples.append(await _take_sample(session, doubles, workers, start, hwm))
        final = {name: await double_stats(session, d) for name, d in doubles.items()}
    doubles_cpu += sum(procfs.usage(d.pid).cpu_s for d in doubles.values())
    accounts = [ledger.account(s) for s in wanted]
    return PipelineRun(
        seeds=len(seeds),
        workers=len(workers),
        samples=samples,
        latencies_s=arrivals,
        accepted=sum(len(a.accepted) for a in accounts),
        rejected=sum(len(a.rejected) for a in accounts),
        dead=sum(len(a.dead) + (a.seed_dead_reason is not None) for a in accounts),
        complete=complete,
        elapsed_s=elapsed,
        hwm_kb=hwm[0],
        records=await records_on(settings, sorted({n for inputs in STAGE_INPUTS.values() for n in inputs})),
        ready_s=ready_s,
        doubles_cpu_s=doubles_cpu,
        double_final=final,
        stage_in_flight=stage_in_flight,
    )


async def _feed(settings: Settings, seeds: list[Seed], rate: float, fed_at: dict[str, float]) -> None:
    def stamp(seed: Record) -> None:
        fed_at[seed.id] = time.monotonic()

    await feed_seeds(settings, seeds, source="bench", rate=rate or None, on_fed=stamp)


async def _sample(session, doubles, workers, start, interval, samples: list[Sample], hwm: list[int]) -> None:
    while True:
        samples.append(await _take_sample(session, doubles, workers, start, hwm))
        await asyncio.sleep(interval)


async def _scrape(session, workers: list[Worker], start: float, interval: float, out: list) -> None:
    """Each stage's records in flight, from every worker's /metrics (once a second: a scrape
    also makes the worker ask the broker for lag, which costs it a little CPU)."""
    while True:
        t = time.monotonic() - start
        total: dict[str, float] = {}
        for worker in workers:
            for name, value in (await stage_gauges(session, worker)).items():
                # In flight adds up over workers; lag is the group's, the same in each.
                total[name] = (
                    max(total.get(name, 0.0), value) if name.endswith(" lag") else total.get(name, 0.0) + value
                )
        if total:
            out.append((t, total))
        await asyncio.sleep(interval)


async def stage_gauges(session: aiohttp.ClientSession, worker: Worker) -> dict[str, float]:
    """Records each stage works on ("contrast") and has not committed ("contrast lag"; every
    worker reports the whole group's lag), or {} while the worker has no endpoint."""
    url = worker.http_url
    if url is None:
        return {}
    try:
        async with session.get(url + "/metrics") as response:
            if response.status != 200:
                return {}
            text = await response.text()
    except aiohttp.ClientError:
        return {}
    gauges = {"codeclm_stage_in_flight": "", "codeclm_stage_lag": " lag"}
    return {
        sample.labels["stage"] + gauges[family.name]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name in gauges
        for sample in family.samples
    }


async def _take_sample(
    session: aiohttp.ClientSession, doubles: dict[str, Double], workers: list[Worker], start: float, hwm
) -> Sample:
    t = time.monotonic() - start
    stats = {name: await double_stats(session, d) for name, d in doubles.items()}
    usages = [procfs.usage(w.pid) for w in workers]
    hwm[0] = max(hwm[0], sum(u.hwm_kb for u in usages))
    kinds: dict[str, int] = {}
    for name, s in stats.items():
        for kind, n in s["by_kind"].items():
            # The target endpoint only answers; keep its answers apart from the strong model's.
            key = "answer_target" if (name == "target" and kind == "answer") else kind
            kinds[key] = kinds.get(key, 0) + n
    return Sample(
        t=t,
        strong_calls=stats["strong"]["calls"],
        target_calls=stats["target"]["calls"],
        strong_in_flight=stats["strong"]["in_flight"],
        target_in_flight=stats["target"]["in_flight"],
        by_kind=kinds,
        cpu_s=sum(u.cpu_s for u in usages),
        rss_kb=sum(u.rss_kb for u in usages),
        tokens=sum(s["prompt_tokens"] + s["completion_tokens"] for s in stats.values()),
    )


async def records_on(settings: Settings, names: list[str]) -> int:
    """How many records the named topics hold (sum of end offsets; nothing is compacted)."""
    return sum((await end_offsets(settings.kafka, [settings.topic(n) for n in names])).values())
