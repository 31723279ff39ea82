"""Hypothesis strategies for what lands on the seeds topic: good seeds in every shape a producer
may send (the full record, an object with "text" and extra fields, plain text), and every kind
of bad record (bytes that are not UTF-8, objects without text, an id that is not the text's,
blank, huge or binary text, attributes that are not an object or too large, null values)."""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

from schemas import seed_id_for
from schemas.records import MAX_SEED_CHARS
from schemas.seed_input import KNOWN_FIELDS as _KNOWN

# Printable text with the odd unicode, tab and newline: what real seeds look like, and more.
_INT64 = st.integers(-(2**63), 2**63 - 1)
_SEED_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), include_characters="\t\n")


def seed_json(text: str, **extra: object) -> dict[str, object]:
    sid = seed_id_for(text)
    return {"id": sid, "seed_id": sid, "parent_id": None, "text": text, "source": "hypothesis", **extra}


good_texts = st.text(_SEED_ALPHABET, min_size=1, max_size=300).filter(lambda t: t.strip())
_attributes = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(lambda k: k not in _KNOWN),
    st.one_of(_INT64, st.text(max_size=30), st.booleans(), st.none()),
    max_size=4,
)
good_seeds = good_texts.map(lambda t: orjson.dumps(seed_json(t)))
# what any producer may send: the full record, {"text"} with or without more fields, plain text
good_seed_values = st.one_of(
    good_seeds,
    st.builds(lambda t, a: orjson.dumps({"text": t, **a}), good_texts, _attributes),
    st.builds(lambda t, a: orjson.dumps({"text": t, "source": "svc", "attributes": a}), good_texts, _attributes),
    good_texts.filter(lambda t: t == t.rstrip("\r\n")).map(str.encode),
)


@st.composite
def _no_text(draw) -> bytes:
    record = seed_json(draw(good_texts))
    del record["text"]
    return orjson.dumps(record)


@st.composite
def _wrong_type(draw) -> bytes:
    record = seed_json(draw(good_texts))
    field = draw(st.sampled_from(["id", "seed_id", "text", "source", "attributes"]))
    record[field] = draw(st.one_of(_INT64, st.floats(allow_nan=False), st.booleans(), st.lists(_INT64)))
    return orjson.dumps(record)


@st.composite
def _wrong_id(draw) -> bytes:
    record = seed_json(draw(good_texts))
    record[draw(st.sampled_from(["id", "seed_id"]))] = "seed-" + draw(
        st.text("0123456789abcdef", min_size=20, max_size=20)
    )
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


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


bad_seed_values = st.one_of(
    st.binary(min_size=1, max_size=300).filter(_not_utf8),  # neither JSON nor text
    st.just(None),  # a tombstone
    _no_text(),
    _wrong_type(),
    _wrong_id(),
    st.text(st.sampled_from(" \t\n\r\u00a0\u2003"), max_size=20).map(lambda t: orjson.dumps(seed_json(t))),  # blank
    _huge_text(),
    _invalid_utf8(),
    _control_characters(),
    st.builds(lambda: orjson.dumps(seed_json("x" * (MAX_SEED_CHARS + 1)))),  # just over the limit
    st.builds(lambda t: orjson.dumps({"text": t, "note": "x" * 5000}), good_texts),  # attributes too large
)
BAD_SEED_CLASSES = frozenset(
    {
        "NullValue",
        "UnicodeDecodeError",
        "MissingText",
        "WrongType",
        "IdMismatch",
        "ValidationError",
        "AttributesTooLarge",
    }
)
keys = st.one_of(st.none(), st.binary(max_size=24))
