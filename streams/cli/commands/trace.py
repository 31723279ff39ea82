"""`codeclm trace SEED_ID`: one seed's tree from the topics (metadata, instructions, every
iteration with its scores, verdicts and dead letters); a root that starts at metadata by its
metadata id."""

from __future__ import annotations

import argparse
import asyncio

from streams.cli import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="print one seed's tree: metadata, instructions, scores, verdicts")
    # Not `seed`: that name is the pipeline's random seed setting, which settings_from_args reads.
    p.add_argument(
        "seed_ref",
        metavar="SEED",
        help="the seed id (seed-...), a metadata root's id (meta-...), or with --text the seed's text",
    )
    p.add_argument("--text", action="store_true", help="SEED is the seed's text; its id is computed")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from schemas import seed_id_for
    from streams.kafka.topic_io import read_records
    from streams.ops.seed_tree import TRACE_TOPICS, build, render

    settings = settings_from_args(args)
    seed_id = seed_id_for(args.seed_ref) if args.text else args.seed_ref

    async def records():
        return [(topic, record) async for topic, record in read_records(settings, TRACE_TOPICS)]

    trace = build(seed_id, asyncio.run(records()))
    print(render(trace))
    return 0 if trace.found else 1
