"""`codeclm report` on a small run of the real pipeline (embedded broker, LLM double): its
figures against the records read independently from the topics, and an HTML page that needs
nothing from the network."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from html import escape
from pathlib import Path

import pytest

from agents.pipeline import CONSERVATION_TOPICS
from schemas import (
    AcceptedPair,
    DeadLetter,
    DuplicateInstruction,
    Instruction,
    LLMCall,
    Metadata,
    Record,
    RejectedInstruction,
    ScoredPair,
)
from streams.kafka.topic_io import follow_until, read_records
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import BadLine, read_seeds, seed_from_text
from streams.settings import overlay, settings_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
STAGES = {
    "encode": "encode",
    "decode": "decode",
    "rubrics": "decode",
    "tailor": "tailor",
    "answer_strong": "contrast",
    "answer_target": "contrast",
    "judge": "contrast",
}


def report_cli(settings, out: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "report", "--out", str(out), *flags],
        env={**settings_env(settings), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads((out / "report.json").read_text())


async def test_report_figures_match_the_records_and_the_page_is_self_contained(
    settings, llm_double, start_worker, tmp_path
):
    from aiokafka import AIOKafkaProducer

    from streams.kafka.admin import client_options, ensure_topics

    settings = overlay(
        settings,
        {
            "strong": {"base_url": llm_double, "model": "double-strong"},
            "target": {"base_url": llm_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 3},
        },
    )
    seeds = [s for s in read_seeds(ROOT / "examples" / "seeds.jsonl") if not isinstance(s, BadLine)][:8]
    # A paraphrase: the double gives it the same metadata, so decode makes the same instructions
    # again and dedup drops them; the report has duplicates and calls saved to show.
    paraphrase = seed_from_text(seeds[1].text.replace("How do I", "How can I", 1))
    assert paraphrase.id != seeds[1].id and paraphrase.text != seeds[1].text
    seeds.append(paraphrase)
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings.kafka))
    await producer.start()
    try:  # one unreadable seed record, so the report has a dead letter to show
        await producer.send_and_wait(settings.topic("seeds"), b'{"text": 42}')
    finally:
        await producer.stop()
    await feed_seeds(settings, seeds)
    worker = start_worker(settings)

    ledger = Ledger()
    wanted = {s.id for s in seeds}

    def done() -> bool:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        return not ledger.incomplete(wanted) and ledger.unattributed_dead == 1

    assert await follow_until(settings, CONSERVATION_TOPICS, ledger.add, done, timeout=300), worker.tail()

    # The records, read independently of the report's code, each id once per topic.
    topics = (
        "metadata",
        "decoded",
        "basic",
        "duplicates",
        "tailored",
        "scored",
        "retry",
        "accepted",
        "rejected",
        "deadletter",
    )
    by_topic: dict[str, dict[str, Record]] = {}
    async for topic, record in read_records(settings, topics):
        by_topic.setdefault(topic, {})[record.id] = record
    accepted = [r for r in by_topic.get("accepted", {}).values() if isinstance(r, AcceptedPair)]
    rejected = [r for r in by_topic.get("rejected", {}).values() if isinstance(r, RejectedInstruction)]
    retried = [r for r in by_topic.get("retry", {}).values() if isinstance(r, ScoredPair)]
    scored = [r for r in by_topic.get("scored", {}).values() if isinstance(r, ScoredPair)]
    dropped = [r for r in by_topic.get("duplicates", {}).values() if isinstance(r, DuplicateInstruction)]
    assert accepted and scored and dropped

    out = tmp_path / "report"
    done_cli, data = report_cli(settings, out)
    assert str(out / "report.html") in done_cli.stdout and str(out / "report.json") in done_cli.stdout

    o = data["overview"]
    assert (o["accepted"], o["rejected"], o["scored"]) == (len(accepted), len(rejected), len(scored))
    assert o["metadata"] == len(seeds) and o["dead_letters"] == len(by_topic["deadletter"]) >= 1

    # Per iteration, from each verdict's own iteration field.
    expected = {}
    for name, items in (("accepted", accepted), ("retried", retried), ("rejected", rejected)):
        for iteration, n in Counter(r.iteration for r in items).items():
            expected.setdefault(iteration, {"accepted": 0, "retried": 0, "rejected": 0})[name] = n
    got = {
        row["iteration"]: {k: row[k] for k in ("accepted", "retried", "rejected")} for row in data["iterations"]["rows"]
    }
    assert got == expected
    assert data["iterations"]["accepted_total"] == len(accepted)
    first = sum(1 for p in accepted if p.iteration == 1) / len(accepted)
    assert data["iterations"]["first_iteration_share"] == pytest.approx(first)

    # Gap histogram: every scored pair in one bin; kept = |gap| > threshold.
    gap = data["gap"]
    assert sum(b["count"] for b in gap["bins"]) == gap["total"] == len(scored)
    assert gap["kept"] == sum(1 for s in scored if abs(s.gap) > settings.pipeline.gap_threshold)
    assert gap["threshold"] == settings.pipeline.gap_threshold

    # Calls per stage: the calls carried by metadata, instructions and scored pairs, each record once.
    carriers: dict[str, Record] = {}
    for topic in ("metadata", "decoded", "basic", "tailored", "scored"):
        carriers.update({k: v for k, v in by_topic.get(topic, {}).items() if k not in carriers})
    calls: list[LLMCall] = [
        c for r in carriers.values() if isinstance(r, Metadata | Instruction | ScoredPair) for c in r.llm_calls
    ]
    per_stage = Counter(STAGES[c.purpose] for c in calls if not c.cached)
    cached = Counter(STAGES[c.purpose] for c in calls if c.cached)
    stages = {s["stage"]: s for s in data["stages"]}
    for stage in ("encode", "decode", "contrast", "tailor"):
        assert stages[stage]["calls"] == per_stage[stage], stage
        assert stages[stage]["cached_calls"] == cached[stage], stage
    assert stages["encode"]["calls"] == len(seeds)  # one encode call per seed with the double
    assert stages["contrast"]["latency_ms_p95"] >= stages["contrast"]["latency_ms_p50"] > 0
    assert o["llm_calls"] == sum(per_stage.values())

    # Cost per accepted pair by purpose: the mean of the pairs' own cost, and every call the
    # records carry (cached ones too, as the pairs count them) over the accepted pairs.
    per_pair = data["cost_per_pair"]
    pair_rows = {row["purpose"]: row for row in per_pair["pair"]["rows"]}
    run_rows = {row["purpose"]: row for row in per_pair["run"]["rows"]}
    assert per_pair["pair"]["pairs"] == per_pair["run"]["pairs"] == len(accepted)
    for purpose in STAGES:
        own = sum(p.cost_by_purpose[purpose].prompt_tokens for p in accepted if purpose in p.cost_by_purpose)
        assert pair_rows[purpose]["prompt_tokens"] == pytest.approx(own / len(accepted)), purpose
        paid = [c for c in calls if c.purpose == purpose]
        assert run_rows[purpose]["calls"] == pytest.approx(len(paid) / len(accepted)), purpose
        assert run_rows[purpose]["prompt_tokens"] == pytest.approx(
            sum(c.prompt_tokens for c in paid) / len(accepted)
        ), purpose
    assert per_pair["pair"]["total"]["calls"] == pytest.approx(
        sum(p.llm_calls for p in accepted) / len(accepted), abs=1e-3
    )
    # The run also pays for rejected roots and duplicates dropped after decode.
    assert per_pair["run"]["total"]["calls"] > per_pair["pair"]["total"]["calls"]
    assert sum(per_pair["prompt_sets"].values()) == len(accepted)
    assert "cost per accepted pair by stage:" in done_cli.stdout and "run/accepted: every LLM call" in done_cli.stdout

    # Distributions: the use cases of the seeds' metadata and of the accepted pairs.
    use_case = next(d for d in data["distributions"] if d["name"] == "use_case")
    assert sum(use_case["seeds"].values()) == len(seeds)
    assert sum(use_case["accepted"].values()) == len(accepted)
    assert 0 <= use_case["js_divergence"] <= 1

    # Duplicates dropped, and the calls they saved: dropped x contrast and tailor calls per root
    # that reached a verdict after contrast.
    dup = data["duplicates"]
    assert dup["dropped"] == o["duplicates"] == len(dropped)
    assert dup["by_method"] == dict(Counter(d.method for d in dropped))
    assert o["decoded_instructions"] == len(by_topic["decoded"]) == 3 * len(seeds)
    finished = {p.root_id for p in accepted} | {r.root_id for r in rejected}
    after_decode = sum(
        1
        for r in carriers.values()
        if isinstance(r, Instruction | ScoredPair) and r.root_id in finished
        for c in r.llm_calls
        if STAGES[c.purpose] in ("contrast", "tailor") and not c.cached
    )
    assert (dup["finished_roots"], dup["calls_after_decode"]) == (len(finished), after_decode)
    assert dup["calls_saved_estimate"] == pytest.approx(len(dropped) * after_decode / len(finished))
    assert dup["calls_saved_estimate"] > 0

    dead_rows = data["dead_letters"]
    assert sum(r["count"] for r in dead_rows) == len(by_topic["deadletter"])
    assert any(r["stage"] == "encode" and r["error_class"] == "MissingText" for r in dead_rows)
    assert all(isinstance(d, DeadLetter) for d in by_topic["deadletter"].values())

    # Embedding figures: computed when the neardup extra is installed, else null with the reason.
    from agents.dedup.embeddings import missing_packages

    diversity = data["diversity"]
    assert 0 < diversity["distinct_1"] <= 1 and 0 < diversity["distinct_2"] <= 1
    if missing_packages():
        assert diversity["embedding_dispersion"] is None and diversity["near_duplicate_rate"] is None
        assert diversity["embeddings_note"].startswith("not computed: install the neardup extra")
    else:
        assert 0 <= diversity["embedding_dispersion"] <= 2 and 0 <= diversity["near_duplicate_rate"] <= 1

    # The page: plots inline, nothing fetched from anywhere.
    page = (out / "report.html").read_text()
    assert page.count("<svg") >= 5  # use cases, skills, gap, iterations, stages
    near = [d for d in dropped if d.method != "exact"] or dropped
    least_similar = min(near, key=lambda d: (d.similarity, d.id))  # the first example shown
    assert escape(" ".join(least_similar.instruction.split())[:40]) in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<script|<link|@import|url\((?!#)", page, re.I)  # url(#id): a clip path in the page
    assert "Score gap" in page and f"{len(accepted):,}" in page
    assert "LLM cost per accepted pair by stage" in page

    # A window before the run holds nothing.
    _, empty = report_cli(settings, tmp_path / "empty", "--until", "2001-01-01T00:00:00Z", "--no-embeddings")
    assert empty["overview"]["accepted"] == 0 and empty["gap"]["total"] == 0
    assert empty["window"]["until"] == 978307200.0
