"""Records: round trips through the codec, deterministic ids, and clear decode errors."""

import orjson
import pytest

from schemas import (
    SCHEMA_VERSION,
    AcceptedPair,
    DeadLetter,
    Instruction,
    JudgeVerdict,
    LLMCall,
    Metadata,
    MetadataSummary,
    RejectedInstruction,
    ScoredPair,
    Seed,
    derive_id,
    seed_id_for,
)
from schemas.codec import (
    RECORD_TYPE_HEADER,
    SCHEMA_VERSION_HEADER,
    DecodeError,
    decode,
    encode,
    original_payload,
    record_headers,
)
from tests.later_records import ADDED, with_added_fields

META = MetadataSummary(use_case="email writing", skills=("tone control", "concise phrasing"))
CALL = LLMCall(purpose="encode", model="m", prompt_tokens=10, completion_tokens=5, latency_ms=12.5)
SEED = Seed(id="seed-1", seed_id="seed-1", parent_id=None, text="Write an email.")
INSTRUCTION = Instruction(
    id="inst-1",
    seed_id="seed-1",
    parent_id="meta-1",
    root_id="inst-1",
    metadata_id="meta-1",
    iteration=1,
    index=0,
    siblings=2,
    text="Write a formal email.",
    metadata=META,
    rubrics=("r",),
    actions=("a",),
    llm_calls=(CALL,),
)
SCORED = ScoredPair(
    id="scored-1",
    seed_id="seed-1",
    parent_id="inst-1",
    root_id="inst-1",
    iteration=1,
    instruction=INSTRUCTION,
    strong_answer="s",
    target_answer="t",
    strong_score=8,
    target_score=3,
    gap=5,
    judgements=(JudgeVerdict(strong_first=True, strong_score=8, target_score=3),),
)
RECORDS = [
    SEED,
    Metadata(
        id="meta-1", seed_id="seed-1", parent_id="seed-1", seed_text="Write an email.", metadata=META, llm_calls=(CALL,)
    ),
    INSTRUCTION,
    SCORED,
    AcceptedPair(
        id="pair-1",
        seed_id="seed-1",
        parent_id="scored-1",
        root_id="inst-1",
        iteration=1,
        instruction="x",
        response="y",
        response_source="strong",
        strong_score=8,
        target_score=3,
        gap=5,
        metadata=META,
        lineage=("seed-1", "meta-1", "inst-1", "scored-1"),
        llm_calls=4,
        prompt_tokens=100,
        completion_tokens=50,
    ),
    RejectedInstruction(
        id="rej-1",
        seed_id="seed-1",
        parent_id="scored-1",
        root_id="inst-1",
        iteration=4,
        instruction="x",
        gap=1,
        reason="too easy",
    ),
    DeadLetter(
        id="dead-1",
        seed_id="",
        parent_id=None,
        stage="encode",
        reason="bad",
        error_class="JSONDecodeError",
        original="AAE=",
        original_encoding="base64",
    ),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_the_codec(record):
    data = encode(record)
    assert orjson.loads(data)["schema_version"] == SCHEMA_VERSION == 2
    assert decode(type(record), data) == record


def test_ids_are_deterministic_and_depend_on_every_part():
    assert derive_id("inst", "meta-1", 0) == derive_id("inst", "meta-1", 0)
    assert derive_id("inst", "meta-1", 0) != derive_id("inst", "meta-1", 1)
    assert derive_id("inst", "ab", "c") != derive_id("inst", "a", "bc")


def test_seed_ids_ignore_case_and_white_space():
    assert seed_id_for("Write  a haiku\n") == seed_id_for("write a HAIKU")
    assert seed_id_for("write a haiku") != seed_id_for("write a limerick")


@pytest.mark.parametrize(
    ("data", "error_class"),
    [
        (None, "NullValue"),
        (b"\xff\xfe", "JSONDecodeError"),
        (b"[1, 2]", "WrongType"),
        (b'{"text": 42}', "ValidationError"),
        (b'{"id": "s", "seed_id": "s", "parent_id": null, "text": ""}', "ValidationError"),
    ],
)
def test_bad_bytes_give_a_decode_error_naming_the_problem(data, error_class):
    with pytest.raises(DecodeError) as info:
        decode(Seed, data)
    assert info.value.error_class == error_class
    assert str(info.value)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_fields_this_version_does_not_know_are_ignored_at_any_depth(record):
    later = with_added_fields(record)
    assert later.count(ADDED.encode()) >= 2 or isinstance(record, Seed | RejectedInstruction | DeadLetter)
    assert decode(type(record), later) == record


def test_a_later_version_that_does_not_read_here_says_to_upgrade():
    later = {"schema_version": SCHEMA_VERSION + 1, "id": "s", "seed_id": "s", "parent_id": None}
    with pytest.raises(DecodeError, match=rf"schema_version {SCHEMA_VERSION + 1}, this codeclm reads up to"):
        decode(Seed, orjson.dumps(later))  # its text moved elsewhere, say
    with pytest.raises(DecodeError) as current:
        decode(Seed, orjson.dumps({**later, "schema_version": SCHEMA_VERSION}))
    assert "upgrade" not in str(current.value)


def test_headers_name_the_record_type_and_its_schema_version():
    assert record_headers(SEED) == [
        (SCHEMA_VERSION_HEADER, str(SCHEMA_VERSION).encode()),
        (RECORD_TYPE_HEADER, b"Seed"),
    ]


def test_original_payload_keeps_text_and_base64s_the_rest():
    assert original_payload(b"hello") == ("hello", "utf-8")
    assert original_payload(b"\xff") == ("/w==", "base64")
    assert original_payload(None) == ("", "utf-8")


def test_records_are_frozen():
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        SEED.text = "changed"  # type: ignore[misc]
