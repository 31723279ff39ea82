"""`codeclm report`: a run's figures from its topics, as report.html (self-contained, opens
offline) and report.json: distribution match, diversity, score gaps, iterations, duplicates
dropped, LLM cost per stage and per accepted pair, what metadata augmentation added to the
coverage of use cases and skills, and dead letters."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.cli import add_settings_flags, settings_quietly
from streams.settings import Settings, overlay

if TYPE_CHECKING:
    from streams.report.figures import Report
    from streams.report.pair_cost import PairCostFigures


SUMMARY = "write an HTML report and a JSON summary of a run (distributions, diversity, gaps, cost)"
DETAILS = (
    "Reads the run's topics from the beginning (no consumer group: nothing is committed) and writes "
    "report.html (plots inline, no network needed to open it) and report.json to --out."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help=SUMMARY, description=DETAILS)
    p.add_argument("--out", default="codeclm-report", help="output directory (default ./codeclm-report)")
    p.add_argument("--since", help="only records created at or after this time (ISO 8601 or unix seconds)")
    p.add_argument("--until", help="only records created before this time (ISO 8601 or unix seconds)")
    p.add_argument("--gap-threshold", type=float, help="the threshold to mark on the gap histogram (default: settings)")
    p.add_argument("--similarity-threshold", type=float, help="cosine of a near duplicate (default: settings.dedup)")
    p.add_argument(
        "--by", metavar="ATTRIBUTE", help="also break the figures down by this seed attribute (category, ...)"
    )
    p.add_argument("--no-embeddings", action="store_true", help="skip the embedding figures (dispersion, near dups)")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.report.collect import parse_time

    settings = settings_quietly(args)
    if args.similarity_threshold is not None:
        settings = overlay(settings, {"dedup": {"similarity_threshold": args.similarity_threshold}})
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        print(f"codeclm report: {exc}", file=sys.stderr)
        return 2
    from aiokafka.errors import KafkaConnectionError

    try:
        html_path, json_path, summary, report = write_report(
            settings, Path(args.out), since=since, until=until, embeddings=not args.no_embeddings, by=args.by
        )
    except KafkaConnectionError as exc:
        print(f"codeclm report: cannot read the topics from {settings.kafka.bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {html_path}\nwrote {json_path}")
    for line in headlines(summary):
        print(f"  {line}")
    for line in cost_lines(report.cost_per_pair):
        print(f"  {line}")
    for line in breakdown_lines(report):
        print(f"  {line}")
    if report.augmentation is not None:
        from streams.report.coverage import coverage_lines

        for line in coverage_lines(report.augmentation):
            print(f"  {line}")
    return 0


def write_report(
    settings: Settings,
    out: Path,
    *,
    since: float | None,
    until: float | None,
    embeddings: bool = True,
    by: str | None = None,
) -> tuple[Path, Path, dict[str, Any], Report]:
    from streams.report import figures, html
    from streams.report.collect import load_embedder, read_run

    records = asyncio.run(read_run(settings))
    embed, note = load_embedder() if embeddings else (None, "not computed: --no-embeddings")
    report = figures.compute(
        records,
        gap_threshold=settings.pipeline.gap_threshold,
        similarity_threshold=settings.dedup.similarity_threshold,
        since=since,
        until=until,
        embed=embed,
        embeddings_note=note,
        prices=settings.prices(),
        by=by,
    )
    generated_at = time.time()
    summary = {"topic_prefix": settings.kafka.topic_prefix, "generated_at": generated_at, **report.as_json()}
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "report.html", out / "report.json"
    html_path.write_text(html.render(report, topic_prefix=settings.kafka.topic_prefix, generated_at=generated_at))
    json_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return html_path, json_path, summary, report


def headlines(summary: dict[str, Any]) -> list[str]:
    o, its, dup = summary["overview"], summary["iterations"], summary["duplicates"]
    js = {d["name"]: d["js_divergence"] for d in summary["distributions"]}
    div = summary["diversity"]

    def num(x: float | None, fmt: str = ".3f") -> str:
        return "n/a" if x is None else format(x, fmt)

    return [
        f"{o['seeds']} seeds, {o['accepted']} accepted, {o['rejected']} rejected, {o['duplicates']} duplicates dropped, "
        f"{o['dead_letters']} dead letters",
        f"accepted at iteration 1: {num(its['first_iteration_share'], '.1%')} (the paper: over 70%)",
        f"JS divergence seeds vs accepted: use cases {num(js.get('use_case'))}, skills {num(js.get('skills'))}",
        f"distinct-1 {num(div['distinct_1'])}, distinct-2 {num(div['distinct_2'])}, "
        f"near-duplicate rate {num(div['near_duplicate_rate'], '.1%')}"
        + (f" ({div['embeddings_note']})" if div["embeddings_note"] else ""),
        f"LLM calls {o['llm_calls']}; calls saved by dropping duplicates (estimate) {num(dup['calls_saved_estimate'], '.0f')}",
    ]


def cost_lines(figures: PairCostFigures) -> list[str]:
    """The cost per accepted pair: both totals in a sentence, then the table by stage."""
    from streams.report.pair_cost import COST_HEADERS, COST_LEGEND, cost_rows
    from streams.report.text import percent, table

    pair, run = figures.pair.total, figures.run.total
    if run is None:
        return ["cost per accepted pair: no accepted pairs"]
    own = (
        f"{pair.calls:.2f} LLM calls, {pair.prompt_tokens:,.0f} prompt + {pair.completion_tokens:,.0f} completion "
        f"tokens; the judge: {percent(figures.pair.prompt_share('judge'))} of its prompt tokens"
        if pair is not None
        else "n/a (no pair carries a cost breakdown)"
    )
    lines = [
        f"per accepted pair, its own cost: {own}",
        f"the run's / accepted pairs: {run.calls:.2f} calls, {run.prompt_tokens:,.0f} prompt + "
        f"{run.completion_tokens:,.0f} completion tokens (rejected and dropped roots included)",
    ]
    if figures.usd_per_pair is not None:
        own_usd, run_usd = figures.usd_per_pair
        lines.append(f"in US dollars, at the endpoints' prices: ${own_usd:.5f} its own, ${run_usd:.5f} the run's")
    lines += ["cost per accepted pair by stage:"]
    if figures.pair.without_breakdown:
        lines.append(
            f"({figures.pair.without_breakdown} accepted pairs without a cost breakdown are left out of pair:)"
        )
    lines += ["  " + line for line in table(COST_HEADERS, cost_rows(figures)).splitlines()]
    lines += ["  " + line for line in COST_LEGEND.splitlines()]
    return lines


def breakdown_lines(report: Report) -> list[str]:
    if report.breakdown is None:
        return []
    from streams.report.breakdown import HEADERS, breakdown_rows
    from streams.report.figures import NONE_LABEL
    from streams.report.text import table

    b = report.breakdown
    if all(row.value == NONE_LABEL for row in b.rows):
        return [f"by {b.attribute}: no seed in this run has that attribute"]
    return [f"by {b.attribute}:", *("  " + line for line in table(HEADERS, breakdown_rows(b)).splitlines())]
