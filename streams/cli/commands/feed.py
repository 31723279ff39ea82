"""`codeclm feed FILE|-`: send seed instructions (JSONL, CSV, Parquet, text, standard input) to the
seeds topic; bad lines go to the dead-letter topic, seeds already fed are skipped.
`codeclm feed --metadata FILE|-`: send metadata a user wrote (JSONL or CSV, a use case and
skills per row) straight to the metadata topic, the same way."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from streams.cli import add_settings_flags, settings_quietly

if TYPE_CHECKING:
    from streams.ops.feeder import FeedItem

SHOWN_BAD_LINES = 20  # more are counted and dead-lettered, not printed


SUMMARY = "send seed instructions from a JSONL, CSV, Parquet or text file, or - for standard input"
DETAILS = (
    "Bad lines are reported with their line number and sent to the dead-letter topic; "
    "seeds already on the seeds topic (same normalised text) are skipped. With --metadata, the rows "
    "(use_case and skills, as a JSON list or separated by ; or ,) go to the metadata topic as metadata "
    "that starts a root of its own; metadata already there (same use case and skills) is skipped."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feed", help=SUMMARY, description=DETAILS)
    p.add_argument("file", nargs="?", help="input file of seeds, or - for standard input")
    p.add_argument(
        "--metadata",
        metavar="FILE",
        help="instead of seeds: a JSONL or CSV file (or -) of metadata, a use_case and skills per row, "
        "sent to the metadata topic",
    )
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
        check_input_flags(args)
        return asyncio.run(_run(settings, args))
    except FeedError as exc:
        print(f"codeclm feed: {exc}", file=sys.stderr)
        return 2


def check_input_flags(args: argparse.Namespace) -> None:
    """One input, seeds or metadata, and only the flags that input takes (FeedError otherwise)."""
    from streams.ops.seed_files import FeedError

    if (args.file is None) == (args.metadata is None):
        raise FeedError("give a file of seeds or --metadata FILE (one of them)")
    if args.metadata is not None and args.text_field:
        raise FeedError("--text-field names the instruction of a seed; metadata rows have use_case and skills")


async def _run(settings, args: argparse.Namespace) -> int:
    from streams.ops.feeder import Feeder
    from streams.ops.metadata_files import read_metadata_items
    from streams.ops.seed_files import (
        FeedError,
        Keep,
        detect_format,
        parquet_rows,
        read_items,
        read_parquet,
        text_stream,
    )

    metadata = args.metadata is not None
    name = args.metadata if metadata else args.file
    stdin = name == "-"
    fmt = args.format or (("jsonl" if metadata else "text") if stdin else detect_format(name))
    source = "stdin" if stdin else Path(name).name
    path = Path(name)
    if not stdin and not path.is_file():
        raise FeedError(f"{name}: no such file")
    if metadata and fmt not in ("jsonl", "csv"):
        raise FeedError(f"{name}: metadata is read from jsonl or csv (.jsonl, .csv, or --format), not {fmt}")
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
    items: Iterator[FeedItem]
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
            if metadata:
                items = read_metadata_items(
                    stream, fmt, source, follow=args.follow, poll=args.poll, stop=stop, keep=keep
                )
            else:
                items = read_items(
                    stream, fmt, source, args.text_field, follow=args.follow, poll=args.poll, stop=stop, keep=keep
                )
        progress = stack.enter_context(Progress(total, name))
        feeder = Feeder(
            settings,
            source,
            topic="metadata" if metadata else "seeds",
            allow_duplicates=args.allow_duplicates,
            rate=args.rate,
            on_bad=progress.bad_line,
            on_progress=progress.update,
        )
        stats = await feeder.run(items, stop)
    skipped = "" if args.allow_duplicates else f", {stats.duplicates} already fed (skipped)"
    what, topic = ("metadata records", "metadata") if metadata else ("seeds", "seeds")
    print(
        f"fed {stats.fed} {what} to {settings.topic(topic)}{skipped}, "
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
