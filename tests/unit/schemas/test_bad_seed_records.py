"""Seed records, property-based and without a broker: every bad one is refused by the seeds
topic's reader with a reason (which the stage turns into a dead letter), the original bytes
survive the trip into a dead letter, and every good one, in any shape a producer may send,
reads as sent."""

from __future__ import annotations

import base64

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Seed, seed_id_for
from schemas.codec import DecodeError, decode
from schemas.seed_input import KNOWN_FIELDS, read_seed
from streams.runtime.stage_app import MAX_ORIGINAL_BYTES, kept_original
from tests.seed_strategies import BAD_SEED_CLASSES, bad_seed_values, good_seed_values, good_seeds


@settings(max_examples=400, deadline=None)
@given(bad_seed_values)
def test_every_bad_seed_record_is_refused_with_a_reason(raw):
    try:
        read_seed(raw)
    except DecodeError as exc:
        assert str(exc) and exc.error_class in BAD_SEED_CLASSES, exc.error_class
    else:
        raise AssertionError(f"accepted a bad seed record: {raw[:200]!r}")


@settings(max_examples=300, deadline=None)
@given(good_seed_values)
def test_every_good_seed_reads_as_sent_with_its_id_derived_from_the_text(raw):
    seed = read_seed(raw)
    try:
        sent = orjson.loads(raw)
    except orjson.JSONDecodeError:
        sent = raw.decode()  # plain text
    text = sent["text"] if isinstance(sent, dict) else sent if isinstance(sent, str) else raw.decode()
    assert seed.text == text and seed.id == seed.seed_id == seed_id_for(text) and seed.parent_id is None
    if isinstance(sent, dict):
        extra = {k: v for k, v in sent.items() if k not in KNOWN_FIELDS}
        assert seed.attributes == {**extra, **sent.get("attributes", {})}


@settings(max_examples=200, deadline=None)
@given(good_seeds)
def test_the_full_record_feed_writes_still_reads_with_the_strict_codec(raw):
    strict, read = decode(Seed, raw), read_seed(raw)
    assert strict.model_dump(exclude={"created_at"}) == read.model_dump(exclude={"created_at"})


@settings(max_examples=300, deadline=None)
@given(st.one_of(bad_seed_values, st.binary(max_size=MAX_ORIGINAL_BYTES + 10)))
def test_a_dead_letter_keeps_the_original_bytes(raw):
    text, encoding, note = kept_original(raw)
    kept = text.encode() if encoding == "utf-8" else base64.b64decode(text)
    if raw is None:
        assert (kept, note) == (b"", "")
    elif len(raw) <= MAX_ORIGINAL_BYTES:
        assert kept == raw and note == ""
    else:
        assert kept == raw[:MAX_ORIGINAL_BYTES] and f"of {len(raw)} bytes" in note
