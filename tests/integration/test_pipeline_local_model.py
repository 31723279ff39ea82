"""One seed through the pipeline with the real local model (SmolLM2-135M on llama.cpp).

A 135M model follows the prompts poorly; what this proves is that real model output, however
odd, ends with every instruction accounted for, and that the real server speaks our client's API.
"""

from __future__ import annotations

import pytest

from llm.local import MODEL_ALIAS, LocalModelServer
from schemas import AcceptedPair, Record
from streams.demo import DEMO_PIPELINE
from streams.kafka.topic_io import follow_until
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay

pytestmark = [pytest.mark.kafka, pytest.mark.local_model, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def local_model():
    server = LocalModelServer()
    server.start(timeout=180)
    yield server
    server.stop()


async def test_one_seed_with_the_real_local_model_is_fully_accounted_for(settings, local_model, start_worker):
    endpoint = {
        "base_url": local_model.base_url,
        "model": MODEL_ALIAS,
        "max_in_flight": 2,
        "timeout_s": 300,
        "send_seed": True,
    }
    pipeline = {**DEMO_PIPELINE, "prompts": "small-model"}  # as `make demo` runs the local model
    settings = overlay(settings, {"strong": endpoint, "target": endpoint, "pipeline": pipeline})
    worker = start_worker(settings)
    seed = seed_from_text("How should I prepare for a behavioral job interview at a tech company?")
    await feed_seeds(settings, [seed])

    ledger = Ledger()
    records: list[tuple[str, Record]] = []

    def add(topic: str, record: Record) -> None:
        records.append((topic, record))
        ledger.add(topic, record)

    def done() -> bool:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        return ledger.account(seed.id).complete

    topics = ("metadata", "decoded", "basic", "duplicates", "tailored", "scored", "accepted", "rejected", "deadletter")
    assert await follow_until(settings, topics, add, done, timeout=600), (
        f"{ledger.account(seed.id).summary()}\n{worker.tail()}"
    )

    account = ledger.account(seed.id)
    assert account.balanced, account.summary()
    reached = sorted({topic for topic, _ in records})
    print(f"\nlocal model: {account.summary()}; topics reached: {', '.join(reached)}")
    # The records that came out of the model say so, with real token counts.
    calls = [call for _, r in records if not isinstance(r, AcceptedPair) for call in getattr(r, "llm_calls", ())]
    assert all(c.model == MODEL_ALIAS for c in calls)
    if account.seed_dead_reason is None:
        assert calls and all(c.completion_tokens > 0 for c in calls)
