"""`codeclm worker`: every stage (or the ones named) as Faust apps in one process."""

from __future__ import annotations

import asyncio
import gc
import logging

import faust
from mode.utils.logging import setup_logging

from agents.dedup import DedupState
from agents.pipeline import STAGE_BY_NAME, STAGE_NAMES
from streams.kafka.admin import ensure_topics
from streams.runtime import metrics
from streams.runtime.http import WorkerHTTP
from streams.runtime.stage_app import StageResources, StageWorker, create_stage_app
from streams.settings import Settings
from streams.settings_lines import same_model_warning, settings_lines

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
    warning = same_model_warning(settings)
    if warning:
        log.warning("%s", warning)


# Young-generation collections every 20,000 allocations instead of 700: a worker at a thousand
# LLM calls a second allocates mostly short-lived objects that reference counting frees, and
# at the default the collector took ~12% of its CPU. Cycles are still collected.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Fewer collections, and none that walk the objects made at start-up (modules, apps)."""
    gc.collect()
    gc.freeze()  # start-up objects move to a generation the collector never walks
    gc.set_threshold(*GC_THRESHOLDS)
