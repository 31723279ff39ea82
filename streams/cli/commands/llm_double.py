"""`codeclm llm-double`: serve the LLM double (a stand-in model for tests and benchmarks)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    # Every argument, --help included, belongs to the double's own parser (`python -m llm.double`):
    # with a prefix character no flag uses, this parser sees none of them as options of its own
    # and passes them all on.
    p = sub.add_parser(
        "llm-double",
        help="serve the LLM double (for tests and benchmarks); `codeclm llm-double --help` lists its flags",
        add_help=False,
        prefix_chars="\0",
    )
    p.add_argument("double_args", nargs="*")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llm import double

    return double.main(args.double_args) or 0
