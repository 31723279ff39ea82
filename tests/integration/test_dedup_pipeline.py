"""The dedup stage on the real embedded broker, with the LLM double and seeds holding deliberate
near duplicates (examples/seeds-neardup.jsonl: 40 requests, then 20 rewordings of some).

The double gives a seed and its paraphrase the same metadata when their content words agree,
so decode repeats itself and dedup has something to drop. The worker is SIGKILLed mid-run,
and afterwards a fresh consumer group replays the whole `decoded` topic through dedup: a kept
instruction must never come back as a duplicate (of itself or of anything else).
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from agents.pipeline import CONSERVATION_TOPICS
from schemas import DuplicateInstruction, Instruction, Record, normalise_text
from streams.kafka.admin import client_options, topic_partitions
from streams.kafka.topic_io import follow_until, read_records
from streams.ops.conservation_audit import AUDIT_TOPICS, audit
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import BadLine, read_seeds
from streams.settings import Settings, overlay, settings_env
from tests.integration.reference import reference_run

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [s for s in read_seeds(ROOT / "examples" / "seeds-neardup.jsonl") if not isinstance(s, BadLine)]
CONTRAST_KINDS = ("answer", "judge")  # the double's names for contrast's calls


def run_settings(settings: Settings, llm_url: str) -> Settings:
    return overlay(
        settings,
        {
            "strong": {"base_url": llm_url, "model": "double-strong"},
            "target": {"base_url": llm_url, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2, "max_iterations": 2},
            "dedup": {"enabled": True, "embeddings": "on", "similarity_threshold": 0.9},
        },
    )


def contrast_calls(llm_url: str) -> int:
    with urllib.request.urlopen(llm_url.removesuffix("/v1") + "/stats", timeout=10) as response:
        by_kind = json.loads(response.read())["by_kind"]
    return sum(by_kind[k] for k in CONTRAST_KINDS)


async def all_records(settings: Settings, topics) -> list[tuple[str, Record]]:
    return [(t, r) async for t, r in read_records(settings, topics)]


async def test_near_duplicates_are_dropped_with_a_reason_and_survive_a_kill_and_a_full_replay(
    settings, llm_double, start_worker, processes, tmp_path
):
    settings = run_settings(settings, llm_double)
    assert len(SEEDS) == 60
    wanted = {s.id for s in SEEDS}
    worker = start_worker(settings, "worker-a")
    await feed_seeds(settings, SEEDS)

    # Kill the first worker as soon as dedup has kept something: its last decisions are not
    # committed yet, so the second worker decides them again.
    ledger = Ledger()
    kept_seen: list[str] = []

    def add(topic: str, record: Record) -> None:
        ledger.add(topic, record)
        if topic == "basic":
            kept_seen.append(record.id)

    assert await follow_until(settings, ("basic",), add, lambda: len(kept_seen) >= 5, 120), worker.tail()
    worker.kill()
    worker = start_worker(settings, "worker-b")

    def done() -> bool:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        return not ledger.incomplete(wanted)

    ledger = Ledger()
    finished = await follow_until(settings, CONSERVATION_TOPICS, ledger.add, done, 300)
    assert finished, f"unfinished: {[a.summary() for a in ledger.incomplete(wanted)][:5]}\n{worker.tail()}"
    assert worker.stop() == 0, worker.tail()

    # A fresh consumer group replays all of `decoded` through dedup alone; it rebuilds its
    # index from `basic` first, so every decision must come out as before.
    decoded = [r for _, r in await all_records(settings, ["decoded"])]
    before = await all_records(settings, ["basic", "duplicates"])
    replay = overlay(
        settings, {"worker": {"app_id": settings.worker.app_id + "-replay", "data_dir": str(tmp_path / "replay")}}
    )
    replayer = processes(
        "replay", [sys.executable, "-m", "streams.cli", "worker", "--stage", "dedup"], settings_env(replay)
    )
    expected = len(before) + len({r.id for r in decoded})
    for _ in range(240):
        after = await all_records(settings, ["basic", "duplicates"])
        assert replayer.popen.poll() is None, replayer.tail()
        if len(after) >= expected:
            break
        await asyncio.sleep(0.5)
    assert len(after) >= expected, f"the replay decided {len(after) - len(before)} of {expected - len(before)}"
    assert replayer.stop() == 0, replayer.tail()

    records = await all_records(settings, (*AUDIT_TOPICS, "basic"))
    kept = {r.root_id: r for t, r in records if t == "basic" and isinstance(r, Instruction)}
    dropped = {r.root_id: r for t, r in records if t == "duplicates" and isinstance(r, DuplicateInstruction)}

    # Every root ends in exactly one verdict, and ledger and audit agree.
    result = audit(records, wanted)
    assert result.ok, result.missing
    assert result.duplicates == len(dropped) and result.instructions == len({r.id for r in decoded}) == 120
    final = Ledger()
    for topic, record in records:
        final.add(topic, record)
    for seed in SEEDS:
        account = final.account(seed.id)
        assert account.complete and account.balanced, account.summary()

    # Never kept and dropped: not after the kill, not after the full replay.
    assert not set(kept) & set(dropped), sorted(set(kept) & set(dropped))[:3]
    copies = [r.id for t, r in records if t == "duplicates"]
    assert len(copies) >= 2 * len(dropped), "the replay sent each drop again (same id)"

    # Each drop names the kept instruction it repeats, and why.
    assert len(dropped) >= 28, f"only {len(dropped)} duplicates"  # 14 paraphrases x 2 instructions at least
    for d in dropped.values():
        assert d.duplicate_of in kept and d.duplicate_of != d.root_id
        assert d.duplicate_of_text == kept[d.duplicate_of].text
        if d.method == "exact":
            assert normalise_text(d.instruction) == normalise_text(d.duplicate_of_text) and d.similarity == 1.0
        else:
            assert d.similarity >= d.threshold == 0.9

    # One dedup consumer sees every new instruction: `decoded` has one partition, the others
    # the setting's count.
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        counts = await topic_partitions(admin, [settings.topic("decoded"), settings.topic("basic")])
    finally:
        await admin.close()
    assert counts == {settings.topic("decoded"): 1, settings.topic("basic"): 4}

    # Contrast paid for fewer instructions than it would have without dedup.
    without = await reference_run(overlay(settings, {"dedup": {"enabled": False}}), SEEDS)
    scored_without = sum(t == "scored" for t, _ in without.records)
    calls_without = scored_without * (2 + settings.pipeline.judge_passes)
    assert contrast_calls(llm_double) < calls_without
