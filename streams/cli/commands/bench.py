"""`codeclm bench`: how close the pipeline sits to the LLM bound M/L, and what it costs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, get_args

from streams.settings import PipelineSettings

PROMPT_SETS = get_args(PipelineSettings.model_fields["prompts"].annotation)


SUMMARY = "benchmark the pipeline against the LLM double (calls/s vs the M/L bound, CPU, memory, cost)"
DETAILS = (
    "Starts the embedded broker (or uses --bootstrap), one LLM double per endpoint and the "
    "workers, feeds seeds and prints calls/s against the bound M/L, latency, CPU and memory of the "
    "workers, scale-out, one stage against a plain aiokafka loop, and the cost per accepted pair. "
    "Pipeline numbers (instructions per metadata, iterations, ...) come from CODECLM_PIPELINE__*."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help=SUMMARY, description=DETAILS)
    p.add_argument("--quick", action="store_true", help="small runs (under 2 minutes) that prove the benchmark works")
    p.add_argument("--seeds", type=int, help="seeds per pipeline run (default 300; quick 12)")
    p.add_argument(
        "--max-in-flight", type=int, nargs="+", metavar="M", help="requests in flight per endpoint (default 64 256)"
    )
    p.add_argument("--latency-ms", type=float, help="mean latency L of the LLM doubles (default 200)")
    p.add_argument("--jitter-ms", type=float, help="uniform jitter around L (default 50)")
    p.add_argument("--partitions", type=int, help="partitions per topic (default 4)")
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        metavar="W",
        help="worker counts for scale-out, at the smallest M (default 1 2)",
    )
    p.add_argument("--in-flight-per-stage", type=int, help="records per stage at once (default max(512, 4M))")
    p.add_argument("--feed-rate", type=float, help="seeds per second (default 0: all at once)")
    p.add_argument("--stage", choices=["encode", "contrast", "filter", "tailor"], help="stage against the plain loop")
    p.add_argument(
        "--stage-records", type=int, help="records for the stage benchmark (default 5000; quick 1000; 0 skips it)"
    )
    p.add_argument("--bootstrap", help="use this running broker instead of starting one")
    p.add_argument("--work-dir", type=Path, help="keep logs here (default: a temporary folder)")
    p.add_argument("--json", type=Path, dest="json_out", help="also write every figure to this JSON file")
    p.add_argument("--timeout", type=float, dest="timeout_s", help="give up on a run after this many seconds")
    p.add_argument("--worker-cmd", help="command to run a worker, e.g. under a profiler")
    p.add_argument("--worker-log-level", choices=["crit", "error", "warn", "info", "debug"], help="default info")
    p.add_argument(
        "--dedup-embeddings",
        choices=["off", "auto", "on"],
        help="the dedup stage's near-duplicate embeddings in the workers (default off: exact duplicates only)",
    )
    p.add_argument("--no-timelines", dest="timelines", action="store_false", default=None, help="skip the timelines")
    p.add_argument(
        "--prompt-sets",
        nargs="+",
        choices=PROMPT_SETS,
        metavar="SET",
        help=f"compare prompt sets ({', '.join(PROMPT_SETS)}) instead of the usual benchmark: one pipeline run per "
        "set (same seeds, smallest M, 1 worker), then prompt tokens per accepted pair by stage side by side",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.bench.run import Options
    from streams.bench.run import run as run_bench

    fields = set(Options.__dataclass_fields__)
    given: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if k in fields and v is not None
    }
    opts = Options.quick(**given) if args.quick else Options(**given)
    run_bench(opts)
    return 0
