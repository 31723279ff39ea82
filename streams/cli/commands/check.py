"""`codeclm check`: the settings in effect, the broker and its topics, each LLM endpoint (the
models it lists, a one-token call, its latency and token parameter); with --seed, one seed
through every stage in this process. Exits 1 with a last line naming what to fix."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from streams.cli import add_settings_flags, settings_from_args, unset_endpoints_message


def register(sub: argparse._SubParsersAction) -> None:
    from streams.ops.check import DEFAULT_TIMEOUT_S
    from streams.ops.check_seed import DEFAULT_STAGE_TIMEOUT_S

    p = sub.add_parser(
        "check",
        help="check the settings, the broker and its topics and each LLM endpoint; --seed runs one seed through every stage",
    )
    p.add_argument(
        "--seed",
        dest="seed_text",
        metavar="TEXT",
        help="run this seed instruction through every stage, in this process (no Kafka), and print what each made",
    )
    p.add_argument(
        "--instructions",
        type=int,
        default=1,
        metavar="N",
        help="basic instructions decode makes in the --seed run, in place of instructions_per_metadata (default 1)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long the broker and each endpoint request get to answer (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--stage-timeout",
        type=float,
        default=DEFAULT_STAGE_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long each stage of the --seed run may take (default {DEFAULT_STAGE_TIMEOUT_S:g})",
    )
    # --seed is the seed's text here; the tailoring actions' random seed stays CODECLM_PIPELINE__SEED.
    add_settings_flags(p, except_pipeline=("seed",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.ops.check import run_check, summary_line
    from streams.ops.check_seed import run_seed
    from streams.settings import unset_endpoint_fields

    if args.instructions < 1:
        print("codeclm check: --instructions is at least 1", file=sys.stderr)
        return 2
    # What goes wrong is reported on the check's own lines: an unreachable broker not in
    # aiokafka's, a refusal not in the client's (written for a worker, whose calls then wait).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("codeclm.llm").setLevel(logging.CRITICAL)
    settings = settings_from_args(args)
    unset = unset_endpoint_fields(settings)

    def say(line: str) -> None:
        print(line, flush=True)

    async def check() -> list:
        problems = await run_check(settings, say, timeout_s=args.timeout, unset=unset)
        if args.seed_text is None:
            return problems
        if any(p.subject != "broker" for p in problems):
            say("seed run: skipped until the endpoints are fixed")
            return problems
        return problems + await run_seed(
            settings, args.seed_text, say, instructions=args.instructions, stage_timeout_s=args.stage_timeout
        )

    problems = asyncio.run(check())
    if unset:
        say(unset_endpoints_message(unset))
    say(summary_line(problems, seeded=args.seed_text is not None))
    return 1 if problems else 0
