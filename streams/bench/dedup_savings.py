"""`codeclm bench-dedup`: what the dedup stage saves. The same seeds with deliberate near
duplicates (examples/seeds-neardup.jsonl: 40 requests, then 20 rewordings of some of them) go
through the whole pipeline on the embedded broker with the LLM double three times: dedup off,
the exact pass only, and exact + embeddings. The figures are the LLM calls each run made (the
double's own count), the instructions dropped by method, and the calls saved. The double
gives a reworded seed (the same content words) the same use case and skill set, its skills in
an order of the seed's own, and decodes that metadata to the same tasks in other words: near
duplicates, as from a sampling model, which only the embedding pass catches (the exact pass
catches the rewordings whose skills came in the same order). Then the embedding pass alone
on the seed texts as if they were instructions, and the embedder's speed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp

from agents.pipeline import CONSERVATION_TOPICS
from schemas import DuplicateInstruction, Instruction, Record, Seed
from streams.bench.stack import ALL_STAGES, Double, Stack, double_stats, stop_group, wait_until_consuming
from streams.kafka.topic_io import follow_until
from streams.ops.feeder import feed_seeds
from streams.ops.ledger import Ledger
from streams.ops.seed_files import BadLine, read_seeds
from streams.settings import Settings, overlay

SEEDS_FILE = Path(__file__).resolve().parents[2] / "examples" / "seeds-neardup.jsonl"
CONTRAST_KINDS = ("answer", "judge")  # the double's names for contrast's calls
MODES = ("off", "exact", "on")  # dedup off, the exact pass only, exact + embeddings


@dataclass
class Options:
    seeds_file: Path = SEEDS_FILE
    instructions_per_metadata: int = 3
    max_iterations: int = 2
    threshold: float = 0.9
    latency_ms: float = 20.0
    timeout_s: float = 600.0
    bootstrap: str | None = None
    work_dir: Path | None = None


@dataclass
class RunFigures:
    dedup: str  # one of MODES
    seconds: float
    llm_calls: int
    llm_calls_by_kind: dict[str, int]
    instructions: int  # basic instructions decode made (the decoded topic)
    kept: int  # went on to contrast
    dropped: dict[str, int] = field(default_factory=dict)  # by method
    accepted: int = 0
    rejected: int = 0

    @property
    def contrast_calls(self) -> int:
        return sum(self.llm_calls_by_kind.get(k, 0) for k in CONTRAST_KINDS)


def load_seeds(path: Path) -> list[Seed]:
    return [s for s in read_seeds(path) if not isinstance(s, BadLine)]


def run_settings(opts: Options, bootstrap: str, double: Double, work: Path, mode: str) -> Settings:
    run = uuid.uuid4().hex[:6]
    return overlay(
        Settings(),
        {
            "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": f"dedup{run}."},
            "strong": {"base_url": double.url, "model": "double-strong"},
            "target": {"base_url": double.url, "model": "double-target"},
            "pipeline": {
                "instructions_per_metadata": opts.instructions_per_metadata,
                "max_iterations": opts.max_iterations,
            },
            "dedup": {
                "enabled": mode != "off",
                "embeddings": "on" if mode == "on" else "off",
                "similarity_threshold": opts.threshold,
            },
            "worker": {"app_id": f"dedup{run}", "data_dir": str(work / f"dedup{run}"), "http_enabled": False},
        },
    )


async def pipeline_run(stack: Stack, opts: Options, bootstrap: str, seeds: list[Seed], mode: str) -> RunFigures:
    """One run on a fresh set of topics and a fresh double (its call count is this run's)."""
    double = stack.double(f"double-{mode}", opts.latency_ms, opts.latency_ms / 4)
    settings = run_settings(opts, bootstrap, double, stack.work, mode)
    workers = stack.workers(settings, 1)
    await wait_until_consuming(settings, ALL_STAGES, 1, workers)
    started = time.monotonic()
    await feed_seeds(settings, seeds)
    ledger = Ledger()
    wanted = {s.id for s in seeds}
    dropped = {"exact": 0, "embedding": 0}
    kept: set[str] = set()

    def on_record(topic: str, record: Record) -> None:
        first = f"{topic}:{record.id}" not in ledger.seen_ids
        ledger.add(topic, record)
        if first and isinstance(record, DuplicateInstruction):
            dropped[record.method] += 1

    def done() -> bool:
        if workers[0].poll() is not None:
            raise RuntimeError(f"the worker exited; see {workers[0].log}")
        return not ledger.incomplete(wanted)

    if not await follow_until(settings, CONSERVATION_TOPICS, on_record, done, opts.timeout_s):
        raise RuntimeError(f"seeds unfinished after {opts.timeout_s:.0f}s: {len(ledger.incomplete(wanted))}")
    seconds = time.monotonic() - started
    async with aiohttp.ClientSession() as session:
        stats = await double_stats(session, double)
    stop_group(workers[0].process)
    accounts = [ledger.account(s) for s in wanted]
    for account in accounts:
        kept |= account.generated - set(account.duplicates)
    return RunFigures(
        dedup=mode,
        seconds=round(seconds, 1),
        llm_calls=int(stats["calls"]),
        llm_calls_by_kind={k: int(v) for k, v in stats["by_kind"].items()},
        instructions=sum(len(a.generated) for a in accounts),
        kept=len(kept),
        dropped=dropped,
        accepted=sum(len(a.accepted) for a in accounts),
        rejected=sum(len(a.rejected) for a in accounts),
    )


@dataclass
class OfflinePass:
    texts: int
    kept: int
    dropped: dict[str, int]
    examples: list[tuple[float, str, str]]  # (similarity, dropped text, kept text)
    ms_per_text: float  # embedding, batches of 16, this machine


async def offline_pass(texts: list[str], threshold: float) -> OfflinePass:
    """The dedup decisions on `texts` treated as instructions, with the real embedder."""
    from agents.dedup import Deduplicator
    from agents.dedup.embeddings import MiniLMEmbedder

    model = MiniLMEmbedder()
    model.embed(texts[:16])  # warm up
    started = time.perf_counter()
    for start in range(0, len(texts), 16):
        model.embed(texts[start : start + 16])
    ms = (time.perf_counter() - started) * 1000 / max(1, len(texts))
    dedup = Deduplicator(embed=model.embed, threshold=threshold)
    examples = []
    for n, text in enumerate(texts):
        inst = _as_instruction(n, text)
        emit = await dedup.decide(inst)
        if isinstance(emit.record, DuplicateInstruction):
            examples.append((emit.record.similarity, text, emit.record.duplicate_of_text))
    return OfflinePass(len(texts), dedup.tally.kept, dict(dedup.tally.dropped), examples, round(ms, 2))


def _as_instruction(n: int, text: str) -> Instruction:
    from schemas import MetadataSummary, derive_id

    root = derive_id("inst", "bench-dedup", n)
    return Instruction(
        id=root,
        seed_id="seed-bench",
        parent_id="meta-bench",
        root_id=root,
        metadata_id="meta-bench",
        iteration=1,
        index=n,
        siblings=len(text) or 1,
        text=text,
        metadata=MetadataSummary(use_case="bench", skills=()),
        rubrics=(),
        actions=(),
    )


async def bench(opts: Options) -> dict[str, Any]:
    seeds = load_seeds(opts.seeds_file)
    with TemporaryDirectory(prefix="codeclm-bench-dedup-") as tmp, ExitStack() as exits:
        stack = Stack(exits, opts.work_dir or Path(tmp))
        bootstrap = await asyncio.to_thread(stack.broker, 4, opts.bootstrap)
        runs = {mode: await pipeline_run(stack, opts, bootstrap, seeds, mode) for mode in MODES}
    offline = await offline_pass([s.text for s in seeds], opts.threshold)
    return {"seeds": len(seeds), **runs, "offline": offline}


def _saved(base: int, now: int) -> str:
    return f"{base - now} ({100 * (base - now) / max(1, base):.1f}%)"


def render(figures: dict[str, Any], opts: Options) -> str:
    off: RunFigures = figures["off"]
    runs: list[RunFigures] = [figures[mode] for mode in MODES]
    on: RunFigures = figures["on"]
    offline: OfflinePass = figures["offline"]
    lines = [
        f"dedup benchmark: {figures['seeds']} seeds ({opts.seeds_file.name}), {opts.instructions_per_metadata} "
        f"instructions per metadata, {opts.max_iterations} iterations, LLM double at {opts.latency_ms:g} ms, "
        f"threshold {opts.threshold:g}",
        "",
        f"{'dedup':<18} {'LLM calls':>9} {'saved':>13} {'contrast':>9} {'decoded':>8} {'kept':>5} {'exact':>6} "
        f"{'near':>5} {'accepted':>9} {'rejected':>9} {'seconds':>8}",
    ]
    labels = {"off": "off", "exact": "exact only", "on": "exact + embeddings"}
    for r in runs:
        lines.append(
            f"{labels[r.dedup]:<18} {r.llm_calls:>9} {_saved(off.llm_calls, r.llm_calls):>13} {r.contrast_calls:>9} "
            f"{r.instructions:>8} {r.kept:>5} {r.dropped.get('exact', 0):>6} {r.dropped.get('embedding', 0):>5} "
            f"{r.accepted:>9} {r.rejected:>9} {r.seconds:>8}"
        )
    exact = figures["exact"]
    lines += [
        "",
        f"calls saved by exact + embeddings: {_saved(off.llm_calls, on.llm_calls)} of {off.llm_calls}, of which "
        f"the embedding pass {exact.llm_calls - on.llm_calls}; contrast calls saved: "
        f"{_saved(off.contrast_calls, on.contrast_calls)} of {off.contrast_calls}",
        f"instructions dropped: {sum(on.dropped.values())} of {on.instructions} "
        f"(exact {on.dropped.get('exact', 0)}, embedding {on.dropped.get('embedding', 0)})",
        "",
        f"the embedding pass on the {offline.texts} seed texts as instructions: kept {offline.kept}, dropped "
        f"exact {offline.dropped['exact']}, embedding {offline.dropped['embedding']}; "
        f"embedder {offline.ms_per_text:.1f} ms per text (batches of 16, this machine)",
    ]
    for similarity, dropped, kept in sorted(offline.examples)[:3]:
        lines.append(f"  least similar drop {similarity:.3f}: {dropped!r} ~ {kept!r}")
    return "\n".join(lines)


def as_json(figures: dict[str, Any]) -> dict[str, Any]:
    off = figures["off"]
    runs = {mode: {**asdict(figures[mode]), "contrast_calls": figures[mode].contrast_calls} for mode in MODES}
    return {
        "seeds": figures["seeds"],
        **runs,
        "calls_saved": {mode: off.llm_calls - figures[mode].llm_calls for mode in MODES[1:]},
        "calls_saved_ratio": {
            mode: round((off.llm_calls - figures[mode].llm_calls) / max(1, off.llm_calls), 4) for mode in MODES[1:]
        },
        "offline": asdict(figures["offline"]),
    }
