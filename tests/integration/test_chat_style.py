"""The pipeline on the real embedded broker with the LLM double in chat style: answers formatted
as strong chat models write them (preambles, bold titles, closing remarks, commentary) around
instructions that hold code fences, `__dunder__` names, `**`, maths, quotes and input blocks.
Every instruction on `decoded`, `basic`, `tailored` and the sink must be exactly what the double
meant, recomputed from the record chain with the real prompt builders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agents import decode, encode, tailor
from agents.pipeline import CONSERVATION_TOPICS
from agents.prompt_sets import load_prompt_set
from llm.double import chat_decode_instructions, chat_tailored_instruction, classify_text, encode_fields
from schemas import (
    AcceptedPair,
    DuplicateInstruction,
    Instruction,
    Metadata,
    MetadataSummary,
    Record,
    RejectedInstruction,
    ScoredPair,
)
from streams.kafka.broker import free_port
from streams.kafka.topic_io import follow_until, read_records
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import BadLine, read_seeds
from streams.settings import overlay

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PAPER = load_prompt_set("paper")
N = 3  # instructions per metadata
TOPICS = ("metadata", "decoded", "basic", "tailored", "scored", "accepted", "rejected", "duplicates", "deadletter")


@pytest.fixture
def chat_double(processes) -> str:
    """The LLM double in its own process, started with `--style chat`."""
    from streams.demo import wait_for_http

    port = free_port()
    processes("llm-double", [sys.executable, "-m", "llm.double", "--port", str(port), "--style", "chat"])
    url = f"http://127.0.0.1:{port}/v1"
    wait_for_http(url + "/models", 30)
    return url


def _text(messages: list[dict[str, str]]) -> str:
    return classify_text(messages)[1]


async def test_chat_formatted_answers_give_the_instructions_verbatim(settings, chat_double, start_worker):
    settings = overlay(
        settings,
        {
            "strong": {"base_url": chat_double, "model": "double-strong"},
            "target": {"base_url": chat_double, "model": "double-target"},
            "pipeline": {"instructions_per_metadata": N, "max_iterations": 3},
        },
    )
    assert settings.pipeline.prompts == "paper"  # the default prompt set
    worker = start_worker(settings)
    seeds = [s for s in read_seeds(ROOT / "examples" / "seeds.jsonl") if not isinstance(s, BadLine)][:6]
    await feed_seeds(settings, seeds)

    ledger = Ledger()
    wanted = {s.id for s in seeds}

    def add(topic: str, record: Record) -> None:
        if topic in CONSERVATION_TOPICS:
            ledger.add(topic, record)

    def done() -> bool:
        assert worker.popen.poll() is None, f"worker died:\n{worker.tail()}"
        return not ledger.incomplete(wanted)

    finished = await follow_until(settings, CONSERVATION_TOPICS, add, done, timeout=420)
    assert finished, f"unfinished seeds: {[a.summary() for a in ledger.incomplete(wanted)]}\n{worker.tail()}"
    for seed in seeds:
        account = ledger.account(seed.id)
        assert account.seed_dead_reason is None and not account.dead, account.summary()
        assert account.balanced, account.summary()

    # Every record of the run, read to the end of each topic now that every seed is done.
    records: dict[str, list[Record]] = {topic: [] for topic in TOPICS}
    async for topic, record in read_records(settings, TOPICS):
        records[topic].append(record)
    assert not records["deadletter"], records["deadletter"]
    metadata = {m.id: m for m in records["metadata"] if isinstance(m, Metadata)}
    scored = {s.id: s for s in records["scored"] if isinstance(s, ScoredPair)}
    assert len(metadata) == len(seeds)

    # encode: the metadata the double meant for each seed's real prompt.
    for meta in metadata.values():
        prompt = encode.build_prompt(meta.seed_text, max_skills=settings.pipeline.max_skills, prompts=PAPER)
        assert meta.metadata == MetadataSummary(**encode_fields(_text(prompt)))

    # decode: each basic instruction is the index-th one the double meant for its metadata's prompt.
    meant: dict[str, str] = {}  # instruction id -> the text the double meant
    for inst in records["decoded"]:
        assert isinstance(inst, Instruction) and inst.iteration == 1
        prompt = decode.build_prompt(metadata[inst.metadata_id].metadata, n=N, prompts=PAPER)
        meant[inst.id] = chat_decode_instructions(_text(prompt))[inst.index]
    assert len(meant) == N * len(metadata)

    # tailor: the parent's meant text and the action applied give the prompt, and so the text meant.
    tailored = sorted((t for t in records["tailored"] if isinstance(t, Instruction)), key=lambda t: t.iteration)
    roots: dict[str, str] = {}  # tailored id -> its root's meant text
    for inst in tailored:
        parent = scored[inst.parent_id].instruction
        assert inst.applied_action in inst.actions and inst.iteration == parent.iteration + 1
        prompt = tailor.build_prompt(meant[parent.id], inst.applied_action, prompts=PAPER)
        meant[inst.id] = chat_tailored_instruction(_text(prompt))
        roots[inst.id] = meant[inst.root_id]

    def verbatim(where: str, got: str, instruction_id: str) -> None:
        assert got == meant[instruction_id], f"{where} {instruction_id}:\ngot:\n{got}\nmeant:\n{meant[instruction_id]}"

    for inst in [*records["decoded"], *records["basic"], *tailored]:
        verbatim("instruction", inst.text, inst.id)
    for pair in scored.values():
        verbatim("scored", pair.instruction.text, pair.instruction.id)
        assert pair.strong_answer.startswith("## ") and pair.target_answer.startswith("## ")
    accepted = [p for p in records["accepted"] if isinstance(p, AcceptedPair)]
    for pair in accepted:
        verbatim("accepted", pair.instruction, scored[pair.parent_id].instruction.id)
    for rejected in records["rejected"]:
        assert isinstance(rejected, RejectedInstruction)
        verbatim("rejected", rejected.instruction, scored[rejected.parent_id].instruction.id)
    for duplicate in records["duplicates"]:
        assert isinstance(duplicate, DuplicateInstruction)
        assert duplicate.instruction in {meant[i.id] for i in records["decoded"]}

    # The run went through every stage, and what it kept holds what strong models write.
    assert accepted, "the double's scores accept some pairs"
    assert tailored, "some instructions went through tailor"
    assert any(t.iteration == 3 for t in tailored), "some were tailored twice"
    travelled = [t for t in tailored if "\n" in t.text]
    assert travelled, "some tailored instructions carry an input block"
    for inst in travelled:
        assert inst.text.split("\n")[1:] == roots[inst.id].split("\n")[1:], "the input block travels unchanged"
    kept = [p.instruction for p in accepted] + [t.text for t in tailored]
    for mark in ("```", "**", "__", "$"):
        assert any(mark in text for text in kept), f"no accepted or tailored instruction holds {mark}"
