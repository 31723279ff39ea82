"""`codeclm topics`: create the pipeline's topics that do not exist yet (docker compose runs it once)."""

from __future__ import annotations

import argparse
import asyncio

from streams.cli import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="create the pipeline's topics (those missing) and wait until they have leaders")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the broker and the leaders")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from schemas.topics import TOPICS
    from streams.kafka.admin import ensure_topics

    settings = settings_from_args(args)
    created = asyncio.run(ensure_topics(settings, timeout=args.timeout))
    names = [settings.topic(t.name) for t in TOPICS]
    print(
        f"created {len(created)} topics; {len(names)} ready on {settings.kafka.bootstrap_servers}: {', '.join(names)}"
    )
    return 0
