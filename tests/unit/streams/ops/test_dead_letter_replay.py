"""Dead letters without a broker: grouping, choosing and what a replay sends."""

from __future__ import annotations

import base64

from schemas import DeadLetter
from streams.ops.dead_letter_replay import CUT_MARK, REPLAY_OF, reason_kind, replay_of, select, summarise


def letter(n: int, *, stage="contrast", error_class="LLMError", reason="judge: LLM call failed: HTTP 503", **kw):
    return DeadLetter(
        id=f"dead-{n:020x}",
        seed_id=kw.pop("seed_id", "seed-1"),
        parent_id=None,
        stage=stage,
        reason=reason,
        error_class=error_class,
        record_id=kw.pop("record_id", f"inst-{n:020x}"),
        source_topic=kw.pop("source_topic", "codeclm.basic"),
        source_partition=0,
        source_offset=n,
        original=kw.pop("original", '{"id": "x"}'),
        **kw,
    )


def test_reasons_that_differ_only_in_ids_and_numbers_group_together():
    a = reason_kind("judge: unparsable answer after 3 asks: scores 11 and 2 for inst-0123456789abcdef0123")
    b = reason_kind("judge: unparsable answer after 3 asks: scores 0 and 14 for inst-fedcba9876543210fedc")
    assert a == b == "judge: unparsable answer after # asks: scores # and # for #"


def test_summary_counts_by_stage_and_error_class_commonest_first():
    letters = [letter(i) for i in range(3)] + [
        letter(10, stage="encode", error_class="ValidationError", reason="not a valid Seed: text: blank"),
        letter(11, reason="answer_target: LLM call failed: HTTP 400"),
    ]
    rows = summarise(letters)
    assert [(r.stage, r.error_class, r.count) for r in rows] == [
        ("contrast", "LLMError", 4),
        ("encode", "ValidationError", 1),
    ]
    assert rows[0].reasons[0] == ("judge: LLM call failed: HTTP #", 3)


def test_select_by_ids_stage_reason_and_class():
    letters = [letter(1), letter(2, stage="tailor"), letter(3, reason="oversized response"), letter(4, error_class="X")]
    assert [d.source_offset for d in select(letters, ids=[letters[1].id])] == [2]
    assert [d.source_offset for d in select(letters, stage="contrast")] == [1, 3, 4]
    assert [d.source_offset for d in select(letters, stage="contrast", reason_contains="OVERSIZED")] == [3]
    assert [d.source_offset for d in select(letters, error_class="X")] == [4]


def test_a_replay_sends_the_original_bytes_back_to_their_topic_with_a_record_of_it():
    raw = b"\xff\xfe not utf-8"
    d = letter(5, original=base64.b64encode(raw).decode(), original_encoding="base64")
    plan = replay_of(d, now=1700000000.5)
    assert (plan.topic, plan.key, plan.value) == ("codeclm.basic", d.record_id.encode(), raw)
    assert dict(plan.headers)[REPLAY_OF] == d.id.encode()


def test_an_unreadable_empty_record_is_replayed_with_a_key():
    plan = replay_of(letter(6, record_id=None, seed_id="", original=""), now=0)
    assert plan.value == b"" and plan.key


def test_no_replay_without_the_whole_original_or_its_topic():
    cut = letter(7, reason="not JSON [original cut to its first 262144 of 400000 bytes]")
    assert CUT_MARK.search(cut.reason)
    assert "too large" in replay_of(cut, now=0)
    assert "topic" in replay_of(letter(8, source_topic=None), now=0)
