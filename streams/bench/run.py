"""The whole benchmark as `codeclm bench` runs it: pipeline runs at each M with one worker, the
same run with more workers (scale-out), one stage against a plain aiokafka loop, the cost per
accepted pair, and the targets, printed (never asserted).

With `prompt_sets` it compares prompt sets instead: the pipeline once per set (the same seeds,
LLM doubles started afresh with the same random seeds, one M, one worker) and, side by side,
the prompt tokens each accepted pair costs by stage."""

from __future__ import annotations

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
from streams.bench.run_cost import Cost, read_cost
from streams.bench.stack import ALL_STAGES, Stack, wait_until_consuming
from streams.bench.stage import StageRate, baseline_loop, faust_stage
from streams.bench.summary import (
    PIPELINE_HEADERS,
    WHOLE_HEADERS,
    PipelineFigures,
    cost_notes,
    cost_rows,
    overlap_rows,
    overlap_share,
    pipeline_rows,
    prompt_set_notes,
    prompt_set_table,
    purpose_cost_table,
    stage_rows,
    summarise,
    whole_rows,
)
from streams.report.text import table
from streams.settings import Settings, overlay

RSS_RECORDS = 10_000  # the memory target is about a run of at least this many records


@dataclass(frozen=True)
class Options:
    seeds: int = 300
    max_in_flight: tuple[int, ...] = (64, 256)
    latency_ms: float = 200.0
    jitter_ms: float = 50.0
    partitions: int = 4
    workers: tuple[int, ...] = (1, 2)
    in_flight_per_stage: int | None = None
    feed_rate: float = 0.0
    stage: str = "filter"
    stage_records: int = 5000
    bootstrap: str | None = None
    work_dir: Path | None = None
    json_out: Path | None = None
    timeout_s: float = 900.0
    worker_cmd: str | None = None
    timelines: bool = True
    # The worker's default. At warn and above faust's terminal spinner turns the root logger to
    # DEBUG, and every debug call in faust and aiokafka then builds a log record (~10% of CPU).
    worker_log_level: str = "info"
    # The LLM path is what this benchmark measures; the dedup stage's embeddings are CPU work of
    # their own (about 10 ms per instruction, measured by `codeclm bench-dedup`). Exact dedup stays on.
    dedup_embeddings: str = "off"
    # Compare these prompt sets (pipeline.prompts) instead of the usual benchmark: one pipeline
    # run per set at the smallest M, one worker, the same seeds.
    prompt_sets: tuple[str, ...] = ()

    @classmethod
    def quick(cls, **changes) -> Options:
        """Under two minutes: small runs that prove every part of the benchmark works."""
        return cls(**{"seeds": 12, "max_in_flight": (32,), "stage_records": 1000, **changes})


def run_settings(
    base: Settings,
    bootstrap: str,
    opts: Options,
    m: int,
    strong_url: str,
    target_url: str,
    work: Path,
    prompts: str | None = None,
) -> Settings:
    """Settings of one run: its own topic prefix and consumer groups, M in flight per endpoint,
    and the prompt set `prompts` if given (else the environment's, paper by default)."""
    run = uuid.uuid4().hex[:8]
    per_stage = opts.in_flight_per_stage or max(512, 4 * m)
    return overlay(
        base,
        {
            **({"pipeline": {"prompts": prompts}} if prompts else {}),
            "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": f"bench{run}.", "partitions": opts.partitions},
            "strong": {"base_url": strong_url, "model": "double-strong", "max_in_flight": m},
            "target": {"base_url": target_url, "model": "double-target", "max_in_flight": m},
            "dedup": {"embeddings": opts.dedup_embeddings},
            "worker": {
                "app_id": f"bench-{run}",
                "data_dir": str(work / f"worker-{run}"),
                "in_flight_per_stage": per_stage,
                "log_level": opts.worker_log_level,
            },
        },
    )


def pipeline_case(
    stack: Stack,
    bootstrap: str,
    opts: Options,
    m: int,
    workers: int,
    *,
    prompts: str | None = None,
    seed_tag: str | None = None,
) -> tuple[PipelineFigures, PipelineRun, Settings]:
    """One pipeline run with fresh LLM doubles. Seeds are tagged with the run's topic prefix
    unless `seed_tag` is given (runs with the same tag get the same seed texts)."""
    strong = stack.double("strong", opts.latency_ms, opts.jitter_ms, seed=1)
    target = stack.double("target", opts.latency_ms, opts.jitter_ms, seed=2)
    settings = run_settings(Settings(), bootstrap, opts, m, strong.url, target.url, stack.work, prompts)
    procs = stack.workers(settings, workers, command=opts.worker_cmd)
    ready = asyncio.run(wait_until_consuming(settings, ALL_STAGES, workers, procs))
    seeds = bench_seeds(opts.seeds, seed_tag or settings.kafka.topic_prefix)
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
    if not result.complete:
        raise RuntimeError(f"the run did not finish within {opts.timeout_s:.0f}s; see the logs in {stack.work}")
    return summarise(result, m, opts.latency_ms / 1000), result, settings


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


def say(text: str = "") -> None:
    print(text, flush=True)


def run(opts: Options) -> dict:
    if opts.prompt_sets:
        return run_prompt_sets(opts)
    started = time.monotonic()
    machine = procfs.machine()
    results: dict = {"machine": machine, "options": {k: str(v) for k, v in asdict(opts).items()}}
    say(f"codeclm bench on {machine['cores']} cores ({machine['cpu']}), {machine['memory']}; load {machine['load']}")
    say(f"dedup embeddings in the workers: {opts.dedup_embeddings} (--dedup-embeddings; exact dedup is on)")
    say(
        f"LLM doubles: one per endpoint (strong, target), {opts.latency_ms:g} ms +- {opts.jitter_ms:g} ms (uniform). "
        "M = requests in flight per endpoint per worker.\nThe strong endpoint (encode, decode, rubrics, tailor, "
        "strong answers, judge) carries ~3/4 of the calls, so it is\nthe bottleneck: bound = workers * M / L on it, "
        "efficiency = strong calls/s / bound."
    )
    with ExitStack() as exits:
        work = opts.work_dir or Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="codeclm-bench-")))
        stack = Stack(exits, work)
        bootstrap = stack.broker(opts.partitions, opts.bootstrap)
        one, more, cost = _pipelines(stack, bootstrap, opts, work)
        rates: list[StageRate] = []
        if opts.stage_records > 0:  # 0 skips the stage benchmark (quick A/B runs of the pipeline)
            with ExitStack() as case:
                rates = stage_case(Stack(case, work), bootstrap, opts)
    runs = one + more

    say("\n== Throughput, steady state (10%-90% of the strong calls; the targets use these) ==")
    say(table(PIPELINE_HEADERS, pipeline_rows(runs)))
    say("\n== Whole run (first seed fed to last call; includes the start and the tail) ==")
    say(table(WHOLE_HEADERS, whole_rows(runs)))
    if more:
        base = one[0]
        say("\n== Scale-out (each worker has M in flight per endpoint, so the bound grows with workers) ==")
        for r in more:
            say(
                f"{r.workers} workers vs 1 at M={r.m}: strong calls/s x{r.strong_rate_steady / base.strong_rate_steady:.2f}, "
                f"accepted pairs/s x{r.accepted_rate / base.accepted_rate:.2f}, efficiency {r.efficiency_steady:.2f} "
                f"(1 worker: {base.efficiency_steady:.2f})"
            )
    if rates:
        say(
            f"\n== One stage ({opts.stage}) against a plain aiokafka loop, {opts.stage_records} records, double at 0 ms =="
        )
        say(table(*stage_rows(rates)))
    if cost is not None:
        say(f"\n== LLM calls of the run by stage and iteration, / accepted pairs (run at M={one[0].m}, 1 worker) ==")
        say(table(*cost_rows(cost)))
        say(cost_notes(cost))
        if cost.by_purpose is not None:
            say(f"\n== Cost per accepted pair by stage (run at M={one[0].m}, 1 worker) ==")
            say(purpose_cost_table(cost.by_purpose))
    say("\n== Targets (printed, never asserted) ==")
    say(targets(one, rates, results))
    results["pipeline"] = [r.as_dict() for r in runs]
    if rates:
        results["stage"] = {
            "stage": opts.stage,
            "rates": [asdict(r) for r in rates],
            "ratio": rates[0].rate / rates[1].rate,
        }
    if cost is not None:
        results["cost"] = {**asdict(cost), "calls": cost.calls, "tokens": cost.tokens}
    results["took_s"] = time.monotonic() - started
    say(f"\nbenchmark took {results['took_s']:.0f}s")
    if opts.json_out:
        opts.json_out.write_text(json.dumps(results, indent=2, default=str))
    return results


def _pipelines(
    stack: Stack, bootstrap: str, opts: Options, work: Path
) -> tuple[list[PipelineFigures], list[PipelineFigures], Cost | None]:
    """One-worker runs at each M, then the scale-out runs at the smallest M."""
    one: list[PipelineFigures] = []
    more: list[PipelineFigures] = []
    cost = None
    cases = [(m, 1) for m in opts.max_in_flight]
    cases += [(min(opts.max_in_flight), w) for w in opts.workers if w != 1]
    for m, workers in cases:
        say(f"\n-- pipeline: M={m}, {workers} worker(s), {opts.seeds} seeds --")
        with ExitStack() as case:
            figures, result, settings = pipeline_case(Stack(case, work), bootstrap, opts, m, workers)
        (one if workers == 1 else more).append(figures)
        if opts.timelines:
            say(table(*overlap_rows(result)))
        say(f"stages busy at once: {overlap_share(result, figures.steady_s)}")
        say(table(PIPELINE_HEADERS, pipeline_rows([figures])))
        if cost is None:
            cost = asyncio.run(read_cost(settings, result.double_final))
    return one, more, cost


def targets(one: list[PipelineFigures], rates: list[StageRate], results: dict) -> str:
    lines = []
    met: dict[str, bool] = {}
    for r in one:
        ok = r.efficiency_steady >= 0.9
        met[f"efficiency_m{r.m}"] = ok
        lines.append(
            f"[{'met' if ok else 'NOT met'}] efficiency >= 0.9 at M={r.m}, 1 worker: {r.efficiency_steady:.2f}"
        )
    if rates:
        ratio = rates[0].rate / rates[1].rate
        met["stage_ratio"] = ratio >= 0.5
        lines.append(f"[{'met' if ratio >= 0.5 else 'NOT met'}] one stage >= 0.5 of the plain loop: {ratio:.2f}")
    longest = max(one, key=lambda r: r.records)
    growth = longest.rss_growth
    enough = longest.records >= RSS_RECORDS
    ok = growth < 0.10 and enough
    met["rss_growth"] = ok
    lines.append(
        f"[{'met' if ok else 'NOT met'}] worker RSS grows < 10% after warm-up over >= {RSS_RECORDS} records: "
        f"{longest.rss_warm_mb:.0f} MB (10% of the calls) -> {longest.rss_mid_mb:.0f} MB (50%) -> "
        f"{longest.rss_end_mb:.0f} MB (end) ({growth:+.1%}) over {longest.records} records (M={longest.m})"
        + ("" if enough else " (too few records to judge: raise --seeds)")
    )
    results["targets"] = met
    return "\n".join(lines)


def run_prompt_sets(opts: Options) -> dict:
    """The pipeline once per prompt set (same seeds, fresh LLM doubles with the same random
    seeds, the smallest M, one worker), then the prompt tokens per accepted pair by stage of
    every set side by side, on both bases (the pairs' own cost, the run's calls / accepted)."""
    started = time.monotonic()
    machine = procfs.machine()
    m = min(opts.max_in_flight)
    results: dict = {"machine": machine, "options": {k: str(v) for k, v in asdict(opts).items()}}
    say(f"codeclm bench on {machine['cores']} cores ({machine['cpu']}), {machine['memory']}; load {machine['load']}")
    say(
        f"prompt sets {', '.join(opts.prompt_sets)}: one pipeline run each, {opts.seeds} seeds (the same texts), "
        f"M={m}, 1 worker, LLM doubles {opts.latency_ms:g} ms +- {opts.jitter_ms:g} ms (prompt tokens = words of "
        "every message sent, examples included)"
    )
    runs: dict[str, tuple[PipelineFigures, Cost]] = {}
    with ExitStack() as exits:
        work = opts.work_dir or Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="codeclm-bench-")))
        stack = Stack(exits, work)
        bootstrap = stack.broker(opts.partitions, opts.bootstrap)
        for name in dict.fromkeys(opts.prompt_sets):
            say(f"\n-- pipeline: prompt set {name}, M={m}, 1 worker, {opts.seeds} seeds --")
            with ExitStack() as case:
                figures, result, settings = pipeline_case(
                    Stack(case, work), bootstrap, opts, m, 1, prompts=name, seed_tag="prompt sets"
                )
            if opts.timelines:
                say(table(*overlap_rows(result)))
            say(table(PIPELINE_HEADERS, pipeline_rows([figures])))
            cost = asyncio.run(read_cost(settings, result.double_final))
            if cost.by_purpose is not None:
                say(f"cost per accepted pair by stage, prompt set {name}:")
                say(purpose_cost_table(cost.by_purpose))
            runs[name] = (figures, cost)
    compared = {name: cost.by_purpose for name, (_, cost) in runs.items() if cost.by_purpose is not None}
    say(f"\n== Prompt sets: prompt tokens per accepted pair by stage (M={m}, 1 worker, {opts.seeds} seeds) ==")
    say(
        "the pairs' own cost (AcceptedPair.cost_by_purpose: the root's iterations + 1/siblings of encode, decode, rubrics):"
    )
    say(table(*prompt_set_table({n: c.pair for n, c in compared.items()})))
    say("\nthe run's prompt tokens / accepted pairs (every call, also those of rejected and dropped roots):")
    say(table(*prompt_set_table({n: c.run for n, c in compared.items()})))
    say("\n" + prompt_set_notes({n: (f, c) for n, (f, c) in runs.items()}))
    results["prompt_sets"] = {
        name: {"pipeline": figures.as_dict(), "cost": {**asdict(cost), "calls": cost.calls, "tokens": cost.tokens}}
        for name, (figures, cost) in runs.items()
    }
    results["took_s"] = time.monotonic() - started
    say(f"\nbenchmark took {results['took_s']:.0f}s")
    if opts.json_out:
        opts.json_out.write_text(json.dumps(results, indent=2, default=str))
    return results
