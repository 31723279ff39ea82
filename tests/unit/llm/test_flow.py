"""Flow control of an endpoint, alone: the AIMD limit and the outage state."""

from __future__ import annotations

import asyncio

import pytest

from llm.flow import AdaptiveLimit, Outage


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_429_halves_the_limit_once_per_round():
    clock = Clock()
    limit = AdaptiveLimit(64, clock=clock)
    sent = clock.t
    clock.t += 1
    assert limit.on_overload(sent) and limit.current == 32
    # Other 429s answering requests sent before that decrease say nothing new.
    assert not limit.on_overload(sent) and limit.current == 32
    clock.t += 1
    assert limit.on_overload(clock.t) and limit.current == 16


def test_the_limit_never_drops_below_the_minimum():
    clock = Clock()
    limit = AdaptiveLimit(8, minimum=2, clock=clock)
    for _ in range(10):
        clock.t += 1
        limit.on_overload(clock.t)
    assert limit.current == 2


def test_successes_add_about_one_per_limit_back_to_the_maximum():
    clock = Clock()
    limit = AdaptiveLimit(16, clock=clock)
    limit.on_overload(clock.t)
    assert limit.current == 8
    for _ in range(8):
        limit.on_success()
    assert limit.current == 8  # 8 successes at limit 8: +1 but rounded down just short of 9
    limit.on_success()
    assert limit.current == 9
    for _ in range(1000):
        limit.on_success()
    assert limit.current == 16


async def test_acquire_waits_for_a_free_slot_in_order():
    limit = AdaptiveLimit(2)
    await limit.acquire()
    await limit.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        await limit.acquire()
        order.append(name)

    waiting = [asyncio.create_task(take("a")), asyncio.create_task(take("b"))]
    await asyncio.sleep(0)
    assert order == [] and limit.in_flight == 2
    limit.release()
    await asyncio.sleep(0)
    assert order == ["a"]
    limit.release()
    await asyncio.gather(*waiting)
    assert order == ["a", "b"] and limit.in_flight == 2


async def test_a_lower_limit_holds_new_requests_until_enough_finish():
    clock = Clock()
    limit = AdaptiveLimit(4, clock=clock)
    for _ in range(4):
        await limit.acquire()
    limit.on_overload(clock.t)  # limit 2 with 4 in flight
    late = asyncio.create_task(limit.acquire())
    limit.release()
    limit.release()
    await asyncio.sleep(0)
    assert not late.done()  # 2 still in flight: at the limit
    limit.release()
    await late
    assert limit.in_flight == 2


async def test_a_cancelled_waiter_gives_its_slot_back():
    limit = AdaptiveLimit(1)
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limit.release()
    assert limit.in_flight == 0
    await limit.acquire()
    assert limit.in_flight == 1


def test_outage_is_declared_once_and_ends_with_an_answer():
    clock = Clock()
    outage = Outage(clock)
    outage.answered()
    sent = clock.t + 1
    clock.t += 2
    assert not outage.answered_since(sent)
    assert outage.declare_down() and outage.down
    assert not outage.declare_down()
    clock.t += 30
    assert outage.answered() == 30
    assert not outage.down and outage.answered_since(sent)
    assert outage.answered() is None


async def test_while_down_callers_probe_one_at_a_time_with_growing_waits():
    outage = Outage()
    outage.declare_down()
    waits: list[float] = []
    inside = 0
    most_inside = 0

    async def sleep(delay: float) -> None:
        nonlocal inside, most_inside
        inside += 1
        most_inside = max(most_inside, inside)
        waits.append(delay)
        await asyncio.sleep(0)
        inside -= 1

    await asyncio.gather(*(outage.turn(lambda n: float(2**n), sleep) for _ in range(4)))
    assert waits == [1.0, 2.0, 4.0, 8.0] and most_inside == 1
    outage.answered()
    await outage.turn(lambda n: 99.0, sleep)  # up again: no wait at all
    assert waits == [1.0, 2.0, 4.0, 8.0]
