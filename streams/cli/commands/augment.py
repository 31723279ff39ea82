"""`codeclm augment --count N`: new metadata combining the use cases and skills already on the
metadata topic (the paper's metadata augmentation), up to N augmented records on the topic;
decode takes them like any metadata. Off unless run."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from streams.cli import add_settings_flags, settings_quietly, unset_endpoints_message
from streams.settings import Settings, unset_endpoint_fields

if TYPE_CHECKING:
    from streams.ops.augmenter import Outcome

SUMMARY = "make new metadata by combining the use cases and skills already seen (metadata augmentation)"
DETAILS = (
    "Gives a use case the skill set of another metadata record that shares a skill with it (or its domain), "
    "when that brings a skill new to the use case and the combination was never seen; each combination once "
    "(its id is the combination's hash). --count is the number of augmented metadata records the topic "
    "should hold: a second run with the same count makes none. --check model also asks the strong model "
    "whether each combination makes sense; a No is dead-lettered and never asked again."
)
SHOWN = 20  # made records listed; more are counted


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("augment", help=SUMMARY, description=DETAILS)
    p.add_argument(
        "--count", type=int, required=True, help="augmented metadata records the metadata topic should hold in all"
    )
    p.add_argument(
        "--check",
        choices=("rule", "model"),
        default="rule",
        help="rule (default): the combining rule alone; model: the strong model also says Yes or No to each",
    )
    p.add_argument("--dry-run", action="store_true", help="list the combinations it would make; send nothing")
    add_settings_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.ops.augmenter import AugmentStopped

    if args.count < 0:
        print("codeclm augment: --count is a number of records, 0 or more", file=sys.stderr)
        return 2
    settings = settings_quietly(args)
    if args.check == "model" and not args.dry_run:
        unset = [(role, name) for role, name in unset_endpoint_fields(settings) if role == "strong"]
        if unset:
            print(f"codeclm augment: --check model: {unset_endpoints_message(unset)}", file=sys.stderr)
            return 2
    if args.dry_run:
        return asyncio.run(_dry_run(settings, args.count))
    try:
        outcome = asyncio.run(_augment(settings, args.count, args.check))
    except AugmentStopped as exc:
        print(f"codeclm augment: the strong model failed, stopped: {exc}", file=sys.stderr)
        return 1
    for line in report_lines(outcome, settings.topic("metadata"), args.check):
        print(line)
    return 0


async def _augment(settings: Settings, count: int, check_with: str) -> Outcome:
    from llm.client import OpenAIChatClient, open_session
    from streams.ops.augmenter import augment

    if check_with == "rule":
        return await augment(settings, target=count)
    async with open_session(settings.strong) as session:
        strong = OpenAIChatClient(settings.strong, session, role="strong")
        return await augment(settings, target=count, check_with="model", strong=strong)


async def _dry_run(settings: Settings, count: int) -> int:
    from streams.ops.augmenter import plan, read_seen

    seen = await read_seen(settings)
    wanted, pool = plan(seen, target=count, max_skills=settings.pipeline.max_skills)
    print(
        f"{len(seen.metadata)} metadata records on {settings.topic('metadata')} ({len(seen.augmented)} augmented); "
        f"the rule allows {len(pool)} new combinations; the target wants {wanted} more"
    )
    for candidate in pool[:wanted]:
        print(f"  would make {candidate.id}  {_combination(candidate.use_case, candidate.skills)}")
    return 0


def report_lines(outcome: Outcome, topic: str, check_with: str) -> list[str]:
    lines = [
        f"{outcome.already} augmented metadata already on {topic}, target {outcome.target}; "
        f"the rule allows {outcome.available} new combinations"
    ]
    if outcome.already >= outcome.target:
        return [*lines, "the target is met: nothing to make"]
    checked = len(outcome.made) + len(outcome.refused)
    if check_with == "model" and checked:
        prompt = sum(c.prompt_tokens for c in outcome.calls)
        completion = sum(c.completion_tokens for c in outcome.calls)
        lines.append(
            f"the strong model checked {checked}: {len(outcome.made)} made sense, {len(outcome.refused)} refused "
            f"(dead-lettered, never asked again); {len(outcome.calls)} calls, {prompt} prompt + {completion} "
            "completion tokens"
        )
    lines.append(f"made {len(outcome.made)} augmented metadata records on {topic}")
    for record in outcome.made[:SHOWN]:
        m = record.metadata
        lines.append(f"  {record.id}  {_combination(m.use_case, m.skills)}  from {' + '.join(record.augmented_from)}")
    if len(outcome.made) > SHOWN:
        lines.append(f"  ... and {len(outcome.made) - SHOWN} more")
    if outcome.short:
        lines.append(f"{outcome.short} short of the target: the rule allows no more new combinations for now")
    return lines


def _combination(use_case: str, skills: tuple[str, ...]) -> str:
    return f"{use_case!r}: {', '.join(skills)}"
