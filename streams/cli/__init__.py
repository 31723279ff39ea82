"""The `codeclm` command line. Every subcommand builds one Settings (environment, then flags)."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from streams.cli import commands
from streams.settings import PipelineSettings, Settings, overlay

# CLI flag -> (section, field) for the settings that are not the pipeline's own numbers.
CONNECTION_FLAGS: dict[str, tuple[str, str]] = {
    "bootstrap": ("kafka", "bootstrap_servers"),
    "topic_prefix": ("kafka", "topic_prefix"),
    "partitions": ("kafka", "partitions"),
    **{f"{role}_url": (role, "base_url") for role in ("strong", "target", "judge")},
    **{f"{role}_model": (role, "model") for role in ("strong", "target", "judge")},
    **{f"{role}_max_in_flight": (role, "max_in_flight") for role in ("strong", "target")},
    "in_flight_per_stage": ("worker", "in_flight_per_stage"),
    "log_level": ("worker", "log_level"),
}


def add_settings_flags(parser: argparse.ArgumentParser, pipeline: bool = True) -> None:
    """Flags for connections and, with `pipeline`, one per PipelineSettings field."""
    group = parser.add_argument_group("connections (also CODECLM_* environment variables)")
    group.add_argument("--bootstrap", help="Kafka bootstrap servers (CODECLM_KAFKA__BOOTSTRAP_SERVERS)")
    group.add_argument("--topic-prefix", help="prefix of every topic (default codeclm.)")
    group.add_argument("--partitions", type=int, help="partitions per topic, at creation")
    for role in ("strong", "target", "judge"):
        group.add_argument(f"--{role}-url", help=f"{role} endpoint base URL, up to /v1")
        group.add_argument(f"--{role}-model", help=f"{role} model name")
    group.add_argument("--strong-max-in-flight", type=int, help="requests in flight to the strong endpoint")
    group.add_argument("--target-max-in-flight", type=int, help="requests in flight to the target endpoint")
    group.add_argument("--in-flight-per-stage", type=int, help="records each stage works on at once")
    group.add_argument("--log-level", choices=["crit", "error", "warn", "info", "debug"])
    if pipeline:
        algo = parser.add_argument_group("the algorithm (defaults are the paper's; CODECLM_PIPELINE__<NAME>)")
        for name, info in PipelineSettings.model_fields.items():
            kind = type(info.default) if info.default is not None else str
            choices = get_args(info.annotation) if get_origin(info.annotation) is Literal else None
            algo.add_argument(
                f"--{name.replace('_', '-')}",
                type=kind,
                choices=choices,
                help=f"{info.description or name} (default {info.default})",
            )


def settings_quietly(args: argparse.Namespace) -> Settings:
    """The settings, for a command that talks to Kafka on the user's behalf: aiokafka's warnings
    about errors it retries (a new topic's leader not known yet) are not the user's business."""
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    return settings_from_args(args)


def settings_from_args(args: argparse.Namespace, base: Settings | None = None) -> Settings:
    """Environment (via Settings()) overlaid with the flags that were given."""
    base = base or Settings()
    sections: dict[str, dict[str, Any]] = {}
    for flag, (section, field) in CONNECTION_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            sections.setdefault(section, {})[field] = value
    for name in PipelineSettings.model_fields:
        value = getattr(args, name, None)
        if value is not None:
            sections.setdefault("pipeline", {})[name] = value
    return overlay(base, sections)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeclm", description="CodecLM as a streaming pipeline on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{module.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        print(f"codeclm: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
