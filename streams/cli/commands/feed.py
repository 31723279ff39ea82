"""`codeclm feed FILE|-`: send seed instructions (JSONL, CSV, Parquet, text, standard input) to the
seeds topic; bad lines go to the dead-letter topic, seeds already fed are skipped."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from streams.cli import add_settings_flags, settings_quietly

SHOWN_BAD_LINES = 20  # more are counted and dead-lettered, not printed


SUMMARY = "send seed instructions from a JSONL, CSV, Parquet or text file, or - for standard input"
DETAILS = (
    "Bad lines are reported with their line number and sent to the dead-letter topic; "
    "seeds already on the seeds topic (same normalised text) are skipped."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feed", help=SUMMARY, description=DETAILS)
    p.add_argument("file", help="input file, or - for standard input")
    p.add_argument(
        "--format",
        choices=["jsonl", "csv", "parquet", "text"],
        help="default: from the file name (.jsonl/.ndjson/.json, .csv, .parquet; else text); text for -",
    )
    p.add_argument(
        "--text-field", help="field or column holding the instruction (default: text, instruction, prompt, ...)"
    )
    kept = p.add_mutually_exclusive_group()
    kept.add_argument(
        "--attributes",
        metavar="COL1,COL2",
        help="JSONL, CSV, Parquet: the other fields or columns to keep as each seed's attributes (default: all)",
    )
    kept.add_argument("--no-attributes", action="store_true", help="keep no other field or column")
    p.add_argument("--follow", action="store_true", help="keep reading as the file grows, until Ctrl-C or SIGTERM")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between looks at a followed file (default 0.5)")
    p.add_argument("--rate", type=float, help="send at most this many seeds per second")
    p.add_argument("--allow-duplicates", action="store_true", help="send seeds even if already on the seeds topic")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.ops.seed_files import FeedError

    settings = settings_quietly(args)
    try:
        return asyncio.run(_run(settings, args))
    except FeedError as exc:
        print(f"codeclm feed: {exc}", file=sys.stderr)
        return 2


async def _run(settings, args: argparse.Namespace) -> int:
    from streams.ops.feeder import Feeder
    from streams.ops.seed_files import (
        FeedError,
        Keep,
        detect_format,
        parquet_rows,
        read_items,
        read_parquet,
        text_stream,
    )

    stdin = args.file == "-"
    fmt = args.format or ("text" if stdin else detect_format(args.file))
    source = "stdin" if stdin else Path(args.file).name
    path = Path(args.file)
    if not stdin and not path.is_file():
        raise FeedError(f"{args.file}: no such file")
    if fmt == "parquet" and (args.follow or stdin):
        raise FeedError("Parquet is read from a file, whole: --follow and standard input take jsonl, csv or text")

    if fmt == "text" and args.attributes:
        raise FeedError("plain text has no other columns: --attributes takes jsonl, csv or parquet")
    keep: Keep = () if args.no_attributes else kept_columns(args.attributes)
    stop = threading.Event()
    interrupted = threading.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        interrupted.set()
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)  # a second Ctrl-C interrupts at once

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    total: int | None
    with ExitStack() as stack:
        if fmt == "parquet":
            items = read_parquet(path, args.text_field, keep=keep)
            total = parquet_rows(path)
        else:
            binary = sys.stdin.buffer if stdin else stack.enter_context(path.open("rb"))
            stream = text_stream(binary, fmt)
            if stdin:
                stack.callback(stream.detach)  # leave standard input itself open
            total = None if stdin or args.follow else count_lines(path) - (1 if fmt == "csv" else 0)
            items = read_items(
                stream, fmt, source, args.text_field, follow=args.follow, poll=args.poll, stop=stop, keep=keep
            )
        progress = stack.enter_context(Progress(total, args.file))
        feeder = Feeder(
            settings,
            source,
            allow_duplicates=args.allow_duplicates,
            rate=args.rate,
            on_bad=progress.bad_line,
            on_progress=progress.update,
        )
        stats = await feeder.run(items, stop)
    skipped = "" if args.allow_duplicates else f", {stats.duplicates} already fed (skipped)"
    print(
        f"fed {stats.fed} seeds to {settings.topic('seeds')}{skipped}, "
        f"{stats.bad} bad lines to {settings.topic('deadletter')}"
        + (" (interrupted)" if interrupted.is_set() and not args.follow else "")
    )
    return 0


def kept_columns(flag: str | None) -> tuple[str, ...] | None:
    """--attributes col1,col2: those columns; absent: None, all of them."""
    if flag is None:
        return None
    return tuple(name.strip() for name in flag.split(",") if name.strip())


def count_lines(path: Path) -> int:
    """For the progress bar's total: cheap, bytes only."""
    lines = 0
    last = b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


class Progress:
    """A bar with rate and ETA on a terminal (tqdm); a plain count every few seconds otherwise."""

    def __init__(self, total: int | None, name: str, every: float = 10.0):
        self.tty = sys.stderr.isatty()
        self.name = name
        self.every = every
        self.shown_bad = 0
        self._last = time.monotonic()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, unit=" lines", unit_scale=True, file=sys.stderr, dynamic_ncols=True, smoothing=0.1
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, stats) -> None:
        done = stats.read + stats.bad
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(f"fed {stats.fed}, already fed {stats.duplicates}, bad {stats.bad}", refresh=False)
        elif time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            print(f"... {stats.fed} fed, {stats.duplicates} already fed, {stats.bad} bad lines", file=sys.stderr)

    def bad_line(self, bad) -> None:
        self.shown_bad += 1
        if self.shown_bad > SHOWN_BAD_LINES:
            return
        message = f"{self.name}:{bad.line}: bad line: {bad.reason}"
        if self.shown_bad == SHOWN_BAD_LINES:
            message += "\n(further bad lines are counted and dead-lettered, not shown)"
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)
