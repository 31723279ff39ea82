"""A seed as any producer writes it on the seeds topic, turned into the `Seed` record.

Three shapes are seeds: the full record `codeclm feed` writes; a JSON object with `text` and,
if it likes, `source`, `id` and anything else (a service in Java or Go, a connector); and a
plain UTF-8 text value (`echo "..." | kcat -P -t codeclm.seeds`). The id is the hash of the
normalised text, derived here when missing, so no producer has to compute it; an `id` that is
not that hash is refused, with the reason. Fields other than the known ones become the seed's
`attributes` (bounded in size), which travel to every record made from it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.codec import DecodeError, short_errors
from schemas.records import Seed, seed_id_for

MAX_ATTRIBUTES_BYTES = 4096  # a few fields (a category, a tenant, a priority), not a document
KNOWN_FIELDS = frozenset({"schema_version", "id", "seed_id", "parent_id", "created_at", "text", "source", "attributes"})


def read_seed(raw: bytes | None) -> Seed:
    """The seed a value on the seeds topic holds; DecodeError, with the reason, when none."""
    if raw is None:
        raise DecodeError("the record has no value (null)", "NullValue")
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return seed_from_object(value)
    if isinstance(value, str):  # a JSON string: the text itself
        return _seed(value)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"neither a JSON object nor UTF-8 text: {exc}", "UnicodeDecodeError") from exc
    return _seed(text.rstrip("\r\n"))  # a plain text value, as `echo ... | kcat` sends it


def seed_from_object(obj: dict[str, Any]) -> Seed:
    text = obj.get("text")
    if not isinstance(text, str):
        raise DecodeError('a seed object needs a "text" field holding the instruction', "MissingText")
    expected = seed_id_for(text)
    for name in ("id", "seed_id"):
        given = obj.get(name)
        if given is not None and given != expected:
            raise DecodeError(
                f"{name} {given!r} does not match the text: a seed's id is the hash of its normalised text, "
                f"{expected} (leave the id out and it is derived)",
                "IdMismatch",
            )
    if obj.get("parent_id") is not None:
        raise DecodeError("a seed has no parent: parent_id must be null or absent", "WrongLineage")
    source = obj.get("source")
    if source is not None and not isinstance(source, str):
        raise DecodeError(f'"source" is a {type(source).__name__}, not text', "WrongType")
    return _seed(text, source=source, attributes=attributes_of(obj), created_at=obj.get("created_at"))


def attributes_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The seed's own fields: an `attributes` object and every field codeclm does not know."""
    given = obj.get("attributes", {})
    if not isinstance(given, dict):
        raise DecodeError(f'"attributes" is a {type(given).__name__}, not an object', "WrongType")
    return bounded({**{k: v for k, v in obj.items() if k not in KNOWN_FIELDS}, **given})


def bounded(attributes: dict[str, Any]) -> dict[str, Any]:
    """`attributes` as JSON values, refused (DecodeError) when over MAX_ATTRIBUTES_BYTES."""
    attributes = orjson.loads(orjson.dumps(attributes, default=str))  # dates, decimals: as text
    size = len(orjson.dumps(attributes))
    if size > MAX_ATTRIBUTES_BYTES:
        raise DecodeError(
            f"attributes too large: {size} bytes of JSON, at most {MAX_ATTRIBUTES_BYTES} (keep a few fields, "
            "not a document)",
            "AttributesTooLarge",
        )
    return attributes


def _seed(
    text: str, *, source: str | None = None, attributes: dict[str, Any] | None = None, created_at: Any = None
) -> Seed:
    seed_id = seed_id_for(text)
    given_time = isinstance(created_at, int | float) and not isinstance(created_at, bool)
    fields: dict[str, Any] = {
        "id": seed_id,
        "seed_id": seed_id,
        "parent_id": None,
        "text": text,
        "source": source,
        "created_at": float(created_at) if given_time else time.time(),
        "attributes": attributes or {},
    }
    try:
        return Seed.model_validate(fields)
    except ValidationError as exc:
        raise DecodeError(f"not a valid seed: {short_errors(exc)}", "ValidationError") from exc
