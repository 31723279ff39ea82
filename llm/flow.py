"""Flow control of one LLM endpoint: how many requests may be in flight (AIMD), whether the
endpoint is down, and whether it refuses the configuration (in both cases one request at a
time tries it while the others wait).

Both are plain asyncio objects with no I/O, so the client's policy can be tested alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable


class AdaptiveLimit:
    """A semaphore whose size follows the endpoint's rate limits: additive increase,
    multiplicative decrease, as TCP does.

    A 429 halves the limit (never below `minimum`), but only once per round: a 429 answering
    a request sent before the last decrease says nothing about the new limit. Each success
    adds 1/limit, so the limit grows by about one per `limit` successes, back up to `maximum`.
    """

    def __init__(self, maximum: int, *, minimum: int = 1, clock: Callable[[], float] = time.monotonic):
        self.maximum = maximum
        self.minimum = max(1, min(minimum, maximum))
        self.limit = float(maximum)
        self.in_flight = 0
        self._clock = clock
        self._last_decrease = -math.inf
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.decreases = 0

    @property
    def current(self) -> int:
        return max(self.minimum, int(self.limit))

    async def acquire(self) -> None:
        if self.in_flight < self.current and not self._waiters:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot, then cancelled
                self.release()
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def on_success(self) -> None:
        if self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
            self._wake()

    def on_overload(self, sent_at: float) -> bool:
        """A 429 for a request sent at `sent_at` (this clock). Returns whether it halved."""
        if sent_at < self._last_decrease:
            return False
        self.limit = max(float(self.minimum), self.limit / 2)
        self._last_decrease = self._clock()
        self.decreases += 1
        return True

    def now(self) -> float:
        return self._clock()

    def _wake(self) -> None:
        # Hand free slots to waiters in order (the slot is taken on their behalf).
        while self._waiters and self.in_flight < self.current:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)


class Outage:
    """Whether an endpoint is down, from what its answers show.

    Any answer that proves the server works (a completion, or a client error: the server read
    the request) marks it up. A request whose retries ran out while nothing answered since
    it was sent declares it down. While down, callers take turns (`turn()`): one at a time,
    each waits `delay` and then sends its own request as a probe; once anything answers,
    the rest go at once.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.last_answer = -math.inf
        self.down_since: float | None = None
        self.probes = 0  # probes since the endpoint went down (sets the wait between them)
        self._turn = asyncio.Lock()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def answered(self) -> float | None:
        """The endpoint answered. Returns how long it had been down, if it was."""
        now = self._clock()
        self.last_answer = now
        if self.down_since is None:
            return None
        was_down, self.down_since, self.probes = now - self.down_since, None, 0
        return was_down

    def answered_since(self, t: float) -> bool:
        return self.last_answer >= t

    def declare_down(self) -> bool:
        """Returns True when this starts an outage (False when already down)."""
        if self.down_since is not None:
            return False
        self.down_since = self._clock()
        self.probes = 0
        return True

    async def turn(self, delay: Callable[[int], float], sleep: Callable[[float], object]) -> None:
        """Wait for this caller's turn to probe; returns at once when the endpoint is up."""
        async with self._turn:
            if self.down_since is None:
                return
            self.probes += 1
            await sleep(delay(self.probes - 1))  # type: ignore[misc]


class Refusal:
    """Whether an endpoint refuses the configuration: a wrong key, a model it does not know, a
    parameter it never takes. Every call would fail the same way, so instead of failing (and
    dead-lettering) record after record, calls wait; one at a time, every `delay`, a caller
    tries again; the first success lifts the refusal and the others go on at once.

    A 401, 403 or 404 refuses at once. A 400 that is not about the request's own content is
    ambiguous: it refuses when `REJECTIONS_TO_REFUSE` calls in a row got one with no success
    between them; a call that got one while others succeeded failed on its own record.
    """

    REJECTIONS_TO_REFUSE = 3

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.last_success = -math.inf
        self.reason: str | None = None  # what the endpoint said, while it refuses
        self.status: int | None = None
        self.probes = 0
        self.rejections = 0  # ambiguous 400s in a row since the last success
        self._turn = asyncio.Lock()
        self._news = asyncio.Event()

    @property
    def refused(self) -> bool:
        return self.reason is not None

    def succeeded(self) -> tuple[int | None, str] | None:
        """A call succeeded. Returns (status, reason) of the refusal this lifts, if any."""
        self.last_success = self._clock()
        self.rejections = 0
        lifted = (self.status, self.reason) if self.reason is not None else None
        self.reason, self.status, self.probes = None, None, 0
        self._tell()
        return lifted

    def succeeded_since(self, t: float) -> bool:
        return self.last_success >= t

    def refuse(self, status: int | None, reason: str) -> bool:
        """Returns True when this starts a refusal (False when the endpoint already refuses)."""
        started = self.reason is None
        self.reason, self.status = reason, status
        if started:
            self.probes = 0
        self._tell()
        return started

    def rejected(self) -> bool:
        """An ambiguous 400. Returns True when it makes `REJECTIONS_TO_REFUSE` in a row."""
        self.rejections += 1
        self._tell()
        return self.rejections >= self.REJECTIONS_TO_REFUSE

    async def news(self, timeout: float) -> None:
        """Wait until a call succeeds or is refused, or `timeout` seconds pass."""
        self._news.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._news.wait(), timeout)

    async def turn(self, delay: float, sleep: Callable[[float], object]) -> None:
        """Wait for this caller's turn to try; returns at once when the endpoint does not refuse."""
        async with self._turn:
            if self.reason is None:
                return
            self.probes += 1
            await sleep(delay)  # type: ignore[misc]

    def _tell(self) -> None:
        self._news.set()
