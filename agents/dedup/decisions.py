"""dedup's decisions: keep an instruction, or drop it as a duplicate of one already kept.

Every decision is made against every instruction ever kept, by this worker or another:
before each round of decisions the index catches up on the `basic` topic (`catch_up` returns
what was added since the last call, from the start the first time), so a restart or a
partition moving between workers starts from the full set. Decisions are serialised (one
lock; the first waiter decides every instruction pending, in arrival order, with one batch
of embeddings), so two near duplicates in flight at once cannot both pass. An instruction
whose id is already kept is a replay and is kept again (ids are deterministic).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents.base import Emit
from agents.dedup.embeddings import Embed
from agents.dedup.index import Match, NearDupIndex, text_key
from schemas import DuplicateInstruction, Instruction, derive_id, made_from

CatchUp = Callable[[], Awaitable[list[Instruction]]]
EMBED_BATCH = 16  # texts per embedding call: a short hold of the worker thread, then the loop runs


def duplicate_record(instruction: Instruction, match: Match, threshold: float | None) -> DuplicateInstruction:
    return DuplicateInstruction(
        id=derive_id("duplicate", instruction.root_id),  # one verdict per root, like accepted/rejected
        **made_from(instruction),
        metadata_id=instruction.metadata_id,
        instruction=instruction.text,
        duplicate_of=match.duplicate_of,
        duplicate_of_text=match.duplicate_of_text,
        similarity=match.similarity,
        method=match.method,
        threshold=threshold if match.method == "embedding" else None,
    )


@dataclass
class Tally:
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"exact": 0, "embedding": 0})
    caught_up: int = 0  # kept instructions read back from the basic topic


class Deduplicator:
    """The dedup stage's state: the index of kept instructions and the decision lock.

    `embed` None: the exact pass only. `catch_up` None: nothing but this object's own
    decisions is ever kept (tests, or a single process by design)."""

    def __init__(self, *, embed: Embed | None, threshold: float, catch_up: CatchUp | None = None):
        self.embed = embed
        self.threshold = threshold if embed is not None else None
        self.catch_up = catch_up
        self.index = NearDupIndex(self.threshold)
        self.tally = Tally()
        self._lock = asyncio.Lock()
        self._pending: list[tuple[Instruction, asyncio.Future[Emit]]] = []

    async def decide(self, instruction: Instruction) -> Emit:
        future: asyncio.Future[Emit] = asyncio.get_running_loop().create_future()
        self._pending.append((instruction, future))
        async with self._lock:
            if not future.done():
                await self._round()
        return await future

    async def _round(self) -> None:
        batch, self._pending = self._pending, []
        try:
            if self.catch_up is not None:
                kept = await self.catch_up()
                await self._keep([i for i in kept if i.id not in self.index])
                self.tally.caught_up += len(kept)
            vectors = await self._vectors(batch)
            for (instruction, future), vector in zip(batch, vectors, strict=True):
                future.set_result(self._decide_one(instruction, vector))
        except BaseException as exc:
            undecided = [(i, f) for i, f in batch if not f.done()]
            if isinstance(exc, asyncio.CancelledError):
                self._pending[:0] = undecided  # the next waiter decides them
            else:
                for _, f in undecided:
                    f.set_exception(exc)
            raise

    def _decide_one(self, instruction: Instruction, vector: Any) -> Emit:
        match = self.index.check(instruction.id, instruction.text, vector)
        if match is None:
            self.index.add(instruction.id, instruction.text, vector)
            self.tally.kept += 1
            return Emit("basic", instruction)
        self.tally.dropped[match.method] += 1
        return Emit("duplicates", duplicate_record(instruction, match, self.threshold))

    async def _keep(self, instructions: list[Instruction]) -> None:
        vectors = await self._embed([i.text for i in instructions]) if self.embed else [None] * len(instructions)
        for instruction, vector in zip(instructions, vectors, strict=True):
            self.index.add(instruction.id, instruction.text, vector)

    async def _vectors(self, batch: list[tuple[Instruction, asyncio.Future[Emit]]]) -> list[Any]:
        """An embedding for each instruction the exact pass will not settle (None for the rest)."""
        out: list[Any] = [None] * len(batch)
        if self.embed is None:
            return out
        first: dict[str, int] = {}  # text key -> the batch position embedded for it
        same_as: dict[int, int] = {}
        for n, (instruction, _) in enumerate(batch):
            key = text_key(instruction.text)
            if instruction.id in self.index or self.index.has_text(instruction.text):
                continue
            if key in first:
                same_as[n] = first[key]  # the same text: the same embedding
            else:
                first[key] = n
        wanted = list(first.values())
        vectors = await self._embed([batch[n][0].text for n in wanted])
        for n, vector in zip(wanted, vectors, strict=True):
            out[n] = vector
        for n, m in same_as.items():
            out[n] = out[m]
        return out

    async def _embed(self, texts: list[str]) -> list[Any]:
        assert self.embed is not None
        out: list[Any] = []
        for start in range(0, len(texts), EMBED_BATCH):
            out.extend(await asyncio.to_thread(self.embed, texts[start : start + EMBED_BATCH]))
        return out
