"""The one codec of every topic: pydantic models as orjson bytes, also registered with Faust."""

from __future__ import annotations

import base64
from typing import Any, Literal, TypeVar

import orjson
from faust.serializers import codecs
from pydantic import BaseModel, ValidationError

from schemas.records import SCHEMA_VERSION

M = TypeVar("M", bound=BaseModel)

CODEC_NAME = "codeclm-orjson"


class DecodeError(ValueError):
    """Bytes that are not a valid record of the expected type."""

    def __init__(self, message: str, error_class: str):
        super().__init__(message)
        self.error_class = error_class


# Kafka headers on every record codeclm writes, so a consumer in any language can route on the
# record's type and version without parsing its value.
SCHEMA_VERSION_HEADER = "codeclm-schema-version"
RECORD_TYPE_HEADER = "codeclm-record"


def encode(record: BaseModel) -> bytes:
    return orjson.dumps(record.model_dump(mode="json"))


def record_headers(record: BaseModel) -> list[tuple[str, bytes]]:
    """The headers of `record` on a topic: its schema version and its record type."""
    version = getattr(record, "schema_version", None)
    headers = [(RECORD_TYPE_HEADER, type(record).__name__.encode())]
    return headers if version is None else [(SCHEMA_VERSION_HEADER, str(version).encode()), *headers]


def decode(model: type[M], data: bytes | None) -> M:
    if data is None:
        raise DecodeError("the record has no value (null)", "NullValue")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}", "JSONDecodeError") from exc
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {type(obj).__name__}", "WrongType")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        reason = f"not a valid {model.__name__}: {short_errors(exc)}"
        raise DecodeError(reason + newer_version_hint(obj), "ValidationError") from exc


def newer_version_hint(obj: dict[str, Any]) -> str:
    """Why a record from a later codeclm may not read here, and what to do about it."""
    version = obj.get("schema_version")
    if not isinstance(version, int) or version <= SCHEMA_VERSION:
        return ""
    return (
        f" (the record is schema_version {version}, this codeclm reads up to {SCHEMA_VERSION}: upgrade it, "
        "then replay it: `codeclm deadletter --replay ID`)"
    )


def original_payload(data: bytes | None) -> tuple[str, Literal["utf-8", "base64"]]:
    """The original bytes as (text, encoding) for a dead letter: UTF-8 where it is, else base64."""
    if data is None:
        return "", "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def short_errors(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:5]]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class FaustOrjsonCodec(codecs.Codec):
    """Lets Faust send our models (`value_serializer=CODEC_NAME`)."""

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, BaseModel):
            return encode(obj)
        return orjson.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


codecs.register(CODEC_NAME, FaustOrjsonCodec())
