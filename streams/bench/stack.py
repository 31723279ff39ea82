"""The parts a benchmark run needs, each in a process of its own: the embedded broker, one LLM
double per endpoint (strong, target) and the worker processes. Everything started here is
stopped when the ExitStack closes, politely first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from agents.pipeline import STAGE_INPUTS
from streams.demo import Children, wait_for_http
from streams.kafka.admin import client_options
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.runtime.http import URL_FILE, url_of_worker
from streams.settings import Settings, settings_env


@dataclass(frozen=True)
class Double:
    """One LLM double process: its base URL (what an endpoint setting takes) and its pid."""

    name: str
    url: str
    pid: int

    @property
    def stats_url(self) -> str:
        return self.url.removesuffix("/v1") + "/stats"


class Stack:
    def __init__(self, stack: ExitStack, work: Path):
        self.children = Children(stack)
        self.stack = stack
        self.work = work
        work.mkdir(parents=True, exist_ok=True)

    def broker(self, partitions: int, bootstrap: str | None) -> str:
        """A fresh embedded broker in the work folder, unless `bootstrap` names a running one."""
        if bootstrap:
            return bootstrap
        broker = EmbeddedBroker(self.work / "broker", partitions=partitions, log=lambda *a: None)
        state = broker.start(fresh=True, timeout=180)
        self.stack.callback(broker.stop)
        return state.bootstrap

    def double(self, name: str, latency_ms: float, jitter_ms: float, seed: int = 0) -> Double:
        port = free_port()
        cmd = [sys.executable, "-m", "llm.double", "--port", str(port)]
        cmd += ["--latency-ms", f"{latency_ms:g}", "--jitter-ms", f"{jitter_ms:g}", "--random-seed", str(seed)]
        process = self.children.spawn(name, cmd, dict(os.environ), self.work / f"{name}.log")
        url = f"http://127.0.0.1:{port}/v1"
        wait_for_http(url + "/models", 30)
        return Double(name, url, process.pid)

    def workers(
        self, settings: Settings, count: int, stages: tuple[str, ...] = (), command: str | None = None
    ) -> list[Worker]:
        """`count` worker processes, each with its own data folder (where it leaves the URL of
        its HTTP endpoint). `command` replaces `python -m streams.cli worker`, to run it under a
        profiler (`py-spy record -o w.svg -- python -m streams.cli worker`)."""
        cmd = shlex.split(command) if command else [sys.executable, "-m", "streams.cli", "worker"]
        for stage in stages:
            cmd += ["--stage", stage]
        started = []
        for i in range(count):
            data_dir = settings.worker.data_dir / f"worker-{i}"
            env = {
                **os.environ,
                **settings_env(settings),
                "CODECLM_WORKER__DATA_DIR": str(data_dir),
                "PYTHONUNBUFFERED": "1",
            }
            log = self.work / f"{settings.worker.app_id}-worker-{i}.log"
            process = self.children.spawn(f"worker-{i}", cmd, env, log)
            # Runs before the plain stop (exit callbacks run last-in first-out): a wrapper such
            # as a profiler would otherwise leave the worker itself running.
            self.stack.callback(stop_group, process)
            started.append(Worker(process, data_dir, log))
        return started


@dataclass(frozen=True)
class Worker:
    process: subprocess.Popen
    data_dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    @property
    def http_url(self) -> str | None:
        return url_of_worker(self.data_dir / URL_FILE)


def stop_group(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the process's whole group (it was started in a session of its own), then
    SIGKILL to whatever is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(process):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + timeout
        while _group_alive(process) and time.monotonic() < deadline:
            time.sleep(0.1)


def _group_alive(process: subprocess.Popen) -> bool:
    process.poll()  # reap the leader, or its zombie keeps the group alive
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


async def double_stats(session: aiohttp.ClientSession, double: Double) -> dict[str, Any]:
    async with session.get(double.stats_url) as response:
        response.raise_for_status()
        return await response.json()


async def wait_until_consuming(
    settings: Settings, stages: tuple[str, ...], members: int, workers: list[Worker], timeout: float = 120
) -> float:
    """Wait until every stage's consumer group is Stable with `members` members (so the
    workers have their partitions and a feed is processed at once). Returns seconds waited."""
    started = time.monotonic()
    groups = [f"{settings.worker.app_id}-{stage}" for stage in stages]
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        while True:
            dead = [str(w.log) for w in workers if w.poll() is not None]
            if dead:
                raise RuntimeError(f"a worker exited while starting; see {', '.join(dead)}")
            if await _groups_stable(admin, groups, members):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"consumer groups {groups} not stable with {members} members after {timeout:.0f}s")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def _groups_stable(admin: AIOKafkaAdminClient, groups: list[str], members: int) -> bool:
    for group in groups:
        try:
            # One group per request: aiokafka 0.14 fails to decode Kafka 4's answer for several.
            (response,) = await admin.describe_consumer_groups([group])
        except KafkaError:  # coordinator not ready yet on a fresh broker
            return False
        error_code, _group, state, _ptype, _protocol, group_members, *_ = response.groups[0]
        if error_code != 0 or state != "Stable" or len(group_members) != members:
            return False
    return True


ALL_STAGES = tuple(STAGE_INPUTS)
