"""The Faust side: one Faust app (and so one consumer group) per stage, all run by one worker,
each built from the stage's declaration (`agents.base.Stage`).

Each stage's agent reads raw bytes, keeps up to `in_flight_per_stage` records in flight
(`OrderedAckWindow`), and for each record: decodes it (a bad one is dead-lettered), runs the
stage's pure-ish `process`, sends every output and waits until the broker has it, and only
then lets the window ack the record in offset order. So a record is committed only after
everything derived from it has been produced: at-least-once, with deterministic ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Literal

import aiohttp
import faust
import mode
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from faust.exceptions import ProducerSendError
from faust.types import EventT

from agents.base import Emit, Stage, StageContext, StageEnv, StageFailure, StageState
from llm.base import ChatModel
from llm.cache import CALL_SCOPE, AnswerCache, CachedChatModel
from llm.client import build_clients, open_session
from schemas import DeadLetter, Record, derive_id, made_from
from schemas.codec import CODEC_NAME, DecodeError, original_payload, record_headers
from schemas.codec import decode as decode_record
from schemas.codec import encode as encode_record
from schemas.topics import TopicName, decode_on, record_type
from streams.kafka.admin import faust_credentials
from streams.kafka.topic_io import TopicTail, retry_until_broker_answers
from streams.runtime import metrics
from streams.runtime.ack_window import AckGate, OrderedAckWindow
from streams.settings import Settings, endpoint_url

log = logging.getLogger("codeclm.worker")

MAX_ORIGINAL_BYTES = 256 * 1024  # of a dead letter's original record (Kafka's default limit is 1 MB)
ORIGINAL_CUT_NOTE = "[original cut to its first {kept} of {size} bytes]"
# Commits are cheap; what a crash replays is what was done since the last one.
COMMIT_INTERVAL_S = 1.0
CACHE_FILE = "llm-cache.sqlite"  # in the worker's data directory


class StageResources(mode.Service):
    """What the stages of a worker use: one aiohttp session, the answer cache and the
    strong/target/judge clients, shared by every stage, and each stage's own state (built
    here, when the worker is built, so a state that cannot be built stops the worker before it
    starts). Started before the stage apps and stopped after them (a worker dependency)."""

    def __init__(self, settings: Settings, stages: tuple[Stage, ...], **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.session: aiohttp.ClientSession | None = None
        self.cache: AnswerCache | None = None
        self.context: StageContext | None = None
        self.ready = asyncio.Event()
        self.tails: list[TopicTail] = []
        env = StageEnv(
            pipeline=settings.pipeline, dedup=settings.dedup, data_dir=settings.worker.data_dir, tail=self._tail
        )
        self.states: dict[str, StageState] = {s.name: s.open_state(env) for s in stages if s.open_state is not None}
        self.runners: list[StageRunner] = []  # every stage of the worker, for drain_stages
        # Whose producer every stage sends with: the first stage app's (the worker's main app,
        # started first and stopped last). One producer batches all stages' outputs into one
        # produce request per linger, where one per stage app cost a request each.
        self.producer_app: faust.App | None = None

    def _tail(self, topic: str) -> Callable[[], Awaitable[list[Record]]]:
        """A reader of what `topic` gained since its last call, started and stopped with this service."""
        tail = TopicTail(self.settings.kafka, self.settings.topic(topic), log)
        self.tails.append(tail)
        record = record_type(topic)

        async def gained() -> list[Record]:
            out = []
            for message in await tail():
                try:
                    out.append(decode_record(record, message.value))
                except DecodeError:
                    continue  # an unreadable record is the dead-letter topic's business
            return out

        return gained

    async def on_start(self) -> None:
        for tail in self.tails:
            await tail.start()
        self.session = open_session(self.settings.strong, self.settings.target, self.settings.judge_endpoint)
        clients: tuple[ChatModel, ChatModel, ChatModel] = build_clients(
            self.settings.strong, self.settings.target, self.settings.judge, self.session
        )
        strong, target, judge = clients
        if self.settings.worker.llm_cache:
            self.cache = AnswerCache(self.settings.worker.data_dir / CACHE_FILE)
            await self.cache.open()
            strong, target, judge = cached_clients(self.settings, self.cache, strong, target, judge)
        self.context = StageContext(strong=strong, target=target, judge=judge, pipeline=self.settings.pipeline)
        self.ready.set()

    async def on_stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.cache is not None:
            await self.cache.close()
        for tail in self.tails:
            await tail.stop()
        for state in self.states.values():
            state.close()

    async def drain_stages(self) -> None:
        """The first step of stopping (SIGTERM, Ctrl-C): every stage stops taking records, its
        work in flight gets `shutdown_timeout_s` to finish and is committed; what is still
        unfinished then is cancelled, stays uncommitted, and is read again after a restart."""
        windows = {r: r.window for r in self.runners if r.window is not None}
        runners = list(windows)
        timeout = self.settings.worker.shutdown_timeout_s
        in_flight = sum(w.in_flight for w in windows.values())
        log.info("stopping: %d records in flight get up to %.0fs to finish", in_flight, timeout)
        for runner in runners:
            runner.stop_intake()
        finished = await asyncio.gather(*(w.drain(timeout) for w in windows.values()))
        for runner in runners:
            await runner.commit()
        unfinished = [r.stage for r, done in zip(runners, finished, strict=True) if not done]
        if unfinished:
            log.warning("stopped with work in flight in %s; it is handed back uncommitted", ", ".join(unfinished))
        else:
            log.info("stopped: all work in flight finished and was committed")

    async def stage_context(self, stage: str) -> StageContext:
        """The context of `stage`: the shared clients and settings, and its own state."""
        await self.ready.wait()
        assert self.context is not None
        state = self.states.get(stage)
        return self.context if state is None else replace(self.context, state=state)


def cached_clients(
    settings: Settings, cache: AnswerCache, strong: ChatModel, target: ChatModel, judge: ChatModel
) -> tuple[ChatModel, ChatModel, ChatModel]:
    """The clients behind the answer cache; a judge that is the strong client stays one object."""
    cached_strong = CachedChatModel(strong, cache, endpoint=endpoint_url(settings.strong), role="strong")
    cached_target = CachedChatModel(target, cache, endpoint=endpoint_url(settings.target), role="target")
    cached_judge = (
        cached_strong
        if judge is strong
        else CachedChatModel(judge, cache, endpoint=endpoint_url(settings.judge_endpoint), role="judge")
    )
    return cached_strong, cached_target, cached_judge


class UndeclaredOutput(Exception):
    """A stage emitted to a topic it did not declare: a bug, kept as a dead letter."""


class StageRunner:
    """Handles one event of one stage: decode, process, send, with dead letters for failures."""

    def __init__(self, stage: Stage, app: faust.App, settings: Settings, resources: StageResources):
        self.declaration = stage
        self.stage = stage.name
        self.app = app
        self.settings = settings
        self.resources = resources
        self.window: OrderedAckWindow[EventT] | None = None  # set when the agent starts
        self.gate: AckGate | None = None
        resources.runners.append(self)
        self._topics = {
            name: app.topic(settings.topic(name), value_serializer=CODEC_NAME, key_serializer="raw")
            for name in (*stage.outputs, "deadletter")
        }
        self._prices = settings.prices()
        self._topic_names: dict[str, str] = {}  # emit topic -> Kafka topic, filled on first use
        self._emitted: dict[str, list] = {}  # emit topic -> its metric children, filled on first use

    def stop_intake(self) -> None:
        """Fetch and start nothing more: records not started stay uncommitted."""
        self.app.flow_control.suspend()  # the stream skips what it holds; the gate keeps those unacked
        consumer = self.app.consumer
        consumer.pause_partitions(consumer.assignment())

    async def commit(self) -> None:
        try:
            await self.app.consumer.commit()
        except KafkaError as exc:  # the broker is away: the acked work is replayed, never lost
            log.warning("%s: could not commit on the way out: %s", self.stage, exc)

    async def handle(self, event: EventT) -> None:
        message = event.message
        raw: bytes | None = message.value
        try:
            record = decode_on(message.topic.removeprefix(self.settings.kafka.topic_prefix), raw)
        except DecodeError as exc:
            await self.send([self._dead_letter_unreadable(message, exc)])
            metrics.RECORDS.labels(self.stage, "dead_lettered").inc()
            return
        context = await self.resources.stage_context(self.stage)
        CALL_SCOPE.set(record.id)  # this task's LLM calls are cached for this record's replays
        try:
            emits = await self.declaration.process(record, context)
            if undeclared := self.declaration.undeclared(emits):
                raise UndeclaredOutput(f"{self.stage} emitted to {undeclared}, not among its outputs")
        except StageFailure as failure:
            emits = [self._dead_letter(record, message, failure)]
        except Exception as exc:
            # A bug or an input no stage foresaw: the record is kept as a dead letter (it can
            # be replayed after a fix) instead of stalling its partition's acks for good.
            log.exception("%s: unexpected error on %s", self.stage, record.id)
            unexpected = StageFailure(f"unexpected error: {type(exc).__name__}: {exc}", type(exc).__name__)
            emits = [self._dead_letter(record, message, unexpected)]
        try:
            await self.send(emits)
        except (RecordTooLargeError, MessageSizeTooLargeError) as exc:
            # An output the broker will never take: record why, with the input, and go on.
            too_large = StageFailure(f"output too large for the broker: {exc}", type(exc).__name__)
            emits = [self._dead_letter(record, message, too_large)]
            await self.send(emits)
        outcome = "dead_lettered" if any(e.topic == "deadletter" for e in emits) else "processed"
        metrics.RECORDS.labels(self.stage, outcome).inc()

    async def send(self, emits: list[Emit]) -> None:
        """Send all outputs and wait until the broker acknowledged every one. While the broker
        is unreachable (a restart), keep trying: the record is not acked until this returns,
        and the outputs' deterministic ids make a resend harmless."""
        await retry_until_broker_answers(
            lambda: self._send_once(emits),
            what=f"{self.stage}: sending",
            log=log,
            errors=(KafkaError, ProducerSendError),
            fatal=(RecordTooLargeError, MessageSizeTooLargeError),
        )

    async def _send_once(self, emits: list[Emit]) -> None:
        # Straight to the app's producer (what faust's Topic.send ends in) with our own codec:
        # faust's message objects, serializer lookup and sensors cost ~5% of a worker's CPU.
        # Sent now, not attached to the current event (faust would publish those at commit
        # time, after the ack we are waiting for).
        producer = await (self.resources.producer_app or self.app).maybe_start_producer()
        futures = [
            await producer.send(
                self._topic_name(emit.topic),
                emit.record.id.encode(),
                encode_record(emit.record),
                partition=None,
                timestamp=None,
                headers=record_headers(emit.record),
            )
            for emit in emits
        ]
        await asyncio.gather(*futures)
        for emit in emits:
            for counter in self._counters(emit.topic):
                counter.inc()
            metrics.count_decision(self.stage, emit)
        metrics.count_cost(self.declaration, emits, self._prices)

    def _topic_name(self, emit_topic: TopicName) -> str:
        name = self._topic_names.get(emit_topic)
        if name is None:
            name = self._topic_names[emit_topic] = self._topics[emit_topic].get_topic_name()
        return name

    def _counters(self, emit_topic: str) -> list:
        counters = self._emitted.get(emit_topic)
        if counters is None:
            counters = [metrics.EMITTED.labels(self.stage, emit_topic)]
            if emit_topic in metrics.VERDICT_OF_TOPIC:
                counters.append(metrics.VERDICTS.labels(metrics.VERDICT_OF_TOPIC[emit_topic]))
            self._emitted[emit_topic] = counters
        return counters

    def _dead_letter(self, record: Record, message, failure: StageFailure) -> Emit:
        log.warning("%s: dead-lettering %s: %s", self.stage, record.id, failure.reason)
        return self._letter(
            message,
            id=derive_id("dead", self.stage, record.id),
            reason=failure.reason,
            error_class=failure.error_class,
            attempts=failure.attempts,
            **made_from(record),
            record_id=record.id,
        )

    def _dead_letter_unreadable(self, message, exc: DecodeError) -> Emit:
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        log.warning("%s: dead-lettering unreadable record at %s: %s", self.stage, where, exc)
        dead_id = derive_id("dead", self.stage, message.topic, message.partition, message.offset)
        return self._letter(message, id=dead_id, reason=str(exc), error_class=exc.error_class, seed_id="")

    def _letter(self, message, *, reason: str, **fields: Any) -> Emit:
        """A dead letter of this stage for `message`, with where it came from and its bytes."""
        text, encoding, cut = kept_original(message.value)
        return Emit(
            "deadletter",
            DeadLetter(
                stage=self.stage,
                reason=reason + cut,
                source_topic=message.topic,
                source_partition=message.partition,
                source_offset=message.offset,
                original=text,
                original_encoding=encoding,
                **{"parent_id": None, **fields},
            ),
        )


def kept_original(raw: bytes | None) -> tuple[str, Literal["utf-8", "base64"], str]:
    """(text, encoding, note) of the original bytes for a dead letter. Beyond
    MAX_ORIGINAL_BYTES only the head is kept, so the dead letter itself stays far below the
    broker's message size limit; the note (appended to the reason) says so, and such a dead
    letter cannot be replayed."""
    cut = raw is not None and len(raw) > MAX_ORIGINAL_BYTES
    text, encoding = original_payload(raw[:MAX_ORIGINAL_BYTES] if raw is not None else None)
    note = f" {ORIGINAL_CUT_NOTE.format(kept=MAX_ORIGINAL_BYTES, size=len(raw))}" if cut and raw is not None else ""
    return text, "base64" if encoding == "base64" else "utf-8", note


class StageWorker(faust.Worker):
    """faust's worker, draining the stages (bounded by shutdown_timeout_s) before it stops
    anything: then the LLM clients, producers and consumers are all still there."""

    async def on_stop(self) -> None:
        for service in self.services:
            if isinstance(service, StageResources):
                await service.drain_stages()
        await super().on_stop()


def create_stage_app(stage: Stage, settings: Settings, resources: StageResources) -> tuple[faust.App, StageRunner]:
    """A Faust app for one stage; its consumer group is `<app_id>-<stage>`."""
    kafka = settings.kafka
    app = faust.App(
        f"{settings.worker.app_id}-{stage.name}",
        broker=f"kafka://{kafka.bootstrap_servers.replace(',', ';kafka://')}",
        broker_credentials=faust_credentials(kafka),
        store="memory://",
        datadir=str(settings.worker.data_dir / stage.name),
        topic_allow_declare=False,  # topics are created by streams.kafka.admin (faust's own creation fails on Kafka 4)
        topic_partitions=kafka.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        producer_acks=-1,
        # Batch sends for 10 ms: less CPU per record; a commit still waits for the broker's ack.
        producer_linger=0.01,
        stream_buffer_maxsize=max(4096, settings.worker.in_flight_per_stage * 2),
        broker_session_timeout=settings.worker.session_timeout_s,
        broker_heartbeat_interval=settings.worker.session_timeout_s / 5,
        broker_commit_interval=COMMIT_INTERVAL_S,
        # faust would wait, without a bound, for every message in flight to be acked before a
        # rebalance or a stop; StageWorker bounds that itself (StageResources.drain_stages).
        stream_wait_empty=False,
    )
    runner = StageRunner(stage, app, settings, resources)
    if resources.producer_app is None:
        resources.producer_app = app
    inputs = app.topic(*(settings.topic(name) for name in stage.inputs), value_serializer="raw", key_serializer="raw")

    async def run_stage(stream: faust.StreamT) -> None:
        manual = stream.noack()  # type: ignore[attr-defined]
        gate = AckGate(app.consumer)  # only acks the window releases reach the consumer

        async def release(event: EventT) -> None:
            await gate.release(event, manual.ack)

        window: OrderedAckWindow[EventT] = OrderedAckWindow(
            capacity=settings.worker.in_flight_per_stage,
            ack=release,
            partition_of=lambda event: event.message.tp,
        )
        runner.gate = gate
        runner.window = window
        metrics.STAGE_IN_FLIGHT.labels(stage.name).set_function(lambda: window.in_flight)
        async for event in manual.events():
            await window.submit(event, runner.handle)

    app.agent(inputs, name=stage.name)(run_stage)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(app_, revoked, **kwargs) -> None:
        if runner.window is not None:
            runner.window.forget(set(revoked))
        gate = runner.gate
        if gate is not None and gate.refused:
            log.info("%s: held back the acks of %d messages faust skipped in a rebalance", stage.name, gate.refused)

    return app, runner
