"""`codeclm lag`: per stage and partition, log-end offset, committed offset and lag, from the broker."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from streams.cli import add_settings_flags, settings_from_args

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: refresh in place


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lag", help="consumer lag of every stage, from the broker's committed and end offsets")
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    p.add_argument("--json", action="store_true", help="print JSON (one object per line with --watch)")
    p.add_argument("--totals", action="store_true", help="only the total line of each stage")
    p.add_argument("--members", action="store_true", help="also which worker (group member) owns which partition")
    p.add_argument("--app-id", help="the workers' app id (default codeclm; groups are <app-id>-<stage>)")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.settings import overlay

    settings = settings_from_args(args)
    if args.app_id:
        settings = overlay(settings, {"worker": {"app_id": args.app_id}})
    return asyncio.run(_run(settings, args))


async def _run(settings, args: argparse.Namespace) -> int:
    from streams.ops.consumer_lag import LagProbe, render_members, render_table, stage_members

    in_place = args.watch and not args.json and sys.stdout.isatty()
    async with LagProbe(settings) as probe:
        while True:
            report = await probe.snapshot()
            members = await stage_members(settings) if args.members else None
            if args.json:
                data = report.to_dict()
                if members is not None:
                    data["members"] = {
                        stage: {m: [[tp.topic, tp.partition] for tp in parts] for m, parts in by_member.items()}
                        for stage, by_member in members.items()
                    }
                out = json.dumps(data)
            else:
                out = render_table(report, per_partition=not args.totals)
                if members is not None:
                    out += "\n\n" + render_members(members)
            print((CLEAR if in_place else "") + out, flush=True)
            if not args.watch:
                return 0
            await asyncio.sleep(args.interval)
