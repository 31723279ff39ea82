"""`codeclm feed FILE`: send seed instructions to the seeds topic."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from streams.cli import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feed", help="send seed instructions from a JSONL or text file")
    p.add_argument("file")
    p.add_argument("--text-field", help="JSON field holding the instruction (default: text, instruction, prompt, ...)")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.feed import BadLine, produce_seeds, read_seeds

    settings = settings_from_args(args)
    seeds, bad = [], []
    for item in read_seeds(Path(args.file), args.text_field):
        (bad if isinstance(item, BadLine) else seeds).append(item)
    for line in bad:
        print(f"{args.file}:{line.line}: skipped: {line.reason}", file=sys.stderr)
    sent = asyncio.run(produce_seeds(settings, seeds))
    print(f"fed {sent} seeds to {settings.topic('seeds')} ({len(bad)} bad lines skipped)")
    return 0
