"""`codeclm export`: accepted pairs from the sink as chat-messages, Alpaca or ShareGPT JSONL."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from streams.cli import add_settings_flags, settings_quietly

SUMMARY = "write accepted pairs as chat-messages, Alpaca or ShareGPT JSONL"
DETAILS = (
    "Reads the sink topic under your consumer group (resuming where it left off) or from the "
    "beginning, and writes each pair once (de-duplicated by pair id, also against the lines already in --out)."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=SUMMARY, description=DETAILS)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--group", help="consumer group of this exporter: resumes where it left off, commits after writing"
    )
    how.add_argument("--from-beginning", action="store_true", help="read the whole sink, with no group")
    p.add_argument("--format", choices=["messages", "alpaca", "sharegpt"], default="messages")
    p.add_argument("--out", default="-", help="output file, appended to (default - : standard output)")
    p.add_argument("--system", help="a system prompt to put in every example")
    p.add_argument(
        "--attributes",
        nargs="?",
        const="",
        metavar="NAMES",
        help='also write each pair\'s seed attributes under "attributes": all of them, or the comma-separated NAMES',
    )
    p.add_argument("--follow", action="store_true", help="keep exporting new pairs until Ctrl-C or SIGTERM")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_quietly(args)
    try:
        return asyncio.run(_run(settings, args))
    except BrokenPipeError:  # `codeclm export ... | head`: the reader is gone; nothing was committed past it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


async def _run(settings, args: argparse.Namespace) -> int:
    from streams.ops.training_files import SinkWriter, export_sink, ids_in_file

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    to_stdout = args.out == "-"
    seen, repaired = (set(), 0) if to_stdout else ids_in_file(Path(args.out))
    if repaired:
        print(
            f"{args.out}: removed an incomplete last line ({repaired} bytes) left by an interrupted export",
            file=sys.stderr,
        )
    out = sys.stdout.buffer if to_stdout else open(args.out, "ab")  # noqa: SIM115 - closed below
    try:
        writer = SinkWriter(out, args.format, seen, args.system, attribute_names(args.attributes))

        def progress(stats) -> None:
            if args.follow and not to_stdout:
                print(f"... {stats.written} pairs written", file=sys.stderr, flush=True)

        stats = await export_sink(settings, writer, group=args.group, follow=args.follow, stop=stop, on_batch=progress)
    finally:
        if not to_stdout:
            out.close()
    where = "standard output" if to_stdout else args.out
    print(
        f"wrote {stats.written} pairs to {where} ({args.format}); {stats.duplicates} duplicates skipped"
        + (f", {stats.unreadable} unreadable records skipped" if stats.unreadable else ""),
        file=sys.stderr,
    )
    return 0


def attribute_names(flag: str | None) -> tuple[str, ...] | bool:
    """--attributes: absent (None) writes none, bare ("") all, else the names listed."""
    if flag is None:
        return False
    names = tuple(name.strip() for name in flag.split(",") if name.strip())
    return names or True
