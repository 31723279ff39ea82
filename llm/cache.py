"""LLM answers kept on disk, so work replayed after a crash does not pay for its calls twice.

Delivery is at-least-once: after a crash, a worker processes again whatever was not committed
yet, asking the LLMs the very same questions. `CachedChatModel` wraps any `ChatModel` and
answers such repeats from an `AnswerCache`, keyed by (the record being processed, endpoint,
model, messages, temperature, max_tokens, sample): the same call for the same record, and
`sample` keeps a re-ask after an unparsable answer a different call. The record (CALL_SCOPE,
set by the stage for each record) is in the key so that the cache only ever answers replays:
two seeds whose metadata happen to give the same prompt still get two independent samples,
as they would without a cache.

Why SQLite in the worker's data directory rather than a compacted Kafka topic: a lookup must
be answered before the call it may save, by key, at hundreds per second; SQLite answers from
an index in microseconds, while a topic would have to be read whole into memory at start (and
grow with every answer ever given). The answer is committed before it is handed to the stage,
and in WAL mode a committed transaction survives the process being killed, so anything a
stage could have sent downstream is in the cache. Workers sharing a data directory share the
file (SQLite locks across processes); a worker with its own directory has its own cache, so
a partition replayed on another machine pays again: the cache saves money, correctness never
depends on it. Entries older than `max_age_s` are dropped when the cache opens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from llm.base import ChatModel, Completion, Message
from streams.metrics import REGISTRY

CACHE_LOOKUPS = Counter(
    "codeclm_llm_cache_lookups_total",
    "Answer cache lookups by role and outcome (hit: a call saved, miss: the LLM was asked)",
    ["role", "outcome"],
    registry=REGISTRY,
)
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
# The id of the record a call is made for; the stage sets it per record (task-local).
CALL_SCOPE: ContextVar[str] = ContextVar("codeclm_llm_call_scope", default="")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    completion TEXT NOT NULL,
    created REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
)
"""


def cache_key(
    endpoint: str,
    model: str,
    messages: list[Message],
    *,
    temperature: float,
    max_tokens: int,
    sample: int,
    scope: str = "",
) -> str:
    """A digest of the record and everything that shapes the answer (the endpoint too: two
    servers may serve different models under one name). Only the digest is stored."""
    canonical = json.dumps(
        [scope, endpoint, model, messages, temperature, max_tokens, sample], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class AnswerCache:
    """A SQLite table of completions by key. All database work runs on one thread of its own,
    so the event loop never waits on disk."""

    def __init__(self, path: Path, *, max_age_s: float = DEFAULT_MAX_AGE_S):
        self.path = Path(path)
        self.max_age_s = max_age_s
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self.pending: dict[str, asyncio.Future[Completion]] = {}  # calls under way, by key

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-cache")
        await self._run(self._open)

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def get(self, key: str) -> Completion | None:
        return await self._run(self._get, key)

    async def put(self, key: str, completion: Completion) -> None:
        await self._run(self._put, key, completion)

    async def count_hit(self, key: str) -> None:
        """A call saved without a lookup (it waited for an equal call under way)."""
        await self._run(self._count_hit, key)

    async def stats(self) -> tuple[int, int]:
        """(entries, hits so far): what the cache holds and the calls it has saved."""
        return await self._run(self._stats)

    async def _run(self, fn: Any, *args: Any) -> Any:
        assert self._executor is not None, "AnswerCache used before open()"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- on the cache's own thread ---------------------------------------------------------
    def _open(self) -> None:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: commits survive a killed process
        db.execute(_SCHEMA)
        db.execute("DELETE FROM answers WHERE created < ?", (time.time() - self.max_age_s,))
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _get(self, key: str) -> Completion | None:
        assert self._db is not None
        row = self._db.execute("SELECT completion FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE answers SET hits = hits + 1 WHERE key = ?", (key,))
        return Completion(**json.loads(row[0]))

    def _count_hit(self, key: str) -> None:
        assert self._db is not None
        self._db.execute("UPDATE answers SET hits = hits + 1 WHERE key = ?", (key,))

    def _put(self, key: str, completion: Completion) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT OR IGNORE INTO answers (key, completion, created) VALUES (?, ?, ?)",
            (key, json.dumps(asdict(completion)), time.time()),
        )

    def _stats(self) -> tuple[int, int]:
        assert self._db is not None
        entries, hits = self._db.execute("SELECT COUNT(*), COALESCE(SUM(hits), 0) FROM answers").fetchone()
        return int(entries), int(hits)


class CachedChatModel:
    """A ChatModel that answers repeated calls from the cache and asks `inner` otherwise."""

    def __init__(self, inner: ChatModel, cache: AnswerCache, *, endpoint: str, role: str = "llm"):
        self._inner = inner
        self._cache = cache
        self._endpoint = endpoint
        self.role = role

    @property
    def model(self) -> str:
        return self._inner.model

    def __repr__(self) -> str:
        return f"CachedChatModel({self._inner!r})"

    async def complete(
        self, messages: list[Message], *, temperature: float, max_tokens: int, sample: int = 0
    ) -> Completion:
        key = cache_key(
            self._endpoint,
            self.model,
            messages,
            temperature=temperature,
            max_tokens=max_tokens,
            sample=sample,
            scope=CALL_SCOPE.get(),
        )
        while True:
            under_way = self._cache.pending.get(key)
            if under_way is None:
                break
            try:  # an equal call for a copy of this record: wait for its answer
                completion = await asyncio.shield(under_way)
            except asyncio.CancelledError:
                if not under_way.cancelled():
                    raise  # this caller was cancelled
                continue  # the first caller was cancelled: ask again
            CACHE_LOOKUPS.labels(self.role, "hit").inc()
            await self._cache.count_hit(key)
            return replace(completion, cached=True, latency_s=0.0)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._cache.pending[key] = future
        try:
            cached = await self._cache.get(key)
            if cached is not None:
                CACHE_LOOKUPS.labels(self.role, "hit").inc()
                future.set_result(cached)
                return replace(cached, cached=True, latency_s=0.0)
            CACHE_LOOKUPS.labels(self.role, "miss").inc()
            completion = await self._inner.complete(
                messages, temperature=temperature, max_tokens=max_tokens, sample=sample
            )
            await self._cache.put(key, completion)  # on disk before any record can carry it
            future.set_result(completion)
            return completion
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            self._cache.pending.pop(key, None)


def _retrieve(future: asyncio.Future[Completion]) -> None:
    # A failure nobody else waited for is not "never retrieved": the first caller raised it.
    if not future.cancelled():
        future.exception()
