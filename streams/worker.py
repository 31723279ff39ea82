"""`codeclm worker`: every stage (or the ones named) as Faust apps in one process."""

from __future__ import annotations

import asyncio
import logging

import faust

from streams.admin import ensure_topics
from streams.app import LLMResources, StageWorker, create_stage_app
from streams.settings import Settings
from streams.topics import STAGE_INPUTS
from streams.web import WorkerHTTP

log = logging.getLogger("codeclm.worker")

ALL_STAGES = tuple(STAGE_INPUTS)


def build_worker(settings: Settings, stages: tuple[str, ...] = ALL_STAGES) -> faust.Worker:
    unknown = set(stages) - set(ALL_STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; the stages are {', '.join(ALL_STAGES)}")
    for stage in stages:
        (settings.worker.data_dir / stage).mkdir(parents=True, exist_ok=True)
    resources = LLMResources(settings)
    apps = [create_stage_app(stage, settings, resources)[0] for stage in stages]
    # /healthz, /metrics, /lag: up before the stages start, down after they stop.
    http = [WorkerHTTP(settings, stages)] if settings.worker.http_enabled else []
    # Dependencies start in order and stop in reverse: the LLM session outlives the stages.
    worker = StageWorker(apps[0], resources, *http, *apps[1:], loglevel=settings.worker.log_level, quiet=True)
    # At log level warn and above faust's terminal spinner turns the root logger to DEBUG, and
    # every debug call on the send path then builds a record (~10% of a stage's CPU).
    worker.spinner = None
    return worker


def run_worker(settings: Settings, stages: tuple[str, ...] = ALL_STAGES) -> None:
    created = asyncio.run(ensure_topics(settings))
    if created:
        log.info("created topics: %s", ", ".join(created))
    worker = build_worker(settings, stages)
    worker.execute_from_commandline()
