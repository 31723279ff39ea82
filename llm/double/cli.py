"""The double's command line (`python -m llm.double`, `codeclm llm-double`): a flag for every
DoubleConfig field, then serve until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys

from llm.double.faults import DoubleConfig
from llm.double.replies import STYLES
from llm.double.server import LLMDouble


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm.double",
        description="Run the LLM double: a deterministic OpenAI-compatible chat server for tests and benchmarks.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    defaults = DoubleConfig()
    for field in dataclasses.fields(DoubleConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if field.name in ("down", "echo_headers"):
            p.add_argument(flag, action="store_true")
        elif field.name in ("retry_after_s",):
            p.add_argument(flag, type=float, default=default)
        elif field.name in ("max_concurrency", "random_seed", "max_faults", "force_status"):
            p.add_argument(flag, type=int, default=default)
        elif field.name == "api_key":
            p.add_argument(flag, default=default, help="require this bearer key")
        elif field.name == "style":
            p.add_argument(
                flag, choices=STYLES, default=default, help="plain: tidy answers; chat: as strong chat models write"
            )
        else:
            p.add_argument(flag, type=float, default=default)
    return p


async def _serve(args: argparse.Namespace) -> None:
    names = {f.name for f in dataclasses.fields(DoubleConfig)}
    config = DoubleConfig(**{k: v for k, v in vars(args).items() if k in names})
    double = LLMDouble(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    base_url = await double.start(args.host, args.port)
    print(f"LLM double listening on {base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await double.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:  # invalid knobs
        print(f"llm double: {exc}", file=sys.stderr)
        return 2
    return 0
