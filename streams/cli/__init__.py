"""The `codeclm` command line. Every subcommand builds one Settings: the config file, then the
environment, then flags."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from streams.cli import commands
from streams.settings import (
    CONFIG_ENV,
    ConfigFileError,
    EndpointSettings,
    PipelineSettings,
    Settings,
    config_file_in_use,
    env_name,
    load_settings,
    overlay,
)

ROLES = ("strong", "target", "judge")
# An endpoint field's flag is --<role>-<field>, but for the URL, the one everyone types.
ENDPOINT_FLAG_NAMES = {"base_url": "url"}

# CLI flag (its argparse dest) -> (section, field) for the settings that are not the pipeline's
# own numbers; the endpoint flags are added from EndpointSettings' fields below.
CONNECTION_FLAGS: dict[str, tuple[str, str]] = {
    "bootstrap": ("kafka", "bootstrap_servers"),
    "topic_prefix": ("kafka", "topic_prefix"),
    "partitions": ("kafka", "partitions"),
    "in_flight_per_stage": ("worker", "in_flight_per_stage"),
    "log_level": ("worker", "log_level"),
}

# Help for the endpoint fields that carry no description of their own (a description, once
# added to EndpointSettings, is used instead).
ENDPOINT_FLAG_HELP = {
    "model": "model name, as the endpoint knows it",
    "timeout_s": "seconds before a request is given up (and retried)",
    "max_retries": "retries of a failed request (rate limit, server error, timeout) before it counts as failed",
    "backoff_base_s": "first wait before a retry, doubled each time",
    "backoff_max_s": "longest wait between retries",
}

TRUE_WORDS = {"true", "yes", "on", "1"}
FALSE_WORDS = {"false", "no", "off", "0"}


def parse_bool(text: str) -> bool:
    """A boolean flag's value. argparse's `type=bool` would take any non-empty text, "false"
    included, for True."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, yes/no, on/off or 1/0, not {text!r}")


def flag_kind(annotation: Any) -> tuple[Callable[[str], Any], tuple[Any, ...] | None] | None:
    """How a flag reads a value of this field type: (converter, choices); None for types no flag
    carries (secrets, mappings, nested models)."""
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        if len(kinds) != 1:
            return None
        annotation = kinds[0]
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return type(choices[0]), choices
    if annotation is bool:
        return parse_bool, None
    if annotation in (str, int, float, Path):
        return annotation, None
    return None


def endpoint_flag(role: str, field: str) -> str:
    """--strong-url for base_url, --strong-timeout-s for timeout_s, ..."""
    return f"--{role}-{ENDPOINT_FLAG_NAMES.get(field, field).replace('_', '-')}"


def endpoint_flag_fields() -> list[str]:
    """The EndpointSettings fields that get a flag per role: all a flag can carry, never a key
    (a flag shows in `ps` and in shell history; keys come from the environment, a key file or
    the config file)."""
    return [
        name
        for name, info in EndpointSettings.model_fields.items()
        if name != "api_key" and flag_kind(info.annotation) is not None
    ]


def flag_dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def settings_flags() -> dict[str, tuple[str, str]]:
    """Every settings flag's dest -> (section, field)."""
    endpoint_flags = {
        flag_dest(endpoint_flag(role, field)): (role, field) for role in ROLES for field in endpoint_flag_fields()
    }
    return {
        **CONNECTION_FLAGS,
        **endpoint_flags,
        **{name: ("pipeline", name) for name in PipelineSettings.model_fields},
    }


def add_settings_flags(
    parser: argparse.ArgumentParser, pipeline: bool = True, except_pipeline: tuple[str, ...] = ()
) -> None:
    """--config and the connection flags; with `pipeline` (commands that run stages), also a flag
    per endpoint field of each role and one per PipelineSettings field but `except_pipeline` (a
    command whose own flag has that name; the setting still comes from the environment)."""
    group = parser.add_argument_group("connections (also CODECLM_* environment variables)")
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML file of settings ({CONFIG_ENV}); the environment and the flags win over it",
    )
    group.add_argument("--bootstrap", help="Kafka bootstrap servers (CODECLM_KAFKA__BOOTSTRAP_SERVERS)")
    group.add_argument("--topic-prefix", help="prefix of every topic (default codeclm.)")
    group.add_argument("--partitions", type=int, help="partitions per topic, at creation")
    group.add_argument("--in-flight-per-stage", type=int, help="records each stage works on at once")
    group.add_argument("--log-level", choices=["crit", "error", "warn", "info", "debug"])
    if not pipeline:
        return
    for role in ROLES:
        title = f"the {role} endpoint (CODECLM_{role.upper()}__<NAME>" + (
            "; the judge is the strong endpoint unless one of these is given)" if role == "judge" else ")"
        )
        add_model_flags(parser.add_argument_group(title), EndpointSettings, endpoint_flag_fields(), role)
    algo = parser.add_argument_group("the algorithm (defaults are the paper's; CODECLM_PIPELINE__<NAME>)")
    add_model_flags(algo, PipelineSettings, [f for f in PipelineSettings.model_fields if f not in except_pipeline])


def add_model_flags(
    group: argparse._ArgumentGroup, model: type[BaseModel], fields: list[str], role: str | None = None
) -> None:
    """A flag per field, typed, with the field's description and default as its help."""
    for name in fields:
        info = model.model_fields[name]
        kind = flag_kind(info.annotation)
        assert kind is not None, f"{model.__name__}.{name} has no flag type"
        convert, choices = kind
        flag = endpoint_flag(role, name) if role else f"--{name.replace('_', '-')}"
        description = info.description or (ENDPOINT_FLAG_HELP.get(name) if role else None) or name.replace("_", " ")
        group.add_argument(
            flag,
            dest=flag_dest(flag),
            type=convert,
            choices=choices,
            # The field's name, as in CODECLM_<ROLE>__<NAME> and the config file.
            metavar="{true,false}" if convert is parse_bool else None if choices else name.upper(),
            help=f"{description}{shown_default(info.default)}",
        )


def shown_default(default: Any) -> str:
    if default is None:
        return ""
    return f" (default {str(default).lower() if isinstance(default, bool) else default})"


def settings_quietly(args: argparse.Namespace) -> Settings:
    """The settings, for a command that talks to Kafka on the user's behalf: aiokafka's warnings
    about errors it retries (a new topic's leader not known yet) are not the user's business."""
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    return settings_from_args(args)


def settings_from_args(args: argparse.Namespace, base: Settings | None = None) -> Settings:
    """The config file, overlaid with the environment (both via load_settings), then with the
    flags that were given."""
    base = base or load_settings(getattr(args, "config", None))
    sections: dict[str, dict[str, Any]] = {}
    for dest, (section, field) in settings_flags().items():
        value = getattr(args, dest, None)
        if value is not None:
            sections.setdefault(section, {})[field] = value
    return overlay(base, sections)


def where_to_set(section: str, field: str) -> str:
    """`CODECLM_STRONG__MODEL (--strong-model, or model in [strong] of the config file)`."""
    flag = endpoint_flag(section, field) if section in ROLES else None
    return f"{env_name(section, field)} ({f'{flag}, or ' if flag else ''}{field} in [{section}] of a --config file)"


def unset_endpoints_message(unset: list[tuple[str, str]]) -> str:
    lines = ["the strong and target LLM endpoints have no default; set:"]
    lines += [f"  {where_to_set(role, field)}" for role, field in unset]
    if any(role == "judge" for role, _ in unset):
        lines.append("(the judge has settings of its own, so it needs both; without any it uses the strong endpoint)")
    return "\n".join(lines)


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
    except ConfigFileError as exc:
        print(f"codeclm: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        config = getattr(args, "config", None) or config_file_in_use()
        origin = f"the environment, the flags or {config}" if config else "the environment or the flags"
        print(f"codeclm: invalid settings (from {origin}):\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
