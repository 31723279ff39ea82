"""The double's command line (`python -m llm.double`, `codeclm llm-double`): a flag for every
DoubleConfig field, then serve until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys

from llm.double.faults import DoubleConfig
from llm.double.providers import AUTH_STYLES, TOKEN_PARAMETERS
from llm.double.replies import STYLES
from llm.double.server import LLMDouble

_BOOLEANS = ("down", "echo_headers", "fixed_temperature")
_INTEGERS = ("max_concurrency", "random_seed", "max_faults", "force_status", "context_tokens")
_CHOICES = {"style": STYLES, "token_parameter": TOKEN_PARAMETERS, "auth": tuple(AUTH_STYLES)}
_HELP = {
    "api_key": "require this key (where --auth says; api-key on Azure's endpoint, x-api-key on Anthropic's)",
    "style": "plain: tidy answers; chat: as strong chat models write",
    "token_parameter": "max_completion_tokens: refuse max_tokens, as OpenAI's newer models; "
    "max_tokens: refuse max_completion_tokens, as older vLLM",
    "fixed_temperature": "refuse a temperature other than 1, as OpenAI's reasoning models",
    "known_models": "answer only these models (Azure: deployments); others get 404",
    "context_tokens": "refuse a prompt of more tokens (words) than this, as a model at its context length",
    "auth": "where /v1/chat/completions wants the key: bearer (OpenAI), api-key (Azure), x-api-key (Anthropic)",
    "require_headers": "headers every request must carry, as a gateway demands (NAME=VALUE ...)",
}


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    return name, value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm.double",
        description="Run the LLM double: a deterministic OpenAI-compatible chat server for tests and benchmarks "
        "(also Azure OpenAI's and Anthropic's endpoints, with the providers' quirks).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    defaults = DoubleConfig()
    for field in dataclasses.fields(DoubleConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        help_ = _HELP.get(field.name)
        if field.name in _BOOLEANS:
            p.add_argument(flag, action="store_true", help=help_)
        elif field.name in _INTEGERS:
            p.add_argument(flag, type=int, default=default, help=help_)
        elif field.name in _CHOICES:
            p.add_argument(flag, choices=_CHOICES[field.name], default=default, help=help_)
        elif field.name == "api_key":
            p.add_argument(flag, default=default, help=help_)
        elif field.name == "known_models":
            p.add_argument(flag, nargs="+", metavar="MODEL", default=default, help=help_)
        elif field.name == "require_headers":
            p.add_argument(flag, nargs="+", type=_header, metavar="NAME=VALUE", default=[], help=help_)
        else:  # latency, jitter, rates, retry_after_s, hang_s
            p.add_argument(flag, type=float, default=default, help=help_)
    return p


def config_from(args: argparse.Namespace) -> DoubleConfig:
    names = {f.name for f in dataclasses.fields(DoubleConfig)}
    knobs = {k: v for k, v in vars(args).items() if k in names}
    knobs["require_headers"] = dict(knobs["require_headers"])
    return DoubleConfig(**knobs)


async def _serve(args: argparse.Namespace) -> None:
    double = LLMDouble(config_from(args))
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
