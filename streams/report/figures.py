"""The figures of a run, computed from its records. Pure: records in, a `Report` out, no I/O.

Topics may hold replayed copies of a record after a crash (ids are deterministic), so every
record is counted once per topic by id. Labels of use cases, skills and the rich metadata
fields come from an LLM; they are compared once case and runs of white space are ignored.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from agents.cost import Price
from agents.pipeline import LLM_STAGES, ROLE_OF_PURPOSE, STAGE_OF_PURPOSE
from schemas import (
    AcceptedPair,
    DeadLetter,
    DuplicateInstruction,
    Instruction,
    LLMCall,
    Metadata,
    MetadataSummary,
    Record,
    RejectedInstruction,
    ScoredPair,
    normalise_text,
)
from schemas.topics import TOPICS
from streams.ops.dead_letter_replay import reason_kind
from streams.report.coverage import AugmentationCoverage, augmentation_coverage
from streams.report.pair_cost import PairCostFigures, pair_cost_figures

if TYPE_CHECKING:
    from streams.report.breakdown import Breakdown

# Topics the report reads, in pipeline order (those the broker's topic list lacks are skipped).
REPORT_TOPICS = tuple(t.name for t in TOPICS)
# Stages whose calls a root costs once decode has made it (what a dropped duplicate saves).
AFTER_DECODE = frozenset({"contrast", "tailor"})
# Topics whose records carry the LLM calls that made them; the same id on two of them (an
# instruction on `decoded` and again on `basic`) is the same calls, counted once.
CALL_TOPICS = ("metadata", "decoded", "basic", "tailored", "scored")

PAPER_FIRST_ITERATION_SHARE = 0.70  # CodecLM: over 70% of kept pairs come from iteration 1
NOT_COMPUTED_EMBEDDINGS = "not computed: install the neardup extra"
RICH_FIELDS = ("domain", "difficulty", "format_constraints")
DUPLICATE_EXAMPLES = 5
EXACT_EXAMPLES = 3
NONE_LABEL = "(none)"

Embed = Callable[[list[str]], Any]  # texts -> ndarray (n, d) of L2-normalised rows


@dataclass
class Distribution:
    """One metadata field in the seeds against the accepted pairs."""

    name: str
    seeds: dict[str, int]
    accepted: dict[str, int]
    js_divergence: float | None  # None when either side has no labels


@dataclass
class Diversity:
    instructions: int
    distinct_1: float | None
    distinct_2: float | None
    embedding_dispersion: float | None  # mean pairwise cosine distance
    near_duplicate_rate: float | None  # share whose nearest other has cosine >= threshold
    similarity_threshold: float
    embeddings_note: str | None = None  # why the embedding figures are missing
    nearest_similarity: list[float] | None = None  # per instruction, for the plot


@dataclass
class GapHistogram:
    threshold: float
    bins: list[dict[str, float]]  # {"lo", "hi", "count"}; lo <= gap < hi
    total: int
    kept: int  # |gap| > threshold
    mean_gap: float | None


@dataclass
class IterationRow:
    iteration: int
    accepted: int = 0
    retried: int = 0
    rejected: int = 0


@dataclass
class Iterations:
    rows: list[IterationRow]
    accepted_total: int
    first_iteration_share: float | None
    paper_first_iteration_share: float = PAPER_FIRST_ITERATION_SHARE


@dataclass
class Duplicates:
    dropped: int
    by_method: dict[str, int]
    finished_roots: int  # roots that reached a verdict after contrast (accepted or rejected)
    calls_after_decode: int  # contrast and tailor calls those roots spent (not cached)
    calls_per_finished_root: float | None
    calls_saved_estimate: float | None  # dropped x calls_per_finished_root
    estimate_note: str = "estimate: duplicates dropped x contrast and tailor calls per finished root in this run"
    # What to read when judging the threshold (see duplicate_examples).
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StageCost:
    stage: str
    calls: int = 0  # calls that reached the model (not answered from the cache)
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms_mean: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    usd: float | None = None  # what its calls cost, where the endpoints have prices


@dataclass
class DeadLetterRow:
    stage: str
    error_class: str
    reason: str
    count: int


@dataclass
class Overview:
    seeds: int
    metadata: int
    decoded_instructions: int  # basic instructions decode made (kept or dropped as duplicates)
    basic_instructions: int  # those that went on to contrast
    scored: int
    accepted: int
    rejected: int
    duplicates: int
    dead_letters: int
    llm_calls: int
    first_record_at: float | None
    last_record_at: float | None


@dataclass
class Report:
    overview: Overview
    distributions: list[Distribution]
    rich_metadata: bool
    diversity: Diversity
    gap: GapHistogram
    iterations: Iterations
    duplicates: Duplicates
    stages: list[StageCost]
    dead_letters: list[DeadLetterRow]
    # per accepted pair by purpose: the pairs' own cost, and every call of the run / accepted
    cost_per_pair: PairCostFigures
    window: dict[str, float | None] = field(default_factory=dict)
    breakdown: Breakdown | None = None  # by a seed attribute, when asked for (--by)
    # what metadata augmentation added to the coverage (None: no augmented metadata in the run)
    augmentation: AugmentationCoverage | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.augmentation is not None:
            data["augmentation"]["added"] = asdict(self.augmentation.added)
        data["diversity"].pop("nearest_similarity")  # one number per instruction: the plot's, not the summary's
        for basis in ("pair", "run"):
            cost = getattr(self.cost_per_pair, basis)
            for row in data["cost_per_pair"][basis]["rows"]:
                row["prompt_share"] = cost.prompt_share(row["purpose"])
        return data


# -- records --------------------------------------------------------------------------------


def unique_by_topic(
    records: Iterable[tuple[str, Record]], since: float | None = None, until: float | None = None
) -> dict[str, dict[str, Record]]:
    """topic -> id -> record, each id once (the first copy), within [since, until) of created_at."""
    out: dict[str, dict[str, Record]] = {}
    for topic, record in records:
        if since is not None and record.created_at < since:
            continue
        if until is not None and record.created_at >= until:
            continue
        out.setdefault(topic, {}).setdefault(record.id, record)
    return out


def _of(by_topic: dict[str, dict[str, Record]], topic: str, kind: type) -> list[Any]:
    return [r for r in by_topic.get(topic, {}).values() if isinstance(r, kind)]


# -- distributions -------------------------------------------------------------------------


def js_divergence(p: dict[str, int], q: dict[str, int]) -> float | None:
    """Jensen-Shannon divergence, base 2 (0: same distribution, 1: disjoint), of two count tables."""
    p_total, q_total = sum(p.values()), sum(q.values())
    if p_total <= 0 or q_total <= 0:
        return None
    divergence = 0.0
    for label in set(p) | set(q):
        a, b = p.get(label, 0) / p_total, q.get(label, 0) / q_total
        m = (a + b) / 2
        if a > 0:
            divergence += 0.5 * a * math.log2(a / m)
        if b > 0:
            divergence += 0.5 * b * math.log2(b / m)
    return min(max(divergence, 0.0), 1.0)


def _labels(summary: MetadataSummary, name: str) -> list[str]:
    value = getattr(summary, name)
    if name in ("skills", "format_constraints"):
        labels = {normalise_text(v) for v in value if v.strip()}  # a skill named twice counts once
        return sorted(labels) or ([NONE_LABEL] if name == "format_constraints" else [])
    if value is None or not str(value).strip():
        return [NONE_LABEL]
    return [normalise_text(str(value))]


def distribution(name: str, seeds: Sequence[MetadataSummary], accepted: Sequence[MetadataSummary]) -> Distribution:
    seed_counts: Counter[str] = Counter(label for m in seeds for label in _labels(m, name))
    pair_counts: Counter[str] = Counter(label for m in accepted for label in _labels(m, name))
    return Distribution(name, _sorted(seed_counts), _sorted(pair_counts), js_divergence(seed_counts, pair_counts))


def has_rich_fields(summaries: Iterable[MetadataSummary]) -> bool:
    return any(m.domain is not None or m.difficulty is not None or m.format_constraints for m in summaries)


def _sorted(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# -- diversity -----------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def distinct_n(texts: Iterable[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams (within each text), words taken case-blind."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = _WORD.findall(text.casefold())
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else None


def embedding_figures(vectors: Any, threshold: float, chunk: int = 512) -> tuple[float, float, list[float]]:
    """(mean pairwise cosine distance, near-duplicate rate, nearest-other similarity per row) of
    at least two unit-length rows. The nearest neighbours are found a chunk of rows at a time,
    so memory stays at chunk x n whatever the run's size."""
    import numpy as np

    e = np.asarray(vectors, dtype=np.float64)
    n = e.shape[0]
    total = e.sum(axis=0)
    # sum over i != j of e_i . e_j = |sum e|^2 - sum |e_i|^2
    mean_similarity = (float(total @ total) - float((e * e).sum())) / (n * (n - 1))
    nearest = np.empty(n)
    for start in range(0, n, chunk):
        sims = e[start : start + chunk] @ e.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf  # not its own neighbour
        nearest[start : start + chunk] = sims.max(axis=1)
    rate = float((nearest >= threshold - 1e-9).mean())
    return 1.0 - mean_similarity, rate, [float(x) for x in nearest]


def diversity(texts: Sequence[str], threshold: float, embed: Embed | None, embeddings_note: str | None) -> Diversity:
    result = Diversity(len(texts), distinct_n(texts, 1), distinct_n(texts, 2), None, None, threshold)
    if embed is None:
        result.embeddings_note = embeddings_note or NOT_COMPUTED_EMBEDDINGS
    elif len(texts) < 2:
        result.embeddings_note = "not computed: fewer than two accepted instructions"
    else:
        dispersion, rate, nearest = embedding_figures(embed(list(texts)), threshold)
        result.embedding_dispersion, result.near_duplicate_rate, result.nearest_similarity = dispersion, rate, nearest
    return result


# -- gap, iterations -----------------------------------------------------------------------


def gap_histogram(gaps: Sequence[float], threshold: float, width: float = 0.5) -> GapHistogram:
    """Bins `width` wide centred on multiples of `width` (a judge's averaged scores land there),
    spanning at least -9..9, the widest gap on a 1-10 scale."""
    low = min([-9.0, *gaps])
    high = max([9.0, *gaps])
    first = math.floor(low / width + 0.5)
    last = math.floor(high / width + 0.5)
    counts = Counter(math.floor(g / width + 0.5) for g in gaps)
    bins = [
        {"lo": (k - 0.5) * width, "hi": (k + 0.5) * width, "count": counts.get(k, 0)} for k in range(first, last + 1)
    ]
    kept = sum(1 for g in gaps if abs(g) > threshold)
    return GapHistogram(threshold, bins, len(gaps), kept, sum(gaps) / len(gaps) if gaps else None)


def iterations(
    accepted: Sequence[AcceptedPair], retried: Sequence[ScoredPair], rejected: Sequence[RejectedInstruction]
) -> Iterations:
    rows: dict[int, IterationRow] = {}
    for pair in accepted:
        rows.setdefault(pair.iteration, IterationRow(pair.iteration)).accepted += 1
    for scored in retried:
        rows.setdefault(scored.iteration, IterationRow(scored.iteration)).retried += 1
    for rej in rejected:
        rows.setdefault(rej.iteration, IterationRow(rej.iteration)).rejected += 1
    first = rows[1].accepted if 1 in rows else 0
    return Iterations([rows[k] for k in sorted(rows)], len(accepted), first / len(accepted) if accepted else None)


# -- LLM cost ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def stage_of(call: LLMCall) -> str:
    return STAGE_OF_PURPOSE.get(call.purpose, call.purpose)


def stage_costs(calls: Iterable[LLMCall], prices: Mapping[str, Price] | None = None) -> list[StageCost]:
    costs: dict[str, StageCost] = {s: StageCost(s) for s in LLM_STAGES}
    latencies: dict[str, list[float]] = {}
    for call in calls:
        stage = stage_of(call)
        cost = costs.setdefault(stage, StageCost(stage))
        if call.cached:  # answered from the answer cache: no model time, no tokens paid
            cost.cached_calls += 1
            continue
        cost.calls += 1
        cost.prompt_tokens += call.prompt_tokens
        cost.completion_tokens += call.completion_tokens
        latencies.setdefault(stage, []).append(call.latency_ms)
        price = (prices or {}).get(ROLE_OF_PURPOSE.get(call.purpose, ""))
        if price is not None:
            cost.usd = (cost.usd or 0.0) + price.of(call.prompt_tokens, call.completion_tokens)
    for stage, values in latencies.items():
        cost = costs[stage]
        cost.latency_ms_mean = sum(values) / len(values)
        cost.latency_ms_p50 = percentile(values, 50)
        cost.latency_ms_p95 = percentile(values, 95)
    return list(costs.values())


def calls_by_record(by_topic: dict[str, dict[str, Record]]) -> dict[str, Record]:
    """id -> record, over the topics whose records carry their LLM calls, each id once."""
    out: dict[str, Record] = {}
    for topic in CALL_TOPICS:
        for record_id, record in by_topic.get(topic, {}).items():
            out.setdefault(record_id, record)
    return out


def _calls(record: Record) -> tuple[LLMCall, ...]:
    calls = getattr(record, "llm_calls", ())
    return calls if isinstance(calls, tuple) else ()


def duplicates(
    dropped: Sequence[DuplicateInstruction], carriers: Iterable[Record], finished_roots: set[str]
) -> Duplicates:
    spent = 0
    for record in carriers:
        root = getattr(record, "root_id", None)
        if root in finished_roots:
            spent += sum(1 for c in _calls(record) if stage_of(c) in AFTER_DECODE and not c.cached)
    per_root = spent / len(finished_roots) if finished_roots else None
    return Duplicates(
        dropped=len(dropped),
        by_method=_sorted(Counter(d.method for d in dropped)),
        finished_roots=len(finished_roots),
        calls_after_decode=spent,
        calls_per_finished_root=per_root,
        calls_saved_estimate=len(dropped) * per_root if per_root is not None else None,
        examples=[
            {
                "instruction": d.instruction,
                "duplicate_of": d.duplicate_of_text,
                "similarity": d.similarity,
                "method": d.method,
            }
            for d in duplicate_examples(dropped)
        ],
    )


def duplicate_examples(dropped: Sequence[DuplicateInstruction]) -> list[DuplicateInstruction]:
    """Near (embedding) drops, least similar first: the ones to read when judging the threshold.
    Exact ones only when there are no near ones (two identical texts teach little)."""
    ordered = sorted(dropped, key=lambda d: (d.similarity, d.id))
    near = [d for d in ordered if d.method != "exact"]
    return near[:DUPLICATE_EXAMPLES] or ordered[:EXACT_EXAMPLES]


# -- dead letters --------------------------------------------------------------------------


def dead_letter_rows(letters: Iterable[DeadLetter], width: int = 90) -> list[DeadLetterRow]:
    groups: Counter[tuple[str, str, str]] = Counter(
        (d.stage, d.error_class, reason_kind(d.reason, width)) for d in letters
    )
    rows = [DeadLetterRow(stage, cls, reason, n) for (stage, cls, reason), n in groups.items()]
    return sorted(rows, key=lambda r: (-r.count, r.stage, r.error_class, r.reason))


# -- the whole report ----------------------------------------------------------------------


def compute(
    records: Iterable[tuple[str, Record]],
    *,
    gap_threshold: float,
    similarity_threshold: float,
    since: float | None = None,
    until: float | None = None,
    embed: Embed | None = None,
    embeddings_note: str | None = None,
    prices: Mapping[str, Price] | None = None,
    by: str | None = None,
) -> Report:
    """Every figure of the report. `embed` (texts -> unit rows) gives the embedding figures;
    without it they stay None and `embeddings_note` (or the default) says why. `prices` (by
    role) turn tokens into US dollars; `by` names a seed attribute to break the figures down by."""
    by_topic = unique_by_topic(records, since, until)
    metadata = _of(by_topic, "metadata", Metadata)
    accepted = _of(by_topic, "accepted", AcceptedPair)
    rejected = _of(by_topic, "rejected", RejectedInstruction)
    retried = _of(by_topic, "retry", ScoredPair)
    scored = _of(by_topic, "scored", ScoredPair)
    dropped = _of(by_topic, "duplicates", DuplicateInstruction)
    letters = _of(by_topic, "deadletter", DeadLetter)
    basic = _of(by_topic, "basic", Instruction)
    decoded = _of(by_topic, "decoded", Instruction)

    # The distribution to match is the one the user gave (seeds, metadata written by hand), not
    # what augmentation added on purpose.
    seed_meta = [m.metadata for m in metadata if not m.augmented_from]
    pair_meta = [p.metadata for p in accepted]
    rich = has_rich_fields([*seed_meta, *pair_meta])
    names = ("use_case", "skills", *(RICH_FIELDS if rich else ()))
    distributions = [distribution(name, seed_meta, pair_meta) for name in names]

    carriers = list(calls_by_record(by_topic).values())
    all_calls = [c for r in carriers for c in _calls(r)]
    finished = {p.root_id for p in accepted} | {r.root_id for r in rejected}
    times = [r.created_at for topic in by_topic.values() for r in topic.values()]

    overview = Overview(
        seeds=len(by_topic.get("seeds", {})),
        metadata=len(metadata),
        decoded_instructions=len({i.root_id for i in [*decoded, *basic]} | {d.root_id for d in dropped}),
        basic_instructions=len({i.root_id for i in basic}),
        scored=len(scored),
        accepted=len(accepted),
        rejected=len(rejected),
        duplicates=len(dropped),
        dead_letters=len(letters),
        llm_calls=sum(1 for c in all_calls if not c.cached),
        first_record_at=min(times) if times else None,
        last_record_at=max(times) if times else None,
    )
    return Report(
        overview=overview,
        distributions=distributions,
        rich_metadata=rich,
        diversity=diversity([p.instruction for p in accepted], similarity_threshold, embed, embeddings_note),
        gap=gap_histogram([s.gap for s in scored], gap_threshold),
        iterations=iterations(accepted, retried, rejected),
        duplicates=duplicates(dropped, carriers, finished),
        stages=stage_costs(all_calls, prices),
        dead_letters=dead_letter_rows(letters),
        cost_per_pair=pair_cost_figures(accepted, all_calls, prices),
        window={"since": since, "until": until},
        breakdown=_breakdown(by, by_topic, metadata, accepted, rejected) if by else None,
        augmentation=augmentation_coverage(metadata, accepted),
    )


def _breakdown(
    by: str,
    by_topic: dict[str, dict[str, Record]],
    metadata: list[Metadata],
    accepted: list[AcceptedPair],
    rejected: list[RejectedInstruction],
) -> Breakdown:
    from streams.report.breakdown import breakdown  # it reuses `distribution` from here

    return breakdown(by, by_topic.get("seeds", {}).values(), metadata, accepted, rejected)
