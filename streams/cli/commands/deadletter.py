"""`codeclm deadletter`: what was dead-lettered, by stage, error class and reason; `--list` them;
`--replay` chosen ones into the stage they came from."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from streams.cli import add_settings_flags, settings_from_args

SUMMARY = "summarise dead letters, list them, or replay chosen ones into their stage"
DETAILS = (
    "Without options: a summary by stage, error class and reason. Filters (--stage, "
    "--reason-contains, --error-class) narrow --list and --replay-stage."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deadletter", help=SUMMARY, description=DETAILS)
    p.add_argument("--list", action="store_true", help="one line per dead letter (id, stage, error class, reason)")
    p.add_argument("--replay", nargs="+", metavar="ID", help="replay these dead letters")
    p.add_argument("--replay-stage", metavar="STAGE", help="replay every dead letter of this stage (with the filters)")
    p.add_argument("--stage", help="only dead letters of this stage")
    p.add_argument("--reason-contains", metavar="TEXT", help="only dead letters whose reason contains TEXT")
    p.add_argument("--error-class", help="only dead letters of this error class (e.g. LLMError, ValidationError)")
    p.add_argument("--dry-run", action="store_true", help="with a replay: say what would be replayed, do nothing")
    p.add_argument("--show-replays", action="store_true", help="mark dead letters already replayed (reads inputs)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings_from_args(args), args))


async def _run(settings, args: argparse.Namespace) -> int:
    from streams.ops import dead_letter_replay as dl

    letters = await dl.read_dead_letters(settings)
    if args.replay or args.replay_stage:
        chosen = dl.select(
            letters,
            ids=args.replay,
            stage=args.replay_stage or args.stage,
            reason_contains=args.reason_contains,
            error_class=args.error_class,
        )
        return await _replay(settings, args, chosen, missing=set(args.replay or ()) - {d.id for d in chosen})
    chosen = dl.select(letters, stage=args.stage, reason_contains=args.reason_contains, error_class=args.error_class)
    replayed = (
        await dl.replays(settings, {d.source_topic for d in chosen if d.source_topic}) if args.show_replays else {}
    )
    if args.list:
        for d in chosen:
            if args.json:
                print(json.dumps({**d.model_dump(exclude={"original"}), "replayed_at": replayed.get(d.id)}))
            else:
                mark = " (replayed)" if d.id in replayed else ""
                print(f"{d.id}  {d.stage:8} {d.error_class:16} {d.seed_id or '-':26} {d.reason[:160]}{mark}")
        return 0
    rows = dl.summarise(chosen)
    if args.json:
        print(
            json.dumps(
                {
                    "total": len(chosen),
                    "replayed": sum(1 for d in chosen if d.id in replayed) if args.show_replays else None,
                    "groups": [
                        {"stage": r.stage, "error_class": r.error_class, "count": r.count, "reasons": dict(r.reasons)}
                        for r in rows
                    ],
                }
            )
        )
        return 0
    print(f"{len(chosen)} dead letters on {settings.topic('deadletter')}")
    if args.show_replays:
        print(f"{sum(1 for d in chosen if d.id in replayed)} of them replayed")
    for r in rows:
        print(f"  {r.stage:8} {r.error_class:20} {r.count:6}")
        for reason, n in r.reasons:
            print(f"      {n:6}  {reason}")
    return 0


async def _replay(settings, args: argparse.Namespace, chosen, missing: set[str]) -> int:
    from streams.ops import dead_letter_replay as dl

    for dead_id in sorted(missing):
        print(f"codeclm deadletter: no dead letter {dead_id}", file=sys.stderr)
    now = dl.now()
    plans: list[tuple[dl.DeadLetter, dl.Replay]] = []
    refused: list[tuple[dl.DeadLetter, str]] = []
    for letter in chosen:
        plan = dl.replay_of(letter, now)
        if isinstance(plan, str):
            refused.append((letter, plan))
        else:
            plans.append((letter, plan))
    for letter, why in refused:
        print(f"cannot replay {letter.id}: {why}", file=sys.stderr)
    if args.dry_run:
        for _, plan in plans:
            print(f"would replay {plan.letter.id} ({plan.letter.stage}) to {plan.topic}")
        return 0 if not missing and not refused else 1
    done = await dl.replay(settings, [plan for _, plan in plans])
    for plan, partition, offset in done:
        print(f"replayed {plan.letter.id} ({plan.letter.stage}) to {plan.topic}[{partition}]@{offset}")
    print(f"replayed {len(done)} dead letters" + (f"; {len(refused)} could not be" if refused else ""))
    return 0 if not missing and not refused else 1
