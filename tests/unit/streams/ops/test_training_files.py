"""Turning accepted pairs into training files, once each, also across restarts."""

from __future__ import annotations

import io

import orjson
import pytest

from schemas import AcceptedPair, MetadataSummary
from schemas.codec import encode
from streams.ops.training_files import SinkWriter, format_pair, ids_in_file


def pair(n: int) -> AcceptedPair:
    return AcceptedPair(
        id=f"pair-{n}",
        seed_id="seed-1",
        parent_id="scored-1",
        root_id="basic-1",
        iteration=2,
        instruction=f"Question {n}?",
        response=f"Answer {n}.",
        response_source="strong",
        strong_score=9.0,
        target_score=4.5,
        gap=4.5,
        metadata=MetadataSummary(use_case="q&a", skills=("recall",)),
        lineage=("seed-1", "basic-1", "scored-1"),
        llm_calls=5,
        prompt_tokens=100,
        completion_tokens=50,
    )


def test_the_three_formats():
    p = pair(1)
    assert format_pair(p, "messages") == {
        "id": "pair-1",
        "messages": [{"role": "user", "content": "Question 1?"}, {"role": "assistant", "content": "Answer 1."}],
    }
    assert format_pair(p, "alpaca") == {
        "id": "pair-1",
        "instruction": "Question 1?",
        "input": "",
        "output": "Answer 1.",
    }
    assert format_pair(p, "sharegpt") == {
        "id": "pair-1",
        "conversations": [{"from": "human", "value": "Question 1?"}, {"from": "gpt", "value": "Answer 1."}],
    }


def test_a_system_prompt_goes_first():
    assert format_pair(pair(1), "messages", "Be brief.")["messages"][0] == {"role": "system", "content": "Be brief."}
    assert format_pair(pair(1), "sharegpt", "Be brief.")["conversations"][0] == {"from": "system", "value": "Be brief."}
    assert format_pair(pair(1), "alpaca", "Be brief.")["system"] == "Be brief."
    with pytest.raises(ValueError, match="unknown format"):
        format_pair(pair(1), "csv")


def test_writer_skips_pairs_it_has_seen_and_records_that_are_not_pairs():
    out = io.BytesIO()
    writer = SinkWriter(out, "alpaca", seen={"pair-0"})
    for value in (encode(pair(0)), encode(pair(1)), encode(pair(1)), b"not json", None, encode(pair(2))):
        writer.write(value)
    rows = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [r["id"] for r in rows] == ["pair-1", "pair-2"]
    assert (writer.stats.written, writer.stats.duplicates, writer.stats.unreadable) == (2, 2, 2)


def test_ids_in_an_existing_file_and_an_interrupted_last_line_is_cut(tmp_path):
    path = tmp_path / "out.jsonl"
    assert ids_in_file(path) == (set(), 0)
    lines = [orjson.dumps(format_pair(pair(n), "messages")) for n in range(3)]
    path.write_bytes(b"\n".join(lines) + b"\n" + b'{"id": "pair-9", "messa')
    ids, cut = ids_in_file(path)
    assert ids == {"pair-0", "pair-1", "pair-2"} and cut == len(b'{"id": "pair-9", "messa')
    assert path.read_bytes().endswith(b"\n") and len(path.read_bytes().splitlines()) == 3
    assert ids_in_file(path) == (ids, 0)


def test_attributes_are_written_only_when_asked_all_or_the_names_given():
    p = pair(1).model_copy(update={"attributes": {"category": "generic", "tenant": "acme"}})
    assert "attributes" not in format_pair(p, "messages")
    assert format_pair(p, "alpaca", attributes=True)["attributes"] == {"category": "generic", "tenant": "acme"}
    assert format_pair(p, "sharegpt", attributes=("tenant", "missing"))["attributes"] == {"tenant": "acme"}
