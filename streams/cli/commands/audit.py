"""`codeclm audit`: does conservation hold? Every seed (and every metadata fed as metadata or
made by augmentation) produced its instructions or was dead-lettered, and every instruction
ended in one verdict or a dead letter. Exits 1, naming what is missing, when it does not."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict

from streams.cli import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="check that every seed and instruction is accounted for; exit 1 if not")
    p.add_argument(
        "--seed",
        dest="seed_ids",
        action="append",
        metavar="SEED_ID",
        help="only these seeds or metadata roots (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.kafka.topic_io import read_records
    from streams.ops.conservation_audit import AUDIT_TOPICS, audit, render

    settings = settings_from_args(args)

    async def records():
        return [(topic, record) async for topic, record in read_records(settings, AUDIT_TOPICS)]

    result = audit(asyncio.run(records()), set(args.seed_ids) if args.seed_ids else None)
    print(json.dumps({**asdict(result), "ok": result.ok}) if args.json else render(result))
    return 0 if result.ok else 1
