"""Bad seed records, property-based and without a broker: every one is refused by the codec
with a reason (which the stage turns into a dead letter), the original bytes survive the trip
into a dead letter, and every good seed decodes as it was sent."""

from __future__ import annotations

import base64

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Seed
from schemas.codec import DecodeError, decode
from streams.runtime.stage_app import MAX_ORIGINAL_BYTES, kept_original
from tests.seed_strategies import bad_seed_values, good_seeds


@settings(max_examples=400, deadline=None)
@given(bad_seed_values)
def test_every_bad_seed_record_is_refused_with_a_reason(raw):
    try:
        decode(Seed, raw)
    except DecodeError as exc:
        assert str(exc) and exc.error_class in {"NullValue", "JSONDecodeError", "WrongType", "ValidationError"}
    else:
        raise AssertionError(f"accepted a bad seed record: {raw[:200]!r}")


@settings(max_examples=200, deadline=None)
@given(good_seeds)
def test_every_good_seed_decodes_as_sent(raw):
    seed = decode(Seed, raw)
    assert seed.text == orjson.loads(raw)["text"]


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
