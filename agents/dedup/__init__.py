"""dedup: a basic instruction -> `basic` (kept, unchanged) or `duplicates` (dropped, with the
kept instruction it repeats), before contrast pays two answers and two judge passes for it.

The stage keeps state across records: the index of every instruction kept so far, by this
worker or another (`decisions.py`: the decisions and their lock; `index.py`: exact and
embedding matches; `embeddings.py`: all-MiniLM-L6-v2 in numpy, cached by text on disk). The
worker builds that state once (`open_state`) and hands it to `process` in the context; before
each round of decisions the index catches up on the `basic` topic through the worker's reader.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.base import Emit, Stage, StageContext, StageEnv
from agents.dedup.decisions import Deduplicator, Tally, duplicate_record
from agents.dedup.embeddings import EmbeddingCache, embedder
from schemas import Instruction

EMBEDDING_CACHE_FILE = "dedup-embeddings.sqlite"  # in the worker's data directory


@dataclass
class DedupState:
    """The stage's own state: its Deduplicator (None with dedup off: every instruction is kept)
    and the embedding cache it closes at the end."""

    dedup: Deduplicator | None
    cache: EmbeddingCache | None = None

    @property
    def tally(self) -> Tally | None:
        return self.dedup.tally if self.dedup else None

    def index_size(self) -> int:
        return len(self.dedup.index) if self.dedup else 0

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


def open_state(env: StageEnv) -> DedupState:
    """The index, its catch-up on `basic`, and the embeddings the settings ask for ("on"
    without the `neardup` extra fails here, when the worker is built)."""
    if not env.dedup.enabled:
        return DedupState(dedup=None)
    embed = embedder(env.dedup)
    cache = EmbeddingCache(env.data_dir / EMBEDDING_CACHE_FILE, embed) if embed is not None else None
    catch_up = env.tail("basic")

    async def kept() -> list[Instruction]:
        return [record for record in await catch_up() if isinstance(record, Instruction)]

    dedup = Deduplicator(embed=cache, threshold=env.dedup.similarity_threshold, catch_up=kept)
    return DedupState(dedup=dedup, cache=cache)


async def process(instruction: Instruction, ctx: StageContext) -> list[Emit]:
    state: DedupState = ctx.state
    if state.dedup is None:
        return [Emit("basic", instruction)]
    return [await state.dedup.decide(instruction)]


STAGE = Stage(
    name="dedup", inputs=("decoded",), outputs=("basic", "duplicates"), process=process, open_state=open_state
)

__all__ = ["STAGE", "DedupState", "Deduplicator", "duplicate_record", "open_state", "process"]
