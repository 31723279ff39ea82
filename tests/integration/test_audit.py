"""`codeclm trace` and `codeclm audit` against a run on the real broker."""

from __future__ import annotations

import pytest

from agents.pipeline import CONSERVATION_TOPICS
from streams.kafka.topic_io import follow_until
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import seed_from_text
from streams.settings import overlay
from tests.integration.commands import codeclm

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


async def test_audit_holds_after_a_run_and_names_what_is_missing(settings, llm_double, start_worker):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 3, "max_iterations": 3},
            "worker": {"http_enabled": False},
        },
    )
    worker = start_worker(settings)
    seeds = [seed_from_text(f"Draft onboarding notes for role {i}.") for i in range(3)]
    await feed_seeds(settings, seeds)
    ledger = Ledger()
    wanted = {s.id for s in seeds}
    assert await follow_until(
        settings,
        CONSERVATION_TOPICS,
        ledger.add,
        lambda: not ledger.incomplete(wanted),
        120,
    ), worker.tail()
    assert worker.stop() == 0

    audit = codeclm(settings, "audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "3 seeds" in audit.stdout and "9 instructions" in audit.stdout and "conservation holds" in audit.stdout

    trace = codeclm(settings, "trace", seeds[0].id)
    assert trace.returncode == 0, trace.stderr
    account = ledger.account(seeds[0].id)
    assert trace.stdout.startswith(f"seed {seeds[0].id}: {seeds[0].text}")
    assert "metadata meta-" in trace.stdout and trace.stdout.count("  instruction ") == 3
    for pair in account.accepted.values():
        assert f"accepted {pair.id}" in trace.stdout
    assert codeclm(settings, "trace", "--text", seeds[0].text).stdout == trace.stdout
    assert codeclm(settings, "trace", "seed-00000000000000000000").returncode == 1

    # A seed fed while no worker runs is not accounted for: the audit says so, and fails.
    late = seed_from_text("Nobody will process this one.")
    await feed_seeds(settings, [late])
    audit = codeclm(settings, "audit")
    assert audit.returncode == 1
    assert f"missing: {late.id}: no metadata and no dead letter" in audit.stdout
    assert codeclm(settings, "audit", "--seed", seeds[1].id).returncode == 0
