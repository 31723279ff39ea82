"""Hypothesis strategies for what lands on the seeds topic: good seeds, and every kind of bad
record a producer outside codeclm could send (random bytes, JSON of the wrong shape, missing
fields, blank, huge or binary text, invalid UTF-8, null values)."""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

from schemas import seed_id_for
from schemas.records import MAX_SEED_CHARS

# Printable text with the odd unicode, tab and newline: what real seeds look like, and more.
_INT64 = st.integers(-(2**63), 2**63 - 1)
_SEED_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), include_characters="\t\n")


def seed_json(text: str, **extra: object) -> dict[str, object]:
    sid = seed_id_for(text)
    return {"id": sid, "seed_id": sid, "parent_id": None, "text": text, "source": "hypothesis", **extra}


good_texts = st.text(_SEED_ALPHABET, min_size=1, max_size=300).filter(lambda t: t.strip())
good_seeds = good_texts.map(lambda t: orjson.dumps(seed_json(t)))


@st.composite
def _missing_field(draw) -> bytes:
    record = seed_json(draw(good_texts))
    del record[draw(st.sampled_from(["id", "seed_id", "parent_id", "text"]))]
    return orjson.dumps(record)


@st.composite
def _wrong_type(draw) -> bytes:
    record = seed_json(draw(good_texts))
    field = draw(st.sampled_from(["id", "seed_id", "text"]))
    record[field] = draw(st.one_of(_INT64, st.floats(allow_nan=False), st.booleans(), st.lists(_INT64)))
    return orjson.dumps(record)


@st.composite
def _invalid_utf8(draw) -> bytes:
    raw = orjson.dumps(seed_json(draw(good_texts)))
    cut = raw.index(b'"text":"') + len(b'"text":"')
    return (
        raw[:cut] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + raw[cut:]
    )


@st.composite
def _control_characters(draw) -> bytes:
    text = draw(good_texts)
    at = draw(st.integers(0, len(text)))
    bad = draw(st.sampled_from(["\x00", "\x01", "\x07", "\x08", "\x0b", "\x1b", "\x7f"]))
    return orjson.dumps(seed_json(text[:at] + bad + text[at:]))


@st.composite
def _huge_text(draw) -> bytes:
    size = draw(st.integers(100 * 1024 + 1, 140 * 1024))  # over 100 KB, far over the seed limit
    return orjson.dumps(seed_json("a" * size + draw(good_texts)))


bad_seed_values = st.one_of(
    st.binary(max_size=300).filter(lambda b: not b.lstrip().startswith((b"{", b"[", b'"')) or b == b""),
    st.just(None),  # a tombstone
    _missing_field(),
    _wrong_type(),
    st.text(st.sampled_from(" \t\n\r\u00a0\u2003"), max_size=20).map(lambda t: orjson.dumps(seed_json(t))),  # blank
    _huge_text(),
    _invalid_utf8(),
    _control_characters(),
    st.one_of(_INT64, st.lists(_INT64), st.text(max_size=20)).map(orjson.dumps),  # not an object
    st.builds(lambda: orjson.dumps(seed_json("x" * (MAX_SEED_CHARS + 1)))),  # just over the limit
)
keys = st.one_of(st.none(), st.binary(max_size=24))
