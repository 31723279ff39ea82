"""What a run's samples mean (pure): the figures of the benchmark table, and the tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from streams.bench import samples as f
from streams.bench.pipeline import PipelineRun
from streams.bench.run_cost import Cost
from streams.bench.stage import StageRate
from streams.report.pair_cost import (
    COST_HEADERS,
    COST_LEGEND,
    CostPerPair,
    PairCostFigures,
    compare_prompt_tokens,
)
from streams.report.pair_cost import cost_rows as purpose_cost_rows
from streams.report.text import percent
from streams.report.text import table as table  # the bench prints with the report's text tables


@dataclass(frozen=True)
class PipelineFigures:
    """One pipeline run, summarised. `M` is the in-flight limit of each endpoint in each
    worker; the strong endpoint (generation, strong answers and the judge) carries three
    quarters of the calls, so it is the bottleneck and the bound is workers * M / L on it."""

    m: int
    latency_s: float
    workers: int
    seeds: int
    strong_calls: int
    target_calls: int
    bound: float
    strong_rate_whole: float
    strong_rate_steady: float
    all_rate_whole: float
    all_rate_steady: float
    efficiency_whole: float
    efficiency_steady: float
    occupancy_steady: float  # mean strong requests in flight / (workers * M)
    steady_s: tuple[float, float]
    accepted: int
    rejected: int
    dead: int
    accepted_rate: float
    latency_p50_s: float
    latency_p95_s: float
    cpu_per_1k_calls: float
    cpu_per_1k_calls_steady: float
    doubles_cpu_per_1k_calls: float  # the LLM doubles' own CPU, for the machine's budget
    rss_warm_mb: float
    rss_mid_mb: float  # at half of the strong calls: a leak keeps growing, a warm-up flattens
    rss_end_mb: float
    peak_rss_mb: float
    records: int
    elapsed_s: float
    complete: bool

    @property
    def rss_growth(self) -> float:
        return self.rss_end_mb / self.rss_warm_mb - 1 if self.rss_warm_mb else math.nan

    def as_dict(self) -> dict:
        return {**asdict(self), "rss_growth": self.rss_growth}


def summarise(run: PipelineRun, m: int, latency_s: float) -> PipelineFigures:
    s = run.samples
    last_call = f.crossing(s, f.all_calls, f.all_calls(s[-1]))
    steady = f.steady_window(s, f.strong)
    bound = f.bound(run.workers * m, latency_s)
    strong_whole = f.rate(s, f.strong, 0.0, last_call)
    strong_steady = f.rate(s, f.strong, *steady)
    calls = f.all_calls(s[-1]) - f.all_calls(s[0])
    steady_calls = f.value_at(s, f.all_calls, steady[1]) - f.value_at(s, f.all_calls, steady[0])
    cpu = s[-1].cpu_s - s[0].cpu_s
    steady_cpu = f.value_at(s, lambda x: x.cpu_s, steady[1]) - f.value_at(s, lambda x: x.cpu_s, steady[0])
    return PipelineFigures(
        m=m,
        latency_s=latency_s,
        workers=run.workers,
        seeds=run.seeds,
        strong_calls=s[-1].strong_calls,
        target_calls=s[-1].target_calls,
        bound=bound,
        strong_rate_whole=strong_whole,
        strong_rate_steady=strong_steady,
        all_rate_whole=f.rate(s, f.all_calls, 0.0, last_call),
        all_rate_steady=f.rate(s, f.all_calls, *steady),
        efficiency_whole=strong_whole / bound,
        efficiency_steady=strong_steady / bound,
        occupancy_steady=f.mean_level(s, lambda x: x.strong_in_flight, *steady) / (run.workers * m),
        steady_s=steady,
        accepted=run.accepted,
        rejected=run.rejected,
        dead=run.dead,
        accepted_rate=run.accepted / run.elapsed_s if run.elapsed_s else 0.0,
        latency_p50_s=f.percentile(run.latencies_s, 50),
        latency_p95_s=f.percentile(run.latencies_s, 95),
        cpu_per_1k_calls=1000 * cpu / calls if calls else math.nan,
        cpu_per_1k_calls_steady=1000 * steady_cpu / steady_calls if steady_calls else math.nan,
        doubles_cpu_per_1k_calls=1000 * run.doubles_cpu_s / calls if calls else math.nan,
        rss_warm_mb=f.value_at(s, lambda x: x.rss_kb, steady[0]) / 1024,
        rss_mid_mb=f.value_at(s, lambda x: x.rss_kb, f.crossing(s, f.strong, f.strong(s[-1]) / 2)) / 1024,
        rss_end_mb=s[-1].rss_kb / 1024,
        peak_rss_mb=run.hwm_kb / 1024,
        records=run.records,
        elapsed_s=run.elapsed_s,
        complete=run.complete,
    )


PIPELINE_HEADERS = (
    "M",
    "workers",
    "seeds",
    "calls/s (strong)",
    "bound M/L",
    "efficiency",
    "in flight/M",
    "calls/s (all)",
    "accepted/s",
    "latency p50 s",
    "p95 s",
    "CPU s/1k calls",
    "peak RSS MB",
)


def pipeline_rows(runs: Sequence[PipelineFigures]) -> list[list[object]]:
    rows: list[list[object]] = []
    for r in runs:
        rows.append(
            [r.m, r.workers, r.seeds, r.strong_rate_steady, r.bound, r.efficiency_steady, r.occupancy_steady,
             r.all_rate_steady, r.accepted_rate, r.latency_p50_s, r.latency_p95_s, r.cpu_per_1k_calls_steady, r.peak_rss_mb]
        )  # fmt: skip
    return rows


WHOLE_HEADERS = (
    "M",
    "workers",
    "calls/s (strong)",
    "efficiency",
    "calls/s (all)",
    "CPU s/1k calls",
    "doubles' CPU s/1k",
    "run s",
    "steady window s",
)


def whole_rows(runs: Sequence[PipelineFigures]) -> list[list[object]]:
    return [
        [r.m, r.workers, r.strong_rate_whole, r.efficiency_whole, r.all_rate_whole, r.cpu_per_1k_calls,
         r.doubles_cpu_per_1k_calls, r.elapsed_s,
         f"{r.steady_s[0]:.1f}-{r.steady_s[1]:.1f}"]
        for r in runs
    ]  # fmt: skip


STAGES = ("encode", "decode", "contrast", "filter", "tailor")
CALL_KINDS = ("encode", "decode", "rubrics", "answer", "answer_target", "judge", "tailor")


def overlap_rows(run: PipelineRun, rows: int = 12) -> tuple[list[str], list[list[object]]]:
    """The overlap timeline: per time bucket, the records each stage was working on and had not
    yet committed (busy/lag: the workers' /metrics, nearest scrape) and the LLM calls of each
    kind started per second (the doubles' /stats). Stages busy in one row worked at once."""
    headers = ["t s", *(f"{s} busy/lag" for s in STAGES), "strong reqs in flight", *(f"{k}/s" for k in CALL_KINDS)]
    out: list[list[object]] = []
    for start, rates in f.timeline(run.samples, CALL_KINDS, rows):
        width = (run.samples[-1].t - run.samples[0].t) / rows
        middle = start + width / 2
        gauges = _nearest(run.stage_in_flight, middle)
        in_flight = f.mean_level(run.samples, lambda x: x.strong_in_flight, start, start + width)
        out.append(
            [round(start, 1), *(_busy_lag(gauges, s) for s in STAGES), round(in_flight), *(round(rates[k]) for k in CALL_KINDS)]
        )  # fmt: skip
    return headers, out


def _busy_lag(gauges: dict[str, float], stage: str) -> str:
    if not gauges:
        return "-"
    return f"{gauges.get(stage, 0):.0f}/{gauges.get(stage + ' lag', 0):.0f}"


def _nearest(series: Sequence[tuple[float, dict[str, float]]], t: float) -> dict[str, float]:
    if not series:
        return {}
    return min(series, key=lambda item: abs(item[0] - t))[1]


def stage_rows(rates: Sequence[StageRate]) -> tuple[list[str], list[list[object]]]:
    """The stage benchmark: each side's records/s and CPU, and the ratio to the plain loop."""
    headers = ["consumer", "records", "records/s (10-90%)", "records/s (first-last)", "CPU ms/record", "ratio to loop"]
    loop = rates[-1].rate
    return headers, [[r.name, r.records, r.rate, r.rate_whole, r.cpu_ms_per_record, r.rate / loop] for r in rates]


def cost_rows(cost: Cost) -> tuple[list[str], list[list[object]]]:
    headers = [
        "stage",
        "iteration",
        "calls",
        "from cache",
        "prompt tokens",
        "completion tokens",
        "calls/accepted (run)",
        "tokens/accepted (run)",
    ]
    pairs = cost.accepted or 1
    rows: list[list[object]] = [
        [r.stage, r.iteration or "-", r.calls, r.cached, r.prompt_tokens, r.completion_tokens, r.calls / pairs,
         (r.prompt_tokens + r.completion_tokens) / pairs]
        for r in cost.rows
    ]  # fmt: skip
    rows.append(
        ["total", "", cost.calls, cost.cached, sum(r.prompt_tokens for r in cost.rows),
         sum(r.completion_tokens for r in cost.rows), cost.calls / pairs, cost.tokens / pairs]
    )  # fmt: skip
    return headers, rows


def cost_notes(cost: Cost) -> str:
    once = "yes" if cost.rubrics_calls_records == cost.metadata else "NO"
    return (
        f"{cost.accepted} accepted pairs; the records carry {cost.calls} calls ({cost.cached} answered by the "
        f"worker's answer cache), the doubles answered {cost.calls_double} requests (re-asks of unparsable "
        f"answers and retried requests are not on the records)\n"
        f"rubrics: {cost.rubrics_calls_records} calls on the records, {cost.rubrics_calls_double} rubrics prompts at "
        f"the strong double, {cost.metadata} metadata records: generated once per metadata: {once}"
    )


def overlap_share(run: PipelineRun, window: tuple[float, float]) -> str:
    """How many stages had records in flight at once, over the scrapes in the steady window."""
    scrapes = [g for t, g in run.stage_in_flight if window[0] <= t <= window[1]]
    if not scrapes:
        return "no /metrics scrapes in the steady window"
    busy = [sum(1 for s in STAGES if g.get(s, 0) > 0) for g in scrapes]
    llm_stages = ("contrast", "tailor")
    both = sum(1 for g in scrapes if all(g.get(s, 0) > 0 for s in llm_stages))
    return (
        f"median {percentile_int(busy)} stages busy per scrape ({len(scrapes)} scrapes); "
        f"contrast and tailor both busy in {both / len(scrapes):.0%} of them"
    )


def percentile_int(values: Sequence[int]) -> int:
    return int(f.percentile(values, 50))


def purpose_cost_table(figures: PairCostFigures) -> str:
    """Cost per accepted pair by purpose: the pairs' own cost next to the run's calls / accepted."""
    return table(COST_HEADERS, purpose_cost_rows(figures)) + "\n\n" + COST_LEGEND


def prompt_set_table(sets: dict[str, CostPerPair]) -> tuple[list[str], list[list[object]]]:
    """Prompt tokens per accepted pair by purpose, the sets side by side, shares as percentages."""
    headers, rows = compare_prompt_tokens(sets)
    shares = [i for i, h in enumerate(headers) if h.endswith(": share")]
    return headers, [[percent(v) if i in shares else v for i, v in enumerate(row)] for row in rows]  # type: ignore[arg-type]


def prompt_set_notes(runs: dict[str, tuple[PipelineFigures, Cost]]) -> str:
    """Per set: the judge's share of all prompt tokens (pairs and run), how many pairs were
    accepted, and the prompt set the pairs' provenance names (proof the workers used it)."""
    lines = []
    for name, (figures, cost) in runs.items():
        by = cost.by_purpose
        if by is None:
            continue
        lines.append(
            f"{name}: judge {percent(by.pair.prompt_share('judge'))} of the pairs' prompt tokens, "
            f"{percent(by.run.prompt_share('judge'))} of the run's; {figures.accepted} accepted, "
            f"{figures.rejected} rejected, {figures.dead} dead-lettered of {figures.seeds} seeds; "
            f"prompt set on the pairs: {', '.join(f'{k} ({v})' for k, v in by.prompt_sets.items()) or 'none'}"
        )
    return "\n".join(lines)
