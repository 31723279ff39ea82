"""Process records out of order, acknowledge them in offset order.

faust-streaming 0.15.3 can commit an offset past a message still in flight when acks arrive
out of order within a partition (upstream issue #606). Here every record of a partition waits
in a FIFO; a finished record is acked only when every record before it in that partition is
finished too. So the committed offset never passes unfinished work, whatever order the LLM
calls return in, and a crash replays at most the unfinished tail (at-least-once).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

E = TypeVar("E")


@dataclass
class _Slot(Generic[E]):
    item: E
    done: bool = False


@dataclass
class OrderedAckWindow(Generic[E]):
    """At most `capacity` items in flight; `ack(item)` is called per partition in submit order.

    `partition_of(item)` names the item's partition. `submit` waits while the window is full,
    which is what holds back the consumer (back-pressure) when the LLMs are slower than Kafka.
    """

    capacity: int
    ack: Callable[[E], Awaitable[object] | object]
    partition_of: Callable[[E], Hashable]
    _pending: dict[Hashable, deque[_Slot[E]]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _blocked: set[Hashable] = field(default_factory=set)
    _room: asyncio.Semaphore | None = None
    closed: bool = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def waiting_to_ack(self) -> int:
        return sum(len(q) for q in self._pending.values())

    async def submit(self, item: E, work: Callable[[E], Awaitable[None]]) -> bool:
        """Start `work(item)`; False (and nothing started, so never acked) once closed."""
        if self.closed:
            return False
        if self._room is None:
            self._room = asyncio.Semaphore(self.capacity)
        await self._room.acquire()
        if self.closed:  # closed while waiting for room
            self._room.release()
            return False
        slot = _Slot(item)
        self._pending.setdefault(self.partition_of(item), deque()).append(slot)
        task = asyncio.create_task(self._run(slot, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, slot: _Slot[E], work: Callable[[E], Awaitable[None]]) -> None:
        try:
            await work(slot.item)
        except BaseException:
            # Never acked, and nothing after it in its partition may be either: the record
            # stays uncommitted and is read again after a restart.
            self._blocked.add(self.partition_of(slot.item))
            raise
        else:
            slot.done = True
            await self._ack_ready(self.partition_of(slot.item))
        finally:
            assert self._room is not None
            self._room.release()

    async def _ack_ready(self, partition: Hashable) -> None:
        queue = self._pending.get(partition)
        while queue and queue[0].done and partition not in self._blocked:
            result = self.ack(queue.popleft().item)
            if asyncio.iscoroutine(result):
                await result

    async def drain(self, timeout: float) -> bool:
        """Take nothing new; wait up to `timeout` for in-flight work to finish (and be acked);
        cancel the rest, which stays unacked. Returns True when everything finished."""
        self.closed = True
        tasks = set(self._tasks)
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return not pending

    def forget(self, partitions: set[Hashable]) -> None:
        """Partitions taken away by a rebalance: their acks no longer mean anything here."""
        for p in partitions:
            self._pending.pop(p, None)
            self._blocked.discard(p)


class AckGate:
    """Lets a consumer's acks through only for messages the ordered window released.

    faust's stream acks by itself the messages it skips: those fetched under an older
    consumer generation or while flow control is paused during a rebalance. They never
    reach our agent, yet their offsets join the acked run and get committed; if the
    partition comes back to this worker, a crash before they are read again loses them.
    Installed on the consumer, the gate refuses those acks, so a skipped message stays
    uncommitted and is fetched again after the rebalance's seek to the committed offset.
    """

    def __init__(self, consumer: object):
        self._ack: Callable[[object], bool] = consumer.ack  # type: ignore[attr-defined]
        self._released: set[tuple[Hashable, int]] = set()
        self.refused = 0  # skipped messages whose ack was held back (for tests and logs)
        consumer.ack = self._gated  # type: ignore[attr-defined]

    async def release(self, event: object, ack: Callable[[object], Awaitable[object] | object]) -> None:
        """Ack an event the window is done with: `ack(event)` (the stream's ack) reaches
        `consumer.ack` through the message's refcount, and the gate lets this one through."""
        key = _key(event.message)  # type: ignore[attr-defined]
        self._released.add(key)
        try:
            result = ack(event)
            if asyncio.iscoroutine(result):
                await result
        finally:
            self._released.discard(key)

    def _gated(self, message: object) -> bool:
        if _key(message) not in self._released:
            self.refused += 1
            return False
        return self._ack(message)


def _key(message: object) -> tuple[Hashable, int]:
    return (message.tp, message.offset)  # type: ignore[attr-defined]
