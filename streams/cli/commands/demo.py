"""`codeclm demo`: everything end to end on the embedded broker and the local model."""

from __future__ import annotations

import argparse

from streams.cli import add_settings_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run everything end to end on the embedded broker and local model")
    p.add_argument("--seeds", default="examples/seeds.jsonl")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    p.add_argument("--keep-broker", action="store_true", help="leave the broker running at the end")
    p.add_argument(
        "--llm-double",
        action="store_true",
        help="use the LLM double instead of the local model (fast, for trying things)",
    )
    add_settings_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.demo import run_demo

    return run_demo(args)
