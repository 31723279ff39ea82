"""Reading metadata a user wrote (`codeclm feed --metadata`): JSONL and CSV as they come from
spreadsheets and scripts (a byte-order mark, quoted commas, cells over several lines, blank
lines, CRLF), skills as a list or as text, and a clear bad line for every row that is not usable."""

from __future__ import annotations

import io

import orjson
import pytest

from schemas import Metadata, metadata_id_for
from schemas.seed_input import MAX_ATTRIBUTES_BYTES
from streams.ops.metadata_files import (
    MAX_SKILLS,
    RowError,
    column_key,
    parse_list,
    read_metadata,
    read_metadata_items,
)
from streams.ops.seed_files import BadLine, FeedError, text_stream


def read(data: bytes, fmt: str, keep=None) -> list[Metadata | BadLine]:
    """What a file holding `data` yields, through the same byte-to-text layer `feed` uses."""
    with text_stream(io.BytesIO(data), fmt) as stream:
        return list(read_metadata_items(stream, fmt, f"meta.{fmt}", keep=keep))


def good(items) -> list[Metadata]:
    assert all(isinstance(i, Metadata) for i in items), [i for i in items if isinstance(i, BadLine)]
    return items


@pytest.mark.parametrize(
    ("value", "skills"),
    [
        (["tone control", "brevity"], ("tone control", "brevity")),
        ("tone control; brevity", ("tone control", "brevity")),
        ("tone control, brevity", ("tone control", "brevity")),
        ("negotiation, persuasion; data analysis", ("negotiation, persuasion", "data analysis")),  # ; wins
        ('["formal tone", "a, b"]', ("formal tone", "a, b")),  # a JSON list in a CSV cell
        ("  spaced   out ;; ;brevity ", ("spaced out", "brevity")),
        ("Python, python, PYTHON, testing", ("Python", "testing")),  # a repeat (ignoring case) once
        ("single skill", ("single skill",)),
        ("", ()),
        ([], ()),
    ],
)
def test_skills_are_a_list_or_text_separated_by_semicolons_or_commas(value, skills) -> None:
    assert parse_list(value, "skills") == skills


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3, "skills is a int, not a list or text"),
        (["fine", 7], "skills holds a int, not text: 7"),
        ('["unclosed', "looks like a JSON list but is not one"),
        ({"a": 1}, "skills is a dict"),
    ],
)
def test_skills_of_the_wrong_type_are_refused_with_the_reason(value, message) -> None:
    with pytest.raises(RowError, match=message.replace("[", r"\[")):
        parse_list(value, "skills")


@pytest.mark.parametrize("name", ["use_case", "Use case", "USE-CASE", " use  case ", "Use_Case"])
def test_column_names_ignore_case_spaces_dashes_and_underscores(name) -> None:
    assert column_key(name) == "use_case"


def test_a_spreadsheet_csv_with_bom_crlf_quoted_commas_multiline_cells_and_blank_lines() -> None:
    data = (
        "\ufeffUse case,Skills,Category\r\n"
        '"report writing, quarterly","data analysis; executive summary",finance\r\n'
        "\r\n"
        '"email writing","tone control,\r\nbrevity",support\r\n'
        ",,\r\n"
        'code review,"[""python"", ""security review""]",eng\r\n'
    ).encode()
    items = good(read(data, "csv"))
    assert [(m.metadata.use_case, m.metadata.skills, m.attributes) for m in items] == [
        ("report writing, quarterly", ("data analysis", "executive summary"), {"Category": "finance"}),
        ("email writing", ("tone control", "brevity"), {"Category": "support"}),
        ("code review", ("python", "security review"), {"Category": "eng"}),
    ]


def test_each_row_is_a_root_with_no_seed_and_an_id_from_the_metadata() -> None:
    (m,) = good(read(b'{"use_case": "Email Writing", "skills": ["Brevity", "tone  control"]}\n', "jsonl"))
    assert m.id == m.seed_id == metadata_id_for("email writing", ("tone control", "brevity"))
    assert m.parent_id is None and m.is_root and m.seed_text == "" and m.augmented_from == ()
    assert m.llm_calls == () and m.prompts is None


def test_the_same_metadata_written_differently_is_one_id() -> None:
    data = (
        b'{"use_case": "email writing", "skills": ["tone control", "brevity"]}\n'
        b'{"use case": "  EMAIL   writing", "skills": "brevity; Tone Control"}\n'
    )
    first, second = good(read(data, "jsonl"))
    assert first.id == second.id
    other = good(read(b'{"use_case": "email writing", "skills": ["brevity"]}\n', "jsonl"))[0]
    assert other.id != first.id


def test_jsonl_keeps_other_fields_as_attributes_and_blank_lines_are_skipped() -> None:
    data = (
        b'\xef\xbb\xbf{"use_case": "tutoring", "skills": ["algebra"], "tenant": "acme", "priority": 5}\n'
        b"\n   \n"
        b'{"task": "tutoring", "skill": "geometry", "attributes": {"tier": "gold"}, "id": null}\n'
    )
    first, second = good(read(data, "jsonl"))
    assert first.attributes == {"tenant": "acme", "priority": 5}
    assert (second.metadata.use_case, second.metadata.skills, second.attributes) == (
        "tutoring",
        ("geometry",),
        {"tier": "gold"},
    )
    (only_tenant,) = good(read(data.split(b"\n")[0] + b"\n", "jsonl", keep=("tenant",)))
    assert only_tenant.attributes == {"tenant": "acme"}


def test_the_richer_metadata_fields_are_read_when_given() -> None:
    data = (
        b'{"use_case": "tutoring", "skills": ["algebra"], "domain": "mathematics", "difficulty": "Hard", '
        b'"format_constraints": "a table; under 100 words"}\n'
    )
    (m,) = good(read(data, "jsonl"))
    assert (m.metadata.domain, m.metadata.difficulty, m.metadata.format_constraints) == (
        "mathematics",
        "hard",
        ("a table", "under 100 words"),
    )
    assert m.attributes == {}


@pytest.mark.parametrize(
    ("line", "error_class", "reason"),
    [
        ('{"use_case": "", "skills": ["a"]}', "EmptyUseCase", "the use case is empty"),
        ('{"use_case": "   ", "skills": ["a"]}', "EmptyUseCase", "the use case is empty"),
        ('{"skills": ["a"]}', "MissingUseCase", "no use case (a field named use_case or task)"),
        ('{"use_case": "x"}', "MissingSkills", "no skills (a field named skills or skill)"),
        ('{"use_case": "x", "skills": []}', "EmptySkills", "no skills: give at least one"),
        ('{"use_case": "x", "skills": " ; , "}', "EmptySkills", "no skills: give at least one"),
        ('{"use_case": 3, "skills": ["a"]}', "WrongType", "the use case is a int, not text"),
        ('{"use_case": "x", "skills": 3}', "WrongType", "skills is a int"),
        ('{"use_case": "x" * 3, "skills": ["a"]}', "JSONDecodeError", "not JSON"),
        ('["use_case", "skills"]', "WrongType", "expected a JSON object, got list"),
        ('"just text"', "WrongType", "expected a JSON object, got str"),
        ('{"use_case": "x", "skills": ["a"], "difficulty": "extreme"}', "WrongType", "difficulty 'extreme'"),
        ('{"use_case": "x", "skills": ["a"], "attributes": [1]}', "WrongType", '"attributes" is a list'),
        ('{"use_case": "x", "skills": ["a"], "id": "meta-0"}', "IdMismatch", "id 'meta-0' does not match"),
        ('{"use_case": "x\\u0000y", "skills": ["a"]}', "ValidationError", "holds a control character"),
    ],
)
def test_a_row_that_is_not_usable_is_a_bad_line_with_the_reason(line, error_class, reason) -> None:
    (bad,) = read(line.encode() + b"\n", "jsonl")
    assert isinstance(bad, BadLine), bad
    assert (bad.line, bad.error_class, bad.raw) == (1, error_class, line)
    assert reason in bad.reason


def test_too_many_or_too_long_labels_and_too_large_attributes_are_bad_lines() -> None:
    many = orjson.dumps({"use_case": "x", "skills": [f"skill {i}" for i in range(MAX_SKILLS + 1)]})
    long_case = orjson.dumps({"use_case": "word " * 60, "skills": ["a"]})
    big = orjson.dumps({"use_case": "x", "skills": ["a"], "notes": "n" * MAX_ATTRIBUTES_BYTES})
    items = read(b"\n".join([many, long_case, big]) + b"\n", "jsonl")
    assert [(i.line, i.error_class) for i in items] == [  # type: ignore[union-attr]
        (1, "TooManySkills"),
        (2, "TooLong"),
        (3, "AttributesTooLarge"),
    ]


def test_bytes_that_are_not_utf8_are_a_bad_line_not_a_crash() -> None:
    data = b'use_case,skills,note\n"tutoring",algebra,caf\xe9\nok,fine,x\n'
    bad, fine = read(data, "csv")
    assert isinstance(bad, BadLine) and bad.error_class == "UnicodeDecodeError" and bad.line == 2
    assert isinstance(fine, Metadata) and fine.metadata.use_case == "ok"


def test_a_csv_row_with_the_wrong_number_of_fields_is_a_bad_line() -> None:
    items = read(b"use_case,skills\nx,a,extra\ny,b\n", "csv")
    assert isinstance(items[0], BadLine) and items[0].error_class == "WrongFieldCount"
    assert isinstance(items[1], Metadata)


def test_a_csv_without_a_use_case_or_skills_column_stops_with_the_columns_it_has() -> None:
    with pytest.raises(FeedError, match="no skills column; the columns are use_case, notes"):
        read(b"use_case,notes\nx,y\n", "csv")
    with pytest.raises(FeedError, match="no use_case column"):
        read(b"skills\na\n", "csv")
    assert read(b"", "csv") == []


def test_only_jsonl_and_csv_hold_metadata(tmp_path) -> None:
    with pytest.raises(FeedError, match="metadata is read from jsonl or csv, not text"):
        read(b"tutoring\n", "text")
    path = tmp_path / "meta.csv"
    path.write_bytes(b"use_case,skills\ntutoring,algebra\n")
    (m,) = good(list(read_metadata(path)))
    assert m.metadata.skills == ("algebra",)
