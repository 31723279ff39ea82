"""`codeclm schema`: the JSON Schema of each topic's record, for consumers in any language."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="write the JSON Schema of each topic's record")
    p.add_argument("--out", default="schema", help="output folder (default ./schema)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from schemas.topics import TOPICS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for topic in TOPICS:
        schema = topic.record.model_json_schema(mode="serialization")
        schema["$id"] = f"codeclm/{topic.name}.schema.json"
        schema["description"] = f"Records on topic <prefix>{topic.name}: {topic.holds}. " + (
            schema.get("description") or ""
        )
        (out / f"{topic.name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    print(f"wrote {len(TOPICS)} JSON Schemas to {out}/")
    return 0
