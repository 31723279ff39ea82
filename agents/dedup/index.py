"""The index of kept instructions that dedup checks each new one against. Pure, no I/O.

Two passes: an exact match of the normalised text (case and runs of white space ignored, as
for seeds), then, when embeddings are given, the highest cosine similarity against every
kept instruction's embedding, a near duplicate at or above the threshold. Embeddings are
unit vectors, so cosine is a dot product; the kept ones sit in one growing matrix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from schemas import normalise_text


@dataclass(frozen=True)
class Match:
    """Why an instruction is a duplicate: the kept instruction it matches, and how."""

    duplicate_of: str
    duplicate_of_text: str
    similarity: float
    method: Literal["exact", "embedding"]


def text_key(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode()).hexdigest()


class NearDupIndex:
    """Kept instructions by id. `threshold` None: the exact pass only."""

    def __init__(self, threshold: float | None = None):
        self.threshold = threshold
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._by_id: set[str] = set()
        self._by_key: dict[str, int] = {}
        self._vectors: Any = None  # (capacity, dim) float32; rows [0, len) are used

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, instruction_id: str) -> bool:
        return instruction_id in self._by_id

    def has_text(self, text: str) -> bool:
        """Whether an instruction with this text (case and white space aside) is kept."""
        return text_key(text) in self._by_key

    def check(self, instruction_id: str, text: str, vector: Any = None) -> Match | None:
        """The kept instruction this one duplicates, or None to keep it. An id already kept is
        kept again: a replay (ids are deterministic) must not become its own duplicate."""
        if instruction_id in self._by_id:
            return None
        row = self._by_key.get(text_key(text))
        if row is not None:
            return Match(self._ids[row], self._texts[row], 1.0, "exact")
        if vector is None or self.threshold is None or self._vectors is None or not self._ids:
            return None
        similarities = self._vectors[: len(self._ids)] @ vector
        best = int(similarities.argmax())
        similarity = float(similarities[best])
        if similarity >= self.threshold:
            return Match(self._ids[best], self._texts[best], round(min(similarity, 1.0), 6), "embedding")
        return None

    def add(self, instruction_id: str, text: str, vector: Any = None) -> None:
        """Keep an instruction (again: a second add of the same id changes nothing)."""
        if instruction_id in self._by_id:
            return
        row = len(self._ids)
        self._ids.append(instruction_id)
        self._texts.append(text)
        self._by_id.add(instruction_id)
        self._by_key.setdefault(text_key(text), row)
        if vector is None:
            if self._vectors is not None:
                raise ValueError("this index holds embeddings: add needs the instruction's vector")
            return
        if self._vectors is None:
            if row:
                raise ValueError("this index was filled without embeddings")
            import numpy as np

            self._vectors = np.zeros((64, len(vector)), dtype=np.float32)
        elif row == len(self._vectors):
            import numpy as np

            self._vectors = np.concatenate([self._vectors, np.zeros_like(self._vectors)])
        self._vectors[row] = vector
