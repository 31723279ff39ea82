"""`codeclm worker`: every stage (or the ones named) as Faust apps in one process."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import faust
from mode.utils.logging import setup_logging
from pydantic import BaseModel, SecretStr

from agents.dedup import DedupState
from agents.pipeline import STAGE_BY_NAME, STAGE_NAMES
from llm.settings import EndpointSettings
from streams.kafka.admin import ensure_topics
from streams.runtime import metrics
from streams.runtime.http import WorkerHTTP
from streams.runtime.stage_app import StageResources, StageWorker, create_stage_app
from streams.settings import Settings

log = logging.getLogger("codeclm.worker")

ALL_STAGES = STAGE_NAMES


def build_worker(settings: Settings, stages: tuple[str, ...] = ALL_STAGES) -> faust.Worker:
    unknown = set(stages) - set(ALL_STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; the stages are {', '.join(ALL_STAGES)}")
    for stage in stages:
        (settings.worker.data_dir / stage).mkdir(parents=True, exist_ok=True)
    declared = tuple(STAGE_BY_NAME[name] for name in stages)
    # Each stage's own state is built here (dedup's index fails here, before anything starts,
    # when its embeddings are "on" and not installed).
    resources = StageResources(settings, declared)
    dedup = resources.states.get("dedup")
    if isinstance(dedup, DedupState):
        metrics.DEDUP_INDEX_SIZE.set_function(dedup.index_size)
    apps = [create_stage_app(stage, settings, resources)[0] for stage in declared]
    # /healthz, /metrics, /lag: up before the stages start, down after they stop.
    http = [WorkerHTTP(settings, stages)] if settings.worker.http_enabled else []
    # Dependencies start in order and stop in reverse: the LLM session outlives the stages.
    worker = StageWorker(apps[0], resources, *http, *apps[1:], loglevel=settings.worker.log_level, quiet=True)
    # At log level warn and above faust's terminal spinner turns the root logger to DEBUG, and
    # every debug call on the send path then builds a record (~10% of a stage's CPU).
    worker.spinner = None
    return worker


def run_worker(settings: Settings, stages: tuple[str, ...] = ALL_STAGES) -> None:
    # faust sets logging up only when its worker runs, and these lines come before that (unless
    # the caller already has, as a test does).
    if not logging.root.handlers:
        setup_logging(loglevel=settings.worker.log_level)
    log_settings(settings)
    created = asyncio.run(ensure_topics(settings))
    if created:
        log.info("created topics: %s", ", ".join(created))
    worker = build_worker(settings, stages)
    tune_gc()
    worker.execute_from_commandline()


def log_settings(settings: Settings) -> None:
    """Every setting in effect, a line per section, so a run's log says what it ran with; and a
    warning when the settings cannot produce a single pair."""
    for line in settings_lines(settings):
        log.info("%s", line)
    if same_model(settings.strong, settings.target):
        log.warning(
            "strong and target are the same model (%s at %s): every gap is about 0: nothing will be accepted; "
            "point the target at the model you want to align",
            settings.target.model,
            shown_url(settings.target.base_url),
        )


def settings_lines(settings: Settings) -> list[str]:
    judge = endpoint_line("judge", settings.judge) if settings.judge else "endpoint judge: the strong endpoint"
    return [
        f"kafka: {public_fields(settings.kafka)}",
        endpoint_line("strong", settings.strong),
        endpoint_line("target", settings.target),
        judge,
        f"pipeline: {public_fields(settings.pipeline)}",
        f"dedup: {public_fields(settings.dedup)}",
        f"worker: {public_fields(settings.worker)}",
    ]


def endpoint_line(role: str, endpoint: EndpointSettings) -> str:
    # Whether a key is set, never the key, nor the file it is in.
    key = "api key set" if endpoint.api_key is not None or endpoint.api_key_file is not None else "no api key"
    rest = public_fields(endpoint, leave_out=("base_url", "model", "api_key_file"))
    return f"endpoint {role}: model {endpoint.model} at {shown_url(endpoint.base_url)}, {key}; {rest}"


def public_fields(model: BaseModel, leave_out: tuple[str, ...] = ()) -> str:
    """`name=value, ...` of a section, without its secrets; a mapping (custom headers, which can
    carry a key) shows only how many entries it has."""
    shown = []
    for name, info in type(model).model_fields.items():
        value: Any = getattr(model, name)
        if name in leave_out or is_secret(info.annotation):
            continue
        if isinstance(value, dict):
            value = f"{len(value)} set"
        shown.append(f"{name}={value}")
    return ", ".join(shown)


def is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def shown_url(url: str | None) -> str | None:
    """The URL without a user and password in it (http://user:pass@host/v1 -> http://host/v1)."""
    if url is None or "@" not in url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def same_model(strong: EndpointSettings, target: EndpointSettings) -> bool:
    def where(e: EndpointSettings) -> str:
        return (e.base_url or "").rstrip("/")

    return strong.model == target.model and where(strong) == where(target)


# Young-generation collections every 20,000 allocations instead of 700: a worker at a thousand
# LLM calls a second allocates mostly short-lived objects that reference counting frees, and
# at the default the collector took ~12% of its CPU. Cycles are still collected.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Fewer collections, and none that walk the objects made at start-up (modules, apps)."""
    gc.collect()
    gc.freeze()  # start-up objects move to a generation the collector never walks
    gc.set_threshold(*GC_THRESHOLDS)
