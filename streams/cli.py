"""The `codeclm` command line. Every subcommand builds one Settings (environment, then flags)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from streams.settings import EndpointSettings, PipelineSettings, Settings

# CLI flag -> (section, field) for the settings that are not the pipeline's own numbers.
CONNECTION_FLAGS: dict[str, tuple[str, str]] = {
    "bootstrap": ("kafka", "bootstrap_servers"),
    "topic_prefix": ("kafka", "topic_prefix"),
    "partitions": ("kafka", "partitions"),
    "strong_url": ("strong", "base_url"),
    "strong_model": ("strong", "model"),
    "strong_max_in_flight": ("strong", "max_in_flight"),
    "target_url": ("target", "base_url"),
    "target_model": ("target", "model"),
    "target_max_in_flight": ("target", "max_in_flight"),
    "judge_url": ("judge", "base_url"),
    "judge_model": ("judge", "model"),
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
            algo.add_argument(
                f"--{name.replace('_', '-')}", type=kind, help=f"{info.description or name} (default {info.default})"
            )


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


def overlay(base: Settings, sections: dict[str, dict[str, Any]]) -> Settings:
    update: dict[str, BaseModel] = {}
    for section, values in sections.items():
        current = getattr(base, section)
        if section == "judge" and current is None:
            current = base.strong  # a judge flag starts from the strong endpoint
        model_type = type(current) if current is not None else EndpointSettings
        update[section] = model_type.model_validate({**current.model_dump(), **values})
    return base.model_copy(update=update)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as CODECLM_* environment variables, for a child process (secrets included:
    the environment is how they travel; it is never logged)."""
    env: dict[str, str] = {}
    for section in ("kafka", "strong", "target", "judge", "pipeline", "worker"):
        model = getattr(settings, section)
        if model is None:
            continue
        for field, value in model.model_dump().items():
            if value is None:
                continue
            if hasattr(getattr(model, field), "get_secret_value"):
                value = getattr(model, field).get_secret_value()
            env[f"CODECLM_{section.upper()}__{field.upper()}"] = str(value)
    return env


# -- subcommands -------------------------------------------------------------------------------
def cmd_broker(args: argparse.Namespace) -> int:
    from streams.broker import BrokerError, EmbeddedBroker

    broker = EmbeddedBroker(Path(args.data_dir) if args.data_dir else None, partitions=args.partitions or 4)
    try:
        if args.action == "start":
            state = broker.start(fresh=args.fresh)
            print(f"export CODECLM_KAFKA__BOOTSTRAP_SERVERS={state.bootstrap}")
        elif args.action == "stop":
            print("stopped" if broker.stop() else "not running")
        else:
            pid = broker.running_pid()
            state = broker.read_state()
            if pid and state:
                print(f"running (pid {pid}) on {state.bootstrap}, data in {broker.data_dir}")
            else:
                print(f"not running (data in {broker.data_dir})")
                return 3
    except BrokerError as exc:
        print(f"codeclm broker: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker import ALL_STAGES, run_worker

    settings = settings_from_args(args)
    stages = tuple(args.stage) if args.stage else ALL_STAGES
    run_worker(settings, stages)
    return 0


def cmd_feed(args: argparse.Namespace) -> int:
    from streams.feed import BadLine, produce_seeds, read_seeds

    settings = settings_from_args(args)
    seeds, bad = [], []
    for item in read_seeds(Path(args.file), args.text_field):
        (bad if isinstance(item, BadLine) else seeds).append(item)
    for line in bad:
        print(f"{args.file}:{line.line}: skipped: {line.reason}", file=sys.stderr)
    sent = asyncio.run(produce_seeds(settings, seeds))
    print(f"fed {sent} seeds to {settings.topic('seeds')} ({len(bad)} bad lines skipped)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from streams.topics import TOPICS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for topic in TOPICS:
        schema = topic.record.model_json_schema(mode="serialization")
        schema["$id"] = f"codeclm/{topic.name}.schema.json"
        schema["description"] = f"Records on topic <prefix>{topic.name}: {topic.holds}. " + (
            schema.get("description") or ""
        )
        (out / f"{topic.name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    print(f"wrote {len(TOPICS)} JSON Schemas to {out}/")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import run_demo

    return run_demo(args)


def cmd_llm_double(args: argparse.Namespace) -> int:
    from llm import double

    return double.main(args.double_args) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeclm", description="CodecLM as a streaming pipeline on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="start, stop or ask about the embedded Kafka broker")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--data-dir", help="where the broker keeps its data (default ~/.cache/codeclm/broker)")
    p.add_argument("--fresh", action="store_true", help="wipe the data directory first")
    p.add_argument("--partitions", type=int, help="default partitions of auto-created topics")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("worker", help="run the pipeline's stages as Faust agents")
    p.add_argument("--stage", action="append", help="run only this stage (repeatable); default all")
    add_settings_flags(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("feed", help="send seed instructions from a JSONL or text file")
    p.add_argument("file")
    p.add_argument("--text-field", help="JSON field holding the instruction (default: text, instruction, prompt, ...)")
    add_settings_flags(p, pipeline=False)
    p.set_defaults(func=cmd_feed)

    p = sub.add_parser("schema", help="write the JSON Schema of each topic's record")
    p.add_argument("--out", default="schema", help="output folder (default ./schema)")
    p.set_defaults(func=cmd_schema)

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
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("llm-double", help="serve the LLM double (for tests and benchmarks)", add_help=False)
    p.add_argument("double_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_llm_double)
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


if __name__ == "__main__":
    sys.exit(main())
