"""Metadata in, and metadata augmentation, on the real embedded broker with the LLM double:
`codeclm feed --metadata` puts a user's metadata on the metadata topic and the pipeline makes
accepted pairs whose lineage starts at it; `codeclm augment` makes only new combinations (a
second run makes none, and asks the strong model nothing again) and `codeclm audit` accounts
for every one of them."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from agents.pipeline import CONSERVATION_TOPICS
from schemas import AcceptedPair, DeadLetter, Metadata, MetadataSummary, Record, metadata_id_for
from streams.kafka.topic_io import follow_until, read_records
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.metadata_files import read_metadata
from streams.settings import Settings, overlay
from tests.integration.commands import codeclm as cli

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


def with_double(settings: Settings, llm_url: str) -> Settings:
    return overlay(
        settings,
        {
            "strong": {"base_url": llm_url, "model": "double-strong"},
            "target": {"base_url": llm_url, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": 2, "max_iterations": 2},
            "dedup": {"embeddings": "off"},
            "worker": {"http_enabled": False},
        },
    )


async def topic(settings: Settings, *names: str) -> list[tuple[str, Record]]:
    return [(t, r) async for t, r in read_records(settings, names)]


async def until_done(settings: Settings, worker, roots: set[str]) -> Ledger:
    ledger = Ledger()

    def done() -> bool:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        return not ledger.incomplete(roots)

    finished = await follow_until(settings, CONSERVATION_TOPICS, ledger.add, done, timeout=240)
    assert finished, f"unfinished: {[a.summary() for a in ledger.incomplete(roots)]}\n{worker.tail()}"
    return ledger


def double_calls(llm_url: str, kind: str) -> int:
    with urllib.request.urlopen(llm_url.removesuffix("/v1") + "/stats", timeout=10) as response:
        return json.loads(response.read())["by_kind"][kind]


async def test_fed_metadata_yields_accepted_pairs_whose_lineage_starts_at_it(
    settings, llm_double, start_worker, tmp_path
):
    settings = with_double(settings, llm_double)
    path = tmp_path / "metadata.csv"
    path.write_bytes(
        "\ufeffuse_case,skills,team\r\n"
        '"email writing","persuasive writing; business etiquette",sales\r\n'
        '"report writing, quarterly","[""data analysis"", ""executive summary""]",finance\r\n'
        "\r\n"
        'code review,"python, security review",eng\r\n'
        '"Email  Writing","business etiquette; persuasive writing",sales\r\n'  # the first again
        ",no use case,x\r\n"
        "no skills,,x\r\n".encode()
    )
    first = cli(settings, "feed", "--metadata", str(path))
    assert first.returncode == 0, first.stderr
    assert "metadata.csv:7: bad line: the use case is empty" in first.stderr
    assert "metadata.csv:8: bad line: no skills" in first.stderr
    assert "fed 3 metadata records" in first.stdout and "1 already fed" in first.stdout
    assert "2 bad lines" in first.stdout

    fed = [m for m in read_metadata(path) if isinstance(m, Metadata)]
    roots = {m.id for m in fed}
    assert len(roots) == 3 and metadata_id_for("email writing", ("business etiquette", "persuasive writing")) in roots
    on_topic = [r for _, r in await topic(settings, "metadata")]
    assert sorted(r.id for r in on_topic) == sorted(roots)
    dead = [r for _, r in await topic(settings, "deadletter")]
    assert sorted(d.error_class for d in dead if isinstance(d, DeadLetter)) == ["EmptySkills", "EmptyUseCase"]

    again = cli(settings, "feed", "--metadata", str(path))
    assert "fed 0 metadata records" in again.stdout and "4 already fed" in again.stdout

    worker = start_worker(settings)
    ledger = await until_done(settings, worker, roots)
    pairs = [p for a in ledger.seeds.values() for p in a.accepted.values()]
    assert pairs, "the double's scores give accepted pairs"
    by_id: dict[str, Metadata] = {}
    for m in fed:
        by_id.setdefault(m.id, m)  # the first of a repeat is the one fed
    for pair in pairs:
        assert isinstance(pair, AcceptedPair) and pair.seed_id in roots
        assert pair.lineage[0] == pair.seed_id and pair.lineage[1] == pair.root_id  # nothing before the metadata
        assert pair.seed_text == "" and pair.metadata == by_id[pair.seed_id].metadata
        assert pair.attributes == by_id[pair.seed_id].attributes  # the row's other columns, on the sink
    for root in roots:
        assert ledger.account(root).balanced, ledger.account(root).summary()

    audit = cli(settings, "audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "0 seeds and 3 metadata roots" in audit.stdout and "conservation holds" in audit.stdout
    trace = cli(settings, "trace", pairs[0].seed_id)
    assert trace.returncode == 0 and trace.stdout.startswith(f"metadata root {pairs[0].seed_id}: fed as metadata")
    assert f"accepted {pairs[0].id}" in trace.stdout
    assert worker.stop() == 0


METADATA = [
    ("email writing", ("persuasive writing", "business etiquette")),
    ("cover letter writing", ("persuasive writing", "self presentation")),
    ("speech writing", ("persuasive writing", "stage presence")),
    ("sql tuning", ("query planning", "indexing")),
    ("schema design", ("indexing", "normalisation")),
]


def root(use_case: str, skills: tuple[str, ...]) -> Metadata:
    record_id = metadata_id_for(use_case, skills)
    summary = MetadataSummary(use_case=use_case, skills=skills)
    return Metadata(id=record_id, seed_id=record_id, parent_id=None, seed_text="", metadata=summary)


async def test_augmentation_makes_only_new_combinations_once_and_audit_accounts_for_each(
    settings, llm_double, start_worker, tmp_path
):
    settings = with_double(settings, llm_double)
    fed = [root(u, s) for u, s in METADATA]
    await feed_seeds(settings, fed, topic="metadata")

    made = cli(settings, "augment", "--count", "4")
    assert made.returncode == 0, made.stderr
    assert "0 augmented metadata already on" in made.stdout and "made 4 augmented metadata records" in made.stdout
    again = cli(settings, "augment", "--count", "4")
    assert again.returncode == 0 and "the target is met: nothing to make" in again.stdout

    # 8 combinations share a skill: the rule made 4; of the other 4 the double says No to 2
    # (its verdicts are a hash of the combination), so a target of 7 ends 1 short.
    checked = cli(settings, "augment", "--count", "7", "--check", "model")
    assert checked.returncode == 0, checked.stderr
    assert "the strong model checked 4: 2 made sense, 2 refused" in checked.stdout
    assert "made 2 augmented metadata records" in checked.stdout and "1 short of the target" in checked.stdout
    assert double_calls(llm_double, "augment") == 4
    rerun = cli(settings, "augment", "--count", "7", "--check", "model")
    assert rerun.returncode == 0 and "made 0 augmented metadata records" in rerun.stdout
    assert "the strong model checked" not in rerun.stdout
    assert double_calls(llm_double, "augment") == 4  # a refused combination is not asked again

    records = await topic(settings, "metadata", "deadletter")
    metadata = [r for t, r in records if t == "metadata" and isinstance(r, Metadata)]
    assert len({r.id for r in metadata}) == len(metadata)  # no combination made twice, whatever the reruns
    augmented = [r for r in metadata if r.augmented_from]
    refused = [r for t, r in records if isinstance(r, DeadLetter) and r.stage == "augment"]
    assert (len(augmented), len(refused)) == (6, 2)
    assert {d.error_class for d in refused} == {"NotSensible"}
    keys = {(m.metadata.use_case, frozenset(m.metadata.skills)) for m in metadata}
    assert len(keys) == len(metadata)  # every augmented record is a combination never seen before
    fed_ids = {m.id for m in fed}
    for record in augmented:
        assert set(record.augmented_from) <= fed_ids and record.seed_id == record.id and record.parent_id is None
    assert sum(len(r.llm_calls) for r in augmented) == 2  # the two the model said Yes to carry their check

    worker = start_worker(settings)
    await until_done(settings, worker, fed_ids | {r.id for r in augmented})
    assert worker.stop() == 0
    audit = cli(settings, "audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    n = len(augmented)
    assert f"0 seeds and {len(fed) + n} metadata roots" in audit.stdout
    assert (
        f"augmentation: {n} metadata made and fed to decode: {n} decoded, {n} complete, 0 dead-lettered whole; "
        f"{len(refused)} combinations refused by the strong model" in audit.stdout
    )
    report = cli(settings, "report", "--out", str(tmp_path / "report"), "--no-embeddings")
    assert report.returncode == 0, report.stderr
    assert f"augmentation: {n} augmented metadata" in report.stdout and "use case x skill pairs" in report.stdout
