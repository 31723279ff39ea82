"""The ordered ack window: out-of-order completion, in-order acks per partition."""

import asyncio
import random

import pytest

from streams.runtime.ack_window import OrderedAckWindow

pytestmark = pytest.mark.asyncio


def make_window(capacity=100):
    acked: list[tuple[str, int]] = []
    window = OrderedAckWindow(capacity=capacity, ack=acked.append, partition_of=lambda item: item[0])
    return window, acked


async def test_acks_in_offset_order_even_when_work_finishes_out_of_order():
    window, acked = make_window()
    rng = random.Random(7)
    items = [(p, offset) for offset in range(30) for p in ("a", "b")]
    delays = {item: rng.random() / 50 for item in items}

    async def work(item):
        await asyncio.sleep(delays[item])

    for item in items:
        await window.submit(item, work)
    assert await window.drain(timeout=5)
    for p in ("a", "b"):
        assert [o for q, o in acked if q == p] == list(range(30))


async def test_a_slow_head_holds_back_acks_behind_it():
    window, acked = make_window()
    release = asyncio.Event()

    async def work(item):
        if item[1] == 0:
            await release.wait()

    for offset in range(5):
        await window.submit(("a", offset), work)
    await asyncio.sleep(0.05)
    assert acked == []  # offsets 1-4 are done but 0 is not: nothing may be committed
    assert window.waiting_to_ack == 5
    release.set()
    await window.drain(timeout=1)
    assert acked == [("a", i) for i in range(5)]


async def test_capacity_bounds_work_in_flight():
    window, _ = make_window(capacity=3)
    running = 0
    peak = 0

    async def work(item):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    for offset in range(20):
        await window.submit(("a", offset), work)
    await window.drain(timeout=2)
    assert peak == 3


async def test_failed_or_cancelled_work_blocks_later_acks_of_its_partition():
    window, acked = make_window()

    async def work(item):
        if item == ("a", 1):
            raise RuntimeError("producer gone")
        if item == ("a", 3):
            await asyncio.sleep(10)

    for offset in range(5):
        await window.submit(("a", offset), work)
    await window.submit(("b", 0), work)
    finished = await window.drain(timeout=0.2)
    assert not finished  # ("a", 3) was cancelled
    await asyncio.sleep(0)
    assert ("a", 0) in acked and ("b", 0) in acked
    assert not any(p == "a" and o >= 1 for p, o in acked)
    await window.submit(("a", 5), work)
    await window.drain(timeout=1)
    assert ("a", 5) not in acked  # nothing after the hole is ever acked


async def test_a_drained_window_takes_nothing_more():
    window, acked = make_window()
    started: list[tuple[str, int]] = []

    async def work(item):
        started.append(item)

    assert await window.submit(("a", 0), work)
    assert await window.drain(timeout=1)
    assert not await window.submit(("a", 1), work)  # stopping: left unacked, read again later
    await asyncio.sleep(0)
    assert started == [("a", 0)] and acked == [("a", 0)]


# -- the gate in front of a real faust consumer (no broker: only its offset bookkeeping) -------


@pytest.fixture
async def faust_consumer():
    """A real faust consumer, never started: its offset bookkeeping is what is under test."""
    import faust
    from faust.types import TP

    app = faust.App(
        "gate-test", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False, loop=asyncio.get_running_loop()
    )
    topic = app.topic("in", value_serializer="raw")
    app.topics.add(topic)
    await app.topics._update_indices()  # what subscribing does: acks count on "in"
    consumer = app.consumer
    tp = TP("in", 0)
    consumer._committed_offset[tp] = 10
    yield consumer, tp
    consumer._thread.thread_loop.close()  # the consumer thread's own loop, never run


def message(offset: int):
    from faust.transport.consumer import ConsumerMessage

    return ConsumerMessage("in", 0, offset, 0.0, 0, None, None, b"", None)


class Event:
    """What the window holds: an event whose ack goes through its message's refcount."""

    def __init__(self, consumer, msg):
        self.message = msg
        self._consumer = consumer

    def ack(self):
        return self.message.ack(self._consumer)


async def test_without_the_gate_faust_commits_past_a_message_in_flight(faust_consumer):
    # The trap the gate exists for: offset 10 is in flight; 11-13 were skipped by faust during
    # a rebalance, and its stream acks skipped messages. faust then commits 14: 10 is lost
    # if the worker dies before it is done.
    consumer, tp = faust_consumer
    for offset in (11, 12, 13):
        message(offset).ack(consumer)
    assert consumer._new_offset(tp) == 14


async def test_the_gate_keeps_skipped_acks_out_and_lets_the_window_s_acks_through(faust_consumer):
    from streams.runtime.ack_window import AckGate

    consumer, tp = faust_consumer
    gate = AckGate(consumer)
    window = OrderedAckWindow(
        capacity=10, ack=lambda e: gate.release(e, Event.ack), partition_of=lambda e: e.message.tp
    )
    for offset in (11, 12, 13):  # skipped by faust's stream: acked behind the window's back
        message(offset).ack(consumer)
    assert gate.refused == 3
    assert consumer._new_offset(tp) is None  # nothing committable: 10 is not done

    release = asyncio.Event()

    async def work(event):
        if event.message.offset == 10:
            await release.wait()

    # After the rebalance's seek, 10-13 are delivered again, now to the window.
    for offset in (10, 11, 12, 13):
        await window.submit(Event(consumer, message(offset)), work)
    await asyncio.sleep(0.01)
    assert consumer._new_offset(tp) is None  # 11-13 done, but they wait behind 10
    release.set()
    assert await window.drain(timeout=1)
    assert consumer._new_offset(tp) == 14
