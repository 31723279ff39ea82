"""Records as a later codeclm (or a producer of its own) might write them: with fields this
version does not know, on the record and on every object nested in it."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from schemas.codec import encode

ADDED = "added_in_a_later_version"
ADDED_VALUE = {"note": "a field this version does not know", "n": 1}


def with_added_fields(record: BaseModel) -> bytes:
    """`record`'s JSON with a field added to it and to each model object inside it (not to the
    free-form maps: attributes, costs by purpose)."""
    obj = orjson.loads(encode(record))
    _add(record, obj)
    return orjson.dumps(obj)


def _add(model: BaseModel, obj: dict[str, Any]) -> None:
    obj[ADDED] = ADDED_VALUE
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _add(value, obj[name])
        elif isinstance(value, tuple | list):
            for item, item_obj in zip(value, obj[name], strict=True):
                if isinstance(item, BaseModel):
                    _add(item, item_obj)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    _add(item, obj[name][key])
