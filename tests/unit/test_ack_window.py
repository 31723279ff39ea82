"""The ordered ack window: out-of-order completion, in-order acks per partition."""

import asyncio
import random

import pytest

from streams.ack_window import OrderedAckWindow

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
