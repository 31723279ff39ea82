"""`codeclm worker`: run the pipeline's stages as Faust agents."""

from __future__ import annotations

import argparse
import sys

from streams.cli import add_settings_flags, settings_from_args, unset_endpoints_message
from streams.settings import unset_endpoint_fields


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run the pipeline's stages as Faust agents")
    p.add_argument("--stage", action="append", help="run only this stage (repeatable); default all")
    add_settings_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # No endpoint has a default: one left unset would otherwise fail on every record.
    unset = unset_endpoint_fields(settings)
    if unset:
        print(f"codeclm worker: {unset_endpoints_message(unset)}", file=sys.stderr)
        return 2

    from agents.dedup.embeddings import EmbeddingsUnavailable
    from streams.runtime.worker import ALL_STAGES, run_worker

    try:
        run_worker(settings, tuple(args.stage) if args.stage else ALL_STAGES)
    except EmbeddingsUnavailable as exc:
        print(f"codeclm worker: {exc}", file=sys.stderr)
        return 2
    return 0
