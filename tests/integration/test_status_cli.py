"""`codeclm status` against a real worker on the embedded broker, and after the worker stopped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.pipeline import CONSERVATION_TOPICS
from streams.kafka.topic_io import follow_until
from streams.ops.consumer_lag import lag_report
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import seed_from_text
from streams.runtime.http import URL_FILE, url_of_worker
from streams.settings import overlay, settings_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]


def status(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "status", "--once", "--interval", "0.5", *args],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def row(screen: str, stage: str) -> list[str]:
    return next(line.split() for line in screen.splitlines() if line.startswith(stage + " "))


async def test_status_screen_of_a_real_worker_then_of_a_stopped_one(settings, llm_double, start_worker):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2},
            "worker": {"http_port": 0},
        },
    )
    worker = start_worker(settings)
    seeds = [seed_from_text(f"status seed {i}") for i in range(4)]
    await feed_seeds(settings, seeds)
    ledger = Ledger()
    assert await follow_until(
        settings,
        CONSERVATION_TOPICS,
        ledger.add,
        lambda: not ledger.incomplete({s.id for s in seeds}),
        timeout=120,
    ), worker.tail()
    for _ in range(60):  # the last commits land within a few seconds
        if (await lag_report(settings)).total == 0:
            break
        await asyncio.sleep(0.5)
    accepted = sum(len(a.accepted) for a in ledger.seeds.values())

    shown = status(settings)  # no --url: found in the worker's data dir
    assert shown.returncode == 0, shown.stderr
    screen = shown.stdout
    assert url_of_worker(settings.worker.data_dir / URL_FILE) in screen
    assert row(screen, "encode")[2:] == ["4", "0", "0", "0"]  # processed, errors, in flight, lag
    assert row(screen, "contrast")[-1] == "0"
    assert f"pairs accepted {accepted} " in screen
    calls = next(line for line in screen.splitlines() if line.startswith("LLM calls"))
    assert "strong" in calls and "target" in calls and "errors 0 (0.0%)" in calls
    assert "total lag 0 records" in screen

    worker.stop()
    await feed_seeds(settings, [seed_from_text("arrives while the worker is down")])
    assert url_of_worker(settings.worker.data_dir / URL_FILE) is None  # removed on a clean stop
    missing = status(settings)
    assert missing.returncode == 2 and "no --url given and no running worker" in missing.stderr
    down = status(settings, "--url", "http://127.0.0.1:9")  # nothing listens there
    assert down.returncode == 1
    assert "worker: not reachable" in down.stdout
    assert row(down.stdout, "encode")[-1] == "1"  # the broker still tells the lag
