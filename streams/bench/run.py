"""The whole benchmark as `codeclm bench` runs it."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from streams.bench import procfs
from streams.bench.pipeline import PipelineRun, bench_seeds, run_pipeline
from streams.bench.report import (
    PIPELINE_HEADERS,
    WHOLE_HEADERS,
    PipelineFigures,
    overlap_rows,
    pipeline_rows,
    stage_rows,
    summarise,
    table,
    whole_rows,
)
from streams.bench.stack import ALL_STAGES, Stack, wait_until_consuming
from streams.bench.stage import StageRate, baseline_loop, faust_stage
from streams.settings import Settings, overlay


@dataclass(frozen=True)
class Options:
    seeds: int
    max_in_flight: tuple[int, ...]
    latency_ms: float
    jitter_ms: float
    partitions: int
    workers: tuple[int, ...]
    in_flight_per_stage: int | None
    feed_rate: float
    bootstrap: str | None
    work_dir: Path | None
    json_out: Path | None
    timeout_s: float
    worker_cmd: str | None = None
    stage: str = "filter"
    stage_records: int = 5000
    pipeline: bool = True


def run_settings(
    base: Settings, bootstrap: str, opts: Options, m: int, strong_url: str, target_url: str, work: Path
) -> Settings:
    """Settings of one run: its own topic prefix and consumer groups, M in flight per endpoint."""
    run = uuid.uuid4().hex[:8]
    per_stage = opts.in_flight_per_stage or max(512, 4 * m)
    return overlay(
        base,
        {
            "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": f"bench{run}.", "partitions": opts.partitions},
            "strong": {"base_url": strong_url, "model": "double-strong", "max_in_flight": m},
            "target": {"base_url": target_url, "model": "double-target", "max_in_flight": m},
            "worker": {
                "app_id": f"bench-{run}",
                "data_dir": str(work / f"worker-{run}"),
                "in_flight_per_stage": per_stage,
                "log_level": "warn",
            },
        },
    )


def pipeline_case(
    stack: Stack, bootstrap: str, opts: Options, m: int, workers: int
) -> tuple[PipelineFigures, PipelineRun]:
    strong = stack.double("strong", opts.latency_ms, opts.jitter_ms, seed=1)
    target = stack.double("target", opts.latency_ms, opts.jitter_ms, seed=2)
    settings = run_settings(Settings(), bootstrap, opts, m, strong.url, target.url, stack.work)
    procs = stack.workers(settings, workers, command=opts.worker_cmd)
    ready = asyncio.run(wait_until_consuming(settings, ALL_STAGES, workers, procs))
    seeds = bench_seeds(opts.seeds, settings.kafka.topic_prefix)
    result = asyncio.run(
        run_pipeline(
            settings,
            {"strong": strong, "target": target},
            procs,
            seeds,
            feed_rate=opts.feed_rate,
            timeout=opts.timeout_s,
            ready_s=ready,
        )
    )
    return summarise(result, m, opts.latency_ms / 1000), result


def stage_case(stack: Stack, bootstrap: str, opts: Options) -> list[StageRate]:
    """One stage (`opts.stage`) in Faust against the plain aiokafka loop, with the LLM double
    answering at once, so what is measured is the streaming machinery."""
    double = stack.double("stage-double", 0, 0)
    m = max(opts.max_in_flight)
    faust_settings = run_settings(Settings(), bootstrap, opts, m, double.url, double.url, stack.work)
    loop_settings = run_settings(Settings(), bootstrap, opts, m, double.url, double.url, stack.work)
    faust = faust_stage(stack, faust_settings, opts.stage, opts.stage_records, opts.timeout_s)
    loop = asyncio.run(baseline_loop(loop_settings, opts.stage, opts.stage_records, opts.timeout_s))
    return [faust, loop]


def run(opts: Options) -> dict:
    started = time.monotonic()
    results: dict = {"machine": procfs.machine(), "options": {k: str(v) for k, v in vars(opts).items()}}
    with ExitStack() as exits:
        work = opts.work_dir or Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="codeclm-bench-")))
        stack = Stack(exits, work)
        bootstrap = stack.broker(opts.partitions, opts.bootstrap)
        if opts.stage:
            with ExitStack() as case:
                rates = stage_case(Stack(case, work), bootstrap, opts)
            print(f"\none stage ({opts.stage}), {opts.stage_records} records, LLM double at zero latency")
            print(table(*stage_rows(rates)))
            results["stage"] = {
                "stage": opts.stage,
                "rates": [asdict(r) for r in rates],
                "ratio": rates[0].rate / rates[1].rate,
            }
        runs = []
        for m in opts.max_in_flight if opts.pipeline else ():
            for w in opts.workers:
                with ExitStack() as case:
                    figures, result = pipeline_case(Stack(case, work), bootstrap, opts, m, w)
                runs.append(figures)
                print(table(*overlap_rows(result)))
                print(table(PIPELINE_HEADERS, pipeline_rows(runs[-1:])), flush=True)
        print()
        print(table(PIPELINE_HEADERS, pipeline_rows(runs)))
        print(table(WHOLE_HEADERS, whole_rows(runs)))
        results["pipeline"] = [r.as_dict() for r in runs]
    results["took_s"] = time.monotonic() - started
    if opts.json_out:
        opts.json_out.write_text(json.dumps(results, indent=2, default=str))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--max-in-flight", type=int, action="append")
    p.add_argument("--latency-ms", type=float, default=200)
    p.add_argument("--jitter-ms", type=float, default=50)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--workers", type=int, action="append")
    p.add_argument("--in-flight-per-stage", type=int)
    p.add_argument("--feed-rate", type=float, default=0.0)
    p.add_argument("--bootstrap")
    p.add_argument("--work-dir", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--worker-cmd")
    p.add_argument("--stage", default="filter")
    p.add_argument("--stage-records", type=int, default=5000)
    p.add_argument("--no-pipeline", action="store_true")
    a = p.parse_args(argv)
    run(
        Options(
            a.seeds,
            tuple(a.max_in_flight or [64]),
            a.latency_ms,
            a.jitter_ms,
            a.partitions,
            tuple(a.workers or [1]),
            a.in_flight_per_stage,
            a.feed_rate,
            a.bootstrap,
            a.work_dir,
            a.json,
            a.timeout,
            a.worker_cmd,
            a.stage,
            a.stage_records,
            not a.no_pipeline,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
