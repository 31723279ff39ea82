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
stage could have sent downstream is in the cache.

What it costs per call, at a thousand calls a second on one core: answers are written in
group commits (the answers stored within 10 ms go into one transaction, one thread hop for
all of them; each `put` still returns only once its row is committed), and a lookup asks SQLite only when an in-memory Bloom filter of the stored keys
says the key may be there, so a first call (nearly every call) never leaves the event loop.
The filter is filled at open and refreshed with what other workers sharing the file commit
(every `REFRESH_S`); while they write, every lookup asks SQLite as well (`SHARED_WINDOW_S`).
A row missed all the same (committed by another worker in the half second before that worker
was first seen writing) costs its call again, never a record: the call is made and its
answer used as if there were no cache. Workers sharing a data directory share the
file (SQLite locks across processes); a worker with its own directory has its own cache, so
a partition replayed on another machine pays again: the cache saves money, correctness never
depends on it. Entries older than `max_age_s` are dropped when the cache opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import orjson

from llm.base import ChatModel, Completion, Message
from llm.metrics import CACHE_LOOKUPS

DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
REFRESH_S = 0.5  # how often the key filter takes in what other workers sharing the file stored
# Rows stored within this long go into one commit: ~100 thread hops a second at most, whatever
# the call rate (each hop costs both threads GIL hand-offs); a call's answer reaches its stage
# this much later, while its LLM slot is already free for the next call.
GROUP_COMMIT_S = 0.01
# While another worker sharing the file has written within this long, every lookup asks SQLite
# (its newest rows may not be in the key filter yet): replays of its work then find them.
SHARED_WINDOW_S = 10.0
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
    canonical = orjson.dumps(
        [scope, endpoint, model, messages, temperature, max_tokens, sample], option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()


class KeyFilter:
    """A Bloom filter of cache keys: `key in filter` is never False for a key that was added
    (so no stored answer is skipped); a wrong True only costs one SQLite lookup. Fixed size
    (2 MB), so the worker's memory does not grow with the cache; past a million keys it says
    "maybe" more often (1% at one million, 5% at two), still never wrongly "no".
    Python's str hash is fixed within a process, which is all an in-memory filter needs."""

    BITS_LOG2 = 24

    def __init__(self) -> None:
        self._bits = bytearray(1 << (self.BITS_LOG2 - 3))
        self._mask = (1 << self.BITS_LOG2) - 1

    def _positions(self, key: str) -> tuple[int, int]:
        h = hash(key)
        return h & self._mask, (h >> 32) & self._mask

    def add(self, key: str) -> None:
        for i in self._positions(key):
            self._bits[i >> 3] |= 1 << (i & 7)

    def __contains__(self, key: str) -> bool:
        return all(self._bits[i >> 3] & (1 << (i & 7)) for i in self._positions(key))


class AnswerCache:
    """A SQLite table of completions by key. All database work runs on one thread of its own,
    so the event loop never waits on disk."""

    def __init__(
        self,
        path: Path,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        refresh_s: float = REFRESH_S,
        group_commit_s: float = GROUP_COMMIT_S,
    ):
        self.path = Path(path)
        self.max_age_s = max_age_s
        self.refresh_s = refresh_s
        self.group_commit_s = group_commit_s
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self.pending: dict[str, asyncio.Future[Completion]] = {}  # calls under way, by key
        self._filter = KeyFilter()
        self._seen_rowid = 0  # rows up to this one are in the filter
        self._seen_version = -1  # PRAGMA data_version at the last refresh
        self._others_wrote_at = -math.inf  # when a refresh last saw another connection's commit
        self._rows: list[tuple[str, bytes, float]] = []  # stored by the next group commit
        self._committed: asyncio.Future[None] | None = None  # resolved by that commit
        self._writer: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-cache")
        await self._run(self._open)
        await self.refresh()
        if self.refresh_s > 0:
            self._refresher = asyncio.create_task(self._refresh_every(self.refresh_s))

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        while self._writer is not None:  # rows still on their way to disk get there
            await asyncio.shield(self._writer)
        await self._run(self._close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def get(self, key: str) -> Completion | None:
        """The stored answer, from the database (what any worker sharing the file stored)."""
        return await self._run(self._get, key)

    async def lookup(self, key: str) -> Completion | None:
        """`get`, skipped when the key filter knows the key was never stored (the usual
        case: a first call), so such a lookup costs no thread hop. Not skipped while another
        worker sharing the file writes to it (its last `refresh_s` of rows may be missing)."""
        if key not in self._filter and time.monotonic() - self._others_wrote_at > SHARED_WINDOW_S:
            return None
        return await self.get(key)

    async def put(self, key: str, completion: Completion) -> None:
        """Store an answer; returns once the transaction holding it is committed (so it
        survives the process being killed). Rows arriving within `group_commit_s`, or while
        a commit is being written, go together into one commit."""
        self._rows.append((key, orjson.dumps(asdict(completion)), time.time()))
        if self._committed is None:
            self._committed = asyncio.get_running_loop().create_future()
            self._committed.add_done_callback(_retrieve)
        committed = self._committed
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_rows())
        await asyncio.shield(committed)  # a cancelled caller does not cancel the others' commit
        self._filter.add(key)

    async def refresh(self) -> None:
        """Take into the key filter the rows other workers sharing the file committed."""
        first = self._seen_version < 0
        keys = await self._run(self._new_keys)
        if keys is None:
            return
        if not first:
            self._others_wrote_at = time.monotonic()
        for key in keys:
            self._filter.add(key)

    async def _refresh_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(sqlite3.Error):  # a busy file: the next round takes it in
                await self.refresh()

    async def _write_rows(self) -> None:
        try:
            while self._rows:
                await asyncio.sleep(self.group_commit_s)  # let the rows of calls finishing now join
                rows, committed = self._rows, self._committed
                self._rows, self._committed = [], None
                assert committed is not None
                try:
                    await self._run(self._put_many, rows)
                except asyncio.CancelledError:
                    committed.cancel()
                    raise
                except Exception as exc:
                    committed.set_exception(exc)
                else:
                    committed.set_result(None)
        finally:
            self._writer = None
            if self._rows and self._committed is not None:  # cancelled: nobody will write these
                self._rows = []
                self._committed.cancel()
                self._committed = None

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
        return Completion(**orjson.loads(row[0]))

    def _count_hit(self, key: str) -> None:
        assert self._db is not None
        self._db.execute("UPDATE answers SET hits = hits + 1 WHERE key = ?", (key,))

    def _put_many(self, rows: list[tuple[str, bytes, float]]) -> None:
        assert self._db is not None
        self._db.execute("BEGIN")  # one transaction, one commit for all of them
        try:
            self._db.executemany("INSERT OR IGNORE INTO answers (key, completion, created) VALUES (?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _new_keys(self) -> list[str] | None:
        """Keys of rows committed since the last call, by this or other connections; None
        when no other connection committed since (data_version only counts the others)."""
        assert self._db is not None
        (version,) = self._db.execute("PRAGMA data_version").fetchone()
        if version == self._seen_version:
            return None
        self._seen_version = version
        rows = self._db.execute("SELECT rowid, key FROM answers WHERE rowid > ?", (self._seen_rowid,)).fetchall()
        if rows:
            self._seen_rowid = max(rowid for rowid, _ in rows)
        return [key for _, key in rows]

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
            cached = await self._cache.lookup(key)
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


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A failure nobody else waited for is not "never retrieved": the first caller raised it.
    if not future.cancelled():
        future.exception()
