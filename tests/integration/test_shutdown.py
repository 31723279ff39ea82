"""Graceful shutdown on the real broker: SIGTERM lets the work in flight finish and commits it,
or, when it cannot finish (the LLM is down), hands it back uncommitted; either way within the
shutdown timeout, and after a restart every seed completes."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request

import pytest

from streams.ops.feeder import feed_seeds
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay
from tests.integration.follow import Progress

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

SHUTDOWN_TIMEOUT_S = 5.0


def control(url: str, **changes) -> None:
    request = urllib.request.Request(url.removesuffix("/v1") + "/control", data=json.dumps(changes).encode())
    urllib.request.urlopen(request, timeout=10).close()


async def wait_for(condition, what: str, worker, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{worker.tail()}"
        await asyncio.sleep(0.1)


async def sigterm(worker) -> float:
    started = time.monotonic()
    worker.popen.terminate()
    code = await asyncio.to_thread(worker.popen.wait, SHUTDOWN_TIMEOUT_S + 20)
    took = time.monotonic() - started
    assert code == 0, worker.tail()
    return took


async def test_sigterm_finishes_or_hands_back_in_flight_work_within_the_timeout(settings, llm_double, start_worker):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong", "backoff_max_s": 0.5},
            "target": {"base_url": llm_double, "model": "double-target", "backoff_max_s": 0.5},
            "pipeline": {"instructions_per_metadata": 2, "max_iterations": 2},
            "worker": {"http_enabled": False, "shutdown_timeout_s": SHUTDOWN_TIMEOUT_S},
        },
    )
    control(llm_double, latency_ms=400)  # calls take long enough to be caught in flight
    seeds = [seed_from_text(f"Explain the budget line {i} to the board.") for i in range(40)]
    wanted = {s.id for s in seeds}
    worker = start_worker(settings, "worker-1")
    await feed_seeds(settings, seeds)
    progress = Progress(settings)
    progress.start()
    try:
        # 1. Mid-run, with LLM calls in flight: they finish, their records are committed.
        await wait_for(lambda: len(progress.copies["scored"]) >= 10, "work in flight", worker)
        finishing = await sigterm(worker)
        log = worker.log_path.read_text()

        # 2. The LLM down: nothing in flight can finish; it is handed back, in bounded time.
        worker = start_worker(settings, "worker-2")
        await wait_for(lambda: len(progress.copies["accepted"]) >= 15, "more verdicts", worker)
        # What worker-1 finished was committed: worker-2 did none of it again.
        copies_after_restart = sum(sum(c.values()) - len(c) for c in progress.copies.values())
        control(llm_double, down=True)
        await wait_for(lambda: "is down" in worker.log_path.read_text(), "the outage to be seen", worker)
        handing_back = await sigterm(worker)
        handed_back_log = worker.log_path.read_text()
        control(llm_double, down=False)

        # 3. A restart completes everything.
        worker = start_worker(settings, "worker-3")
        await wait_for(lambda: not progress.ledger.incomplete(wanted), "every seed", worker, timeout=180)
        progress.check()
    finally:
        await progress.stop()
    assert worker.stop() == 0

    assert finishing < SHUTDOWN_TIMEOUT_S + 10, log
    in_flight = re.search(r"stopping: (\d+) records in flight", log)
    assert in_flight and int(in_flight.group(1)) > 0  # SIGTERM did catch work in flight
    assert "stopped: all work in flight finished and was committed" in log
    assert copies_after_restart == 0
    assert handing_back < SHUTDOWN_TIMEOUT_S + 10
    assert "handed back uncommitted" in handed_back_log
    for seed in seeds:
        account = progress.ledger.account(seed.id)
        assert account.balanced and not account.dead and account.seed_dead_reason is None, account.summary()
    assert not progress.dead
    print(f"SIGTERM stop times: {finishing:.1f}s with calls in flight, {handing_back:.1f}s with the LLM down")
