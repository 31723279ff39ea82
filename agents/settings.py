"""The algorithm's settings (sections `pipeline` and `dedup` of streams.settings.Settings);
the defaults are the CodecLM paper's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PipelineSettings(BaseModel):
    """The algorithm's numbers; defaults are the CodecLM paper's."""

    model_config = ConfigDict(frozen=True)

    max_skills: int = Field(default=3, ge=1, description="skills per metadata (encode)")
    instructions_per_metadata: int = Field(default=10, ge=1, description="basic instructions decoded per metadata")
    rubrics_per_metadata: int = Field(default=4, ge=1, description="rubrics, each with one action, per metadata")
    max_iterations: int = Field(default=4, ge=1, description="Self-Rubrics iterations; the basic instruction is 1")
    gap_threshold: float = Field(default=3.0, ge=0, description="keep a pair when |S(strong)-S(target)| > this")
    judge_passes: int = Field(
        default=2,
        ge=1,
        description="judge calls per pair, alternating the answer order; scores are averaged per order first, so "
        "each order weighs the same (1 pass: strong answer first, position bias uncorrected)",
    )
    generation_temperature: float = Field(default=0.7, ge=0, description="encode, decode, rubrics, tailor")
    answer_temperature: float = Field(default=0.7, ge=0, description="strong and target answers")
    judge_temperature: float = Field(default=0.0, ge=0)
    reask_temperature: float = Field(
        default=0.7, gt=0, description="at least this temperature when an unparsable answer is asked again"
    )
    max_tokens: int = Field(default=1024, ge=16, description="completion budget of generation calls")
    answer_max_tokens: int = Field(default=1024, ge=16)
    judge_max_tokens: int = Field(default=256, ge=8)
    parse_attempts: int = Field(
        default=3, ge=1, description="asks (with a new sample) before an unparsable answer is dead-lettered"
    )
    seed: int = Field(default=0, description="seed of the random choice of tailoring actions")
    prompts: Literal["paper", "small-model"] = Field(
        default="paper",
        description="prompt set: paper (Figures 7-11: encode few-shot, the rest zero-shot, judge scores only) "
        "or small-model (few-shot everywhere, for tiny local models)",
    )
    rich_metadata: bool = Field(
        default=False,
        description="encode also extracts domain, difficulty and output-format constraints; decode uses them (off: the paper's behaviour)",
    )


class DedupSettings(BaseModel):
    """Dropping basic instructions too similar to ones already kept, before contrast pays for them."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = Field(
        default=True, description="drop exact duplicates (same text once case and spaces are ignored)"
    )
    embeddings: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="near duplicates by sentence embeddings (all-MiniLM-L6-v2, the `neardup` extra): auto = when installed",
    )
    similarity_threshold: float = Field(
        default=0.9, gt=0, le=1, description="cosine similarity at or above which an instruction is a near duplicate"
    )
