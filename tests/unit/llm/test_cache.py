"""The answer cache: repeated calls are answered from disk, distinct calls are not, and what
was stored survives the process being killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from llm.base import Completion
from llm.cache import CACHE_LOOKUPS, CALL_SCOPE, AnswerCache, CachedChatModel, KeyFilter, cache_key
from tests.paths import ROOT
from tests.unit.fakes import ScriptedChatModel

MESSAGES = [{"role": "user", "content": "Name three prime numbers."}]


@pytest.fixture
async def cache(tmp_path):
    c = AnswerCache(tmp_path / "llm-cache.sqlite")
    await c.open()
    yield c
    await c.close()


async def test_a_repeated_call_is_answered_from_the_cache(cache):
    inner = ScriptedChatModel(respond=lambda call: "2, 3 and 5", model="m", prompt_tokens=9, completion_tokens=4)
    model = CachedChatModel(inner, cache, endpoint="http://a/v1", role="strong")
    hits_before = CACHE_LOOKUPS.labels("strong", "hit")._value.get()

    first = await model.complete(MESSAGES, temperature=0.7, max_tokens=64, sample=0)
    again = await model.complete(MESSAGES, temperature=0.7, max_tokens=64, sample=0)

    assert len(inner.calls) == 1
    assert not first.cached and again.cached
    assert (again.text, again.model, again.prompt_tokens, again.completion_tokens) == ("2, 3 and 5", "m", 9, 4)
    assert CACHE_LOOKUPS.labels("strong", "hit")._value.get() == hits_before + 1
    assert await cache.stats() == (1, 1)


@pytest.mark.parametrize(
    "change",
    [
        {"sample": 1},
        {"temperature": 0.0},
        {"max_tokens": 65},
        {"messages": [{"role": "user", "content": "Name three prime numbers!"}]},
        {"model": "other"},
        {"endpoint": "http://b/v1"},
        {"scope": "inst-2"},
    ],
)
def test_anything_that_shapes_the_answer_changes_the_key(change):
    base = {"endpoint": "http://a/v1", "model": "m", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 64}
    base.update(sample=0, scope="inst-1")
    changed = {**base, **change}
    key = cache_key(
        base["endpoint"],
        base["model"],
        base["messages"],
        temperature=base["temperature"],
        max_tokens=base["max_tokens"],
        sample=base["sample"],
        scope=base["scope"],
    )
    other = cache_key(
        changed["endpoint"],
        changed["model"],
        changed["messages"],
        temperature=changed["temperature"],
        max_tokens=changed["max_tokens"],
        sample=changed["sample"],
        scope=changed["scope"],
    )
    assert key != other


async def test_only_the_same_record_s_calls_are_answered_from_the_cache(cache):
    # Two records whose prompts happen to be equal get two samples, as without a cache; the
    # replay of either gets its own answer back.
    import asyncio

    inner = ScriptedChatModel("first sample", "second sample", model="m")
    model = CachedChatModel(inner, cache, endpoint="http://a/v1")

    async def for_record(record_id: str) -> str:
        CALL_SCOPE.set(record_id)
        return (await model.complete(MESSAGES, temperature=0.7, max_tokens=64)).text

    one = await asyncio.create_task(for_record("meta-1"))
    two = await asyncio.create_task(for_record("meta-2"))
    replay = await asyncio.create_task(for_record("meta-1"))
    assert (one, two, replay) == ("first sample", "second sample", "first sample")
    assert len(inner.calls) == 2


async def test_a_re_ask_with_the_next_sample_reaches_the_llm(cache):
    inner = ScriptedChatModel("garbled", "Use case: x", model="m")
    model = CachedChatModel(inner, cache, endpoint="http://a/v1")
    assert (await model.complete(MESSAGES, temperature=0.7, max_tokens=64, sample=0)).text == "garbled"
    assert (await model.complete(MESSAGES, temperature=0.7, max_tokens=64, sample=1)).text == "Use case: x"
    assert len(inner.calls) == 2


async def test_a_failed_call_is_not_cached(cache):
    from tests.unit.fakes import failing

    inner = ScriptedChatModel(failing(), "fine", model="m")
    model = CachedChatModel(inner, cache, endpoint="http://a/v1")
    with pytest.raises(Exception, match="endpoint down"):
        await model.complete(MESSAGES, temperature=0.7, max_tokens=64)
    assert (await model.complete(MESSAGES, temperature=0.7, max_tokens=64)).text == "fine"


async def test_an_answer_survives_the_worker_being_killed_right_after_it(tmp_path):
    # A child process stores an answer and is SIGKILLed at once, as a crashing worker would be
    # right after handing the answer to a stage.
    path = tmp_path / "llm-cache.sqlite"
    child = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from llm.base import Completion
        from llm.cache import AnswerCache

        async def main():
            cache = AnswerCache({str(path)!r})
            await cache.open()
            await cache.put("k", Completion("kept", "m", 3, 1, 0.5, "stop"))
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    cache = AnswerCache(path)
    await cache.open()
    try:
        assert await cache.get("k") == Completion("kept", "m", 3, 1, 0.5, "stop")
    finally:
        await cache.close()


async def test_two_workers_sharing_a_data_dir_share_answers(tmp_path):
    one, two = AnswerCache(tmp_path / "c.sqlite"), AnswerCache(tmp_path / "c.sqlite")
    await one.open()
    await two.open()
    try:
        await one.put("k", Completion("shared", "m", 1, 1, 0.1))
        assert (await two.get("k")).text == "shared"
    finally:
        await one.close()
        await two.close()


async def test_old_answers_are_dropped_when_the_cache_opens(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = AnswerCache(path)
    await cache.open()
    await cache.put("k", Completion("old", "m", 1, 1, 0.1))
    await cache.close()
    reopened = AnswerCache(path, max_age_s=0.0)
    await reopened.open()
    try:
        assert await reopened.get("k") is None
    finally:
        await reopened.close()
    assert os.path.exists(path)


async def test_copies_of_a_record_worked_on_at_once_pay_for_one_call(cache):
    import asyncio

    inner = ScriptedChatModel(respond=lambda call: "the answer", model="m", delay_s=0.05)
    model = CachedChatModel(inner, cache, endpoint="http://a/v1")

    async def copy() -> object:
        CALL_SCOPE.set("meta-1")
        return await model.complete(MESSAGES, temperature=0.7, max_tokens=64)

    first, second = await asyncio.gather(copy(), copy())
    assert len(inner.calls) == 1
    assert first.text == second.text == "the answer" and [first.cached, second.cached] == [False, True]
    assert await cache.stats() == (1, 1)


async def test_a_copy_asks_itself_when_the_first_caller_is_cancelled(cache):
    import asyncio

    inner = ScriptedChatModel(respond=lambda call: "late answer", model="m", delay_s=0.05)
    model = CachedChatModel(inner, cache, endpoint="http://a/v1")

    async def copy() -> str:
        CALL_SCOPE.set("meta-1")
        return (await model.complete(MESSAGES, temperature=0.7, max_tokens=64)).text

    first = asyncio.create_task(copy())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(copy())
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == "late answer"
    assert len(inner.calls) == 2 and first.cancelled()


async def test_answers_stored_together_all_survive_the_worker_being_killed(tmp_path):
    # Many calls finishing at once share group commits; each put returns only once its own
    # row is committed, so a kill right after the last put loses none of them.
    path = tmp_path / "llm-cache.sqlite"
    child = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from llm.base import Completion
        from llm.cache import AnswerCache

        async def main():
            cache = AnswerCache({str(path)!r})
            await cache.open()
            await asyncio.gather(*(cache.put(f"k{{i}}", Completion(f"a{{i}}", "m", 1, 1, 0.1)) for i in range(200)))
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    cache = AnswerCache(path)
    await cache.open()
    try:
        assert await cache.stats() == (200, 0)
        assert [(await cache.lookup(f"k{i}")).text for i in range(200)] == [f"a{i}" for i in range(200)]
    finally:
        await cache.close()


async def test_a_caller_cancelled_while_its_answer_is_stored_does_not_stop_the_others(cache):
    puts = [asyncio.create_task(cache.put(f"k{i}", Completion(f"a{i}", "m", 1, 1, 0.1))) for i in range(10)]
    await asyncio.sleep(0)
    puts[3].cancel()
    results = await asyncio.gather(*puts, return_exceptions=True)
    assert [r for i, r in enumerate(results) if i != 3] == [None] * 9
    stored = [i for i in range(10) if await cache.get(f"k{i}") is not None]
    assert set(stored) >= set(range(10)) - {3}


async def test_a_worker_finds_answers_another_worker_stored_once_its_key_filter_refreshed(tmp_path):
    # The key filter skips the database for keys this worker never saw stored; what another
    # worker sharing the file stores reaches it at the next refresh (every refresh_s).
    one = AnswerCache(tmp_path / "c.sqlite", refresh_s=0)
    two = AnswerCache(tmp_path / "c.sqlite", refresh_s=0.05)
    await one.open()
    await two.open()
    try:
        await one.put("k", Completion("shared", "m", 1, 1, 0.1))
        assert await one.lookup("k") is not None  # its own answers at once
        for _ in range(100):
            if await two.lookup("k") is not None:
                break
            await asyncio.sleep(0.01)
        assert (await two.lookup("k")).text == "shared"
        await two.put("k2", Completion("back", "m", 1, 1, 0.1))
        await one.refresh()
        assert (await one.lookup("k2")).text == "back"
    finally:
        await one.close()
        await two.close()


def test_the_key_filter_never_forgets_a_key_and_seldom_claims_one():
    keys = [f"{i:064x}" for i in range(20_000)]
    f = KeyFilter()
    for key in keys[:10_000]:
        f.add(key)
    assert all(key in f for key in keys[:10_000])
    false_claims = sum(key in f for key in keys[10_000:])
    assert false_claims < 100  # under 1% (about 0.01% expected at this size)


async def test_while_another_worker_writes_every_lookup_asks_the_database(tmp_path):
    # Rows the other worker committed after the last refresh are not in the key filter yet;
    # once a refresh has seen it writing, lookups ask SQLite, so replays of its work find them.
    one = AnswerCache(tmp_path / "c.sqlite", refresh_s=0)
    two = AnswerCache(tmp_path / "c.sqlite", refresh_s=0)
    await one.open()
    await two.open()
    try:
        await one.put("a", Completion("first", "m", 1, 1, 0.1))
        await two.refresh()
        await one.put("b", Completion("second", "m", 1, 1, 0.1))
        assert (await two.lookup("b")).text == "second"
    finally:
        await one.close()
        await two.close()
