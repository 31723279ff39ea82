"""Record models for every topic and the codec that carries them."""

from schemas.records import (
    SCHEMA_VERSION,
    AcceptedPair,
    DeadLetter,
    DuplicateInstruction,
    Instruction,
    JudgeVerdict,
    LLMCall,
    Metadata,
    MetadataSummary,
    Record,
    RejectedInstruction,
    ScoredPair,
    Seed,
    derive_id,
    normalise_text,
    seed_id_for,
)

__all__ = [
    "SCHEMA_VERSION",
    "AcceptedPair",
    "DeadLetter",
    "DuplicateInstruction",
    "Instruction",
    "JudgeVerdict",
    "LLMCall",
    "Metadata",
    "MetadataSummary",
    "Record",
    "RejectedInstruction",
    "ScoredPair",
    "Seed",
    "derive_id",
    "normalise_text",
    "seed_id_for",
]
