"""The records on every topic, in pipeline order. They are the only contract between stages.

Ids are deterministic (a hash of the parent id and the child's index or iteration), so a
replay after a crash produces the same ids and any consumer can de-duplicate by id.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What bumps it: a change an existing reader could misread (a field removed, renamed, retyped or
# given another meaning, a new field a reader must not ignore). Adding a field with a default
# does not: every reader ignores fields it does not know (docs/records.md, "Schema versions").
# 2: an accepted pair's cost is fractional (its share of calls that served its siblings) and
# covers every iteration; records name their prompt set; accepted pairs carry their provenance.
SCHEMA_VERSION = 2

# Frozen: a record is a fact. Fields this version does not know are ignored, not refused, so a
# record written by a later codeclm (or a producer adding its own) still reads here.
RECORD_CONFIG = ConfigDict(frozen=True, extra="ignore")


def derive_id(prefix: str, *parts: object) -> str:
    """A short stable id: `prefix-` + 20 hex chars of sha256 over the parts."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}-{digest[:20]}"


def normalise_text(text: str) -> str:
    """What makes two seeds the same seed: case and runs of white space do not count."""
    return " ".join(text.split()).casefold()


def seed_id_for(text: str) -> str:
    return derive_id("seed", normalise_text(text))


def metadata_id_for(use_case: str, skills: tuple[str, ...]) -> str:
    """The id of metadata that starts a root (a user wrote it, or augmentation combined it):
    a hash of the normalised use case and the set of normalised skills, so the same metadata,
    skills in any order, is the same root wherever it comes from."""
    return derive_id(
        "meta", "use case", normalise_text(use_case), "skills", *sorted({normalise_text(s) for s in skills})
    )


def made_from(parent: Record) -> dict[str, Any]:
    """The lineage fields of a record made from `parent`: its seed and its parent, its root
    when the parent has one (an instruction's iterations, their scores and verdicts), and the
    seed's attributes."""
    fields: dict[str, Any] = {"seed_id": parent.seed_id, "parent_id": parent.id, "attributes": parent.attributes}
    root_id = getattr(parent, "root_id", None)
    if root_id is not None:
        fields["root_id"] = root_id
    return fields


class Record(BaseModel):
    model_config = RECORD_CONFIG

    schema_version: int = SCHEMA_VERSION
    id: str
    seed_id: str
    parent_id: str | None
    created_at: float = Field(default_factory=time.time, description="unix seconds")
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="the seed's own fields (a category, a tenant, a priority), carried to every record made from it",
    )


class LLMCall(BaseModel):
    """What one LLM call cost; every record that came out of an LLM carries its calls."""

    model_config = RECORD_CONFIG

    purpose: str = Field(description="encode, decode, rubrics, tailor, answer_strong, answer_target, judge")
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    attempts: int = 1
    cached: bool = False


class PromptSetRef(BaseModel):
    """Which prompts an LLM record came from: the set (`paper`, `small-model`) and its version,
    a hash of the set's prompt files, so any change to a prompt shows on the records."""

    model_config = RECORD_CONFIG

    name: str
    version: str


class CallTotals(BaseModel):
    """LLM calls and their tokens, summed; fractional where they are a share of calls that
    served several instructions (encode, decode and rubrics serve every sibling)."""

    model_config = RECORD_CONFIG

    calls: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0


class Provenance(BaseModel):
    """What made an accepted pair: the models that answered, the prompt set and the pipeline
    settings, so a data set can be audited and reproduced."""

    model_config = RECORD_CONFIG

    strong_model: str
    target_model: str
    judge_model: str
    prompt_set: str
    prompt_version: str
    settings_hash: str = Field(description="sha256 (first 12 hex) of the pipeline settings in force at the verdict")


class MetadataSummary(BaseModel):
    """CodecLM's metadata: the use case of an instruction and the skills it needs.

    With `pipeline.rich_metadata` on, encode also extracts a domain, a difficulty and the
    output-format constraints; off (the paper's behaviour), they stay None and empty.
    """

    model_config = RECORD_CONFIG

    use_case: str
    skills: tuple[str, ...]
    domain: str | None = None
    difficulty: Literal["easy", "medium", "hard"] | None = None
    format_constraints: tuple[str, ...] = ()


# -- seeds ---------------------------------------------------------------------------------
# A seed is one user query; far longer text is a document, not an instruction (and would not
# fit the prompts). Control characters other than tab and line breaks mean binary garbage.
MAX_SEED_CHARS = 20_000
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Seed(Record):
    """A seed instruction fed by the user; `id == seed_id`, `parent_id` is None."""

    text: str = Field(min_length=1, max_length=MAX_SEED_CHARS)
    source: str | None = None

    @field_validator("text")
    @classmethod
    def _readable(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text is blank")
        bad = _CONTROL_CHARS.search(text)
        if bad:
            raise ValueError(f"text holds a control character ({bad.group()!r} at {bad.start()})")
        return text


# -- metadata ------------------------------------------------------------------------------
class Metadata(Record):
    """encode: seed -> use case + skills. `parent_id` is the seed id.

    Metadata can also start a root itself, with no seed: written by a user (`codeclm feed
    --metadata`) or made by augmentation (`codeclm augment`). Such a record has `parent_id`
    None, `seed_id == id` (`metadata_id_for` its use case and skills) and `seed_text` "";
    an augmented one names the metadata records it combined in `augmented_from`.
    """

    seed_text: str
    metadata: MetadataSummary
    llm_calls: tuple[LLMCall, ...] = ()
    prompts: PromptSetRef | None = None
    augmented_from: tuple[str, ...] = Field(
        default=(), description="ids of the metadata records augmentation combined into this one (empty otherwise)"
    )

    @property
    def is_root(self) -> bool:
        """Whether this metadata starts a root itself (no seed before it)."""
        return self.parent_id is None


# -- basic and tailored ------------------------------------------------------------------------
class Instruction(Record):
    """An instruction to answer: basic (iteration 1, from decode) or tailored (iteration >1).

    `root_id` is the id of the basic instruction it descends from; each root ends in exactly
    one verdict (accepted, rejected) or a dead letter. `siblings` is how many basic
    instructions decode made for this metadata, so a consumer can tell when a seed is done.
    """

    root_id: str
    metadata_id: str
    iteration: int = Field(ge=1)
    index: int = Field(ge=0)
    siblings: int = Field(ge=1)
    text: str
    metadata: MetadataSummary
    rubrics: tuple[str, ...]
    actions: tuple[str, ...]
    applied_action: str | None = None
    applied_actions: tuple[str, ...] = Field(
        default=(), description="every action applied along this root, in order (the last is applied_action)"
    )
    llm_calls: tuple[LLMCall, ...] = ()
    seed_text: str | None = Field(default=None, description="the seed it came from, carried to the sink")
    prompts: PromptSetRef | None = None
    upstream_cost: dict[str, CallTotals] = Field(
        default_factory=dict,
        description="by purpose, what this root spent before this instruction's own calls: its share "
        "(1/siblings) of encode, decode and rubrics, and every earlier iteration's calls",
    )


# -- scored ----------------------------------------------------------------------------------
class JudgeVerdict(BaseModel):
    """One judge pass: the scores it gave the strong and the target answer (1-10)."""

    model_config = RECORD_CONFIG

    strong_first: bool
    strong_score: float
    target_score: float


class ScoredPair(Record):
    """contrast: an instruction with both answers and the averaged judge scores."""

    root_id: str
    iteration: int
    instruction: Instruction
    strong_answer: str
    target_answer: str
    strong_score: float
    target_score: float
    gap: float = Field(description="strong_score - target_score")
    judgements: tuple[JudgeVerdict, ...]
    llm_calls: tuple[LLMCall, ...] = ()
    prompts: PromptSetRef | None = None


# -- verdicts --------------------------------------------------------------------------------
class AcceptedPair(Record):
    """The sink: a tailored instruction and the response to train on, with its provenance."""

    root_id: str
    iteration: int
    instruction: str
    response: str
    response_source: Literal["strong", "target"]
    strong_score: float
    target_score: float
    gap: float
    metadata: MetadataSummary
    seed_text: str | None = None
    lineage: tuple[str, ...] = Field(description="ids from the seed down to the scored pair")
    llm_calls: float = Field(
        description="LLM calls spent on this pair: every iteration of its root plus its share (1/siblings) "
        "of the encode, decode and rubrics calls that served it and its siblings"
    )
    prompt_tokens: float = Field(description="prompt tokens of those calls, shares included")
    completion_tokens: float = Field(description="completion tokens of those calls, shares included")
    cost_by_purpose: dict[str, CallTotals] = Field(
        default_factory=dict, description="llm_calls and tokens broken down by purpose (encode ... judge)"
    )
    provenance: Provenance | None = None


class RejectedInstruction(Record):
    """An instruction still too easy (|gap| <= threshold) after the last iteration."""

    root_id: str
    iteration: int
    instruction: str
    gap: float
    reason: str


class DuplicateInstruction(Record):
    """dedup: a basic instruction too similar to one already kept, dropped before contrast.

    It is a verdict like accepted and rejected: its root ends here, and no LLM call is spent
    on it after decode. `similarity` is the cosine similarity of the two instructions'
    embeddings, 1.0 for an exact match (same text once case and white space are ignored).
    """

    root_id: str
    metadata_id: str
    instruction: str
    duplicate_of: str = Field(description="id of the kept instruction it is too similar to")
    duplicate_of_text: str
    similarity: float
    method: Literal["exact", "embedding"]
    threshold: float | None = Field(default=None, description="the similarity threshold in force (embedding)")


class DeadLetter(Record):
    """A record that could not be processed, with the reason and the original bytes.

    `seed_id` is "" when the original record could not be read at all.
    """

    stage: str
    reason: str
    error_class: str
    attempts: int = 1
    root_id: str | None = None
    record_id: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    original: str = Field(description="the original value, UTF-8 text or base64")
    original_encoding: Literal["utf-8", "base64"] = "utf-8"
