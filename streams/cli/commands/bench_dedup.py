"""`codeclm bench-dedup`: LLM calls with the dedup stage off, exact only, and exact +
embeddings, on seeds with deliberate near duplicates (streams/bench/dedup_savings.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SUMMARY = (
    "LLM calls saved by the near-duplicate filter (pipeline with the LLM double: dedup off, exact, exact + embeddings)"
)
DETAILS = (
    "Starts the embedded broker (or uses --bootstrap), runs the seeds through the whole pipeline "
    "with the LLM double three times (dedup off, the exact pass only, exact + embeddings), and prints the LLM "
    "calls of each run, the instructions "
    "dropped by method, the calls saved, and the embedding pass alone on the seed texts."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-dedup", help=SUMMARY, description=DETAILS)
    p.add_argument("--seeds-file", type=Path, help="JSONL of seeds (default examples/seeds-neardup.jsonl)")
    p.add_argument("--instructions-per-metadata", type=int, help="default 3")
    p.add_argument("--max-iterations", type=int, help="default 2")
    p.add_argument("--threshold", type=float, help="cosine similarity threshold (default 0.9)")
    p.add_argument("--latency-ms", type=float, help="LLM double latency (default 20)")
    p.add_argument("--timeout", type=float, dest="timeout_s", help="give up on a run after this many seconds")
    p.add_argument("--bootstrap", help="use this running broker instead of starting one")
    p.add_argument("--work-dir", type=Path, help="keep logs here (default: a temporary folder)")
    p.add_argument("--json", type=Path, dest="json_out", help="also write the figures to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from streams.bench.dedup_savings import Options, as_json, bench, render

    fields = set(Options.__dataclass_fields__)
    opts = Options(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    figures = asyncio.run(bench(opts))
    print(render(figures, opts))
    if args.json_out:
        args.json_out.write_text(json.dumps(as_json(figures), indent=2) + "\n")
    return 0
