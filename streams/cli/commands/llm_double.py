"""`codeclm llm-double`: serve the LLM double (a stand-in model for tests and benchmarks)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("llm-double", help="serve the LLM double (for tests and benchmarks)", add_help=False)
    p.add_argument("double_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llm import double

    return double.main(args.double_args) or 0
