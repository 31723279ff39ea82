"""Metadata a user wrote, from JSONL or CSV files: `codeclm feed --metadata FILE` sends each row
straight to the metadata topic, where decode takes it as it takes encode's metadata.

A row needs a use case and skills; the column names are matched ignoring case, spaces, `-`
and `_` (`use_case`, `Use case`, `USE-CASE`; `task` too, the paper's other label; `skills` or
`skill`). Skills are a JSON list of strings (in a CSV cell too: `["tone control", "brevity"]`),
or one string separated by `;`, or by `,` when it holds no `;` (so a skill with a comma in it
needs `;` or a list). Optional `domain`, `difficulty` (easy, medium, hard) and
`format_constraints` (a list like skills) fill the richer metadata fields; every other column
becomes the record's attributes, as a seed's do.

Each row becomes a root `Metadata` record: no seed before it (`parent_id` None, `seed_text`
""), its id and `seed_id` the hash of its normalised use case and set of skills
(`schemas.metadata_id_for`), so the same metadata written twice is one root. A row that is
not usable is a `BadLine` with the reason, never a stop. Reading is synchronous and pure apart
from the file, like streams.ops.seed_files, whose line readers and CSV table it uses.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from schemas import Metadata, MetadataSummary, Record, metadata_id_for
from schemas.codec import DecodeError
from schemas.seed_input import bounded
from streams.ops.seed_files import (
    BadLine,
    FeedError,
    Keep,
    check_kept_columns,
    csv_table,
    detect_format,
    json_line,
    read_lines,
    text_stream,
    valid_utf8,
)

FORMATS = ("jsonl", "csv")
# The row's fields, by their normalised column name (see `column_key`).
USE_CASE_NAMES = ("use_case", "task")
SKILLS_NAMES = ("skills", "skill")
OPTIONAL_FIELDS = ("domain", "difficulty", "format_constraints")
RECORD_FIELDS = tuple(Record.model_fields)  # id (checked when given), attributes (merged), ...: never attributes
# User-written labels are short; anything longer is a misread row (a paragraph in the wrong column).
MAX_USE_CASE_CHARS = 200
MAX_SKILL_CHARS = 100
MAX_SKILLS = 10  # the paper's metadata has at most 3; a user may list more, not a split sentence
DIFFICULTIES = ("easy", "medium", "hard")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_SEPARATORS = re.compile(r"[\s_-]+")
_WORD = re.compile(r"\w")

MetadataItem = Metadata | BadLine


class RowError(ValueError):
    """Why a row is not usable metadata, and its error class on the dead letter."""

    def __init__(self, reason: str, error_class: str):
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class


def column_key(name: str) -> str:
    """`Use case`, `use-case`, `USE_CASE` -> `use_case`."""
    return _SEPARATORS.sub("_", name.strip().casefold()).strip("_")


def parse_list(value: Any, what: str) -> tuple[str, ...]:
    """Labels from a JSON list of strings, a string holding one (`["a", "b"]`), or a string
    separated by `;` (or by `,` when it has no `;`): stripped, empty ones and stray punctuation
    dropped, a repeat (ignoring case) kept once."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RowError(f"{what} looks like a JSON list but is not one: {exc}", "WrongType") from exc
    if isinstance(value, str):
        items: list[Any] = value.split(";" if ";" in value else ",")
    elif isinstance(value, list):
        items = value
    else:
        raise RowError(f"{what} is a {type(value).__name__}, not a list or text", "WrongType")
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise RowError(f"{what} holds a {type(item).__name__}, not text: {item!r}", "WrongType")
        label = " ".join(item.split())
        if _WORD.search(label):
            out.setdefault(label.casefold(), label)
    return tuple(out.values())


def metadata_from_fields(fields: dict[str, Any], attributes: dict[str, Any]) -> Metadata:
    """A root Metadata record from a row's fields (by normalised column name); RowError when
    the row is not usable."""
    use_case = _label(_required(fields, USE_CASE_NAMES, "use case"), "the use case", MAX_USE_CASE_CHARS)
    skills = parse_list(_required(fields, SKILLS_NAMES, "skills"), "skills")
    if not skills:
        raise RowError("no skills: give at least one (a JSON list, or text separated by ; or ,)", "EmptySkills")
    if len(skills) > MAX_SKILLS:
        raise RowError(f"{len(skills)} skills, at most {MAX_SKILLS} (the paper's metadata has 3)", "TooManySkills")
    for skill in skills:
        _label(skill, f"skill {skill[:40]!r}", MAX_SKILL_CHARS)
    constraints = fields.get("format_constraints")
    summary = MetadataSummary(
        use_case=use_case,
        skills=skills,
        domain=_optional_label(fields.get("domain"), "domain"),
        difficulty=_difficulty(fields.get("difficulty")),
        format_constraints=parse_list(constraints, "format_constraints") if _given(constraints) else (),
    )
    metadata_id = metadata_id_for(use_case, skills)
    given_id = fields.get("id")
    if _given(given_id) and given_id != metadata_id:
        raise RowError(
            f"id {given_id!r} does not match the metadata: its id is the hash of the normalised use case and "
            f"skills, {metadata_id} (leave the id out and it is derived)",
            "IdMismatch",
        )
    try:
        return Metadata(
            id=metadata_id,
            seed_id=metadata_id,
            parent_id=None,
            seed_text="",
            metadata=summary,
            attributes=bounded(attributes),
        )
    except DecodeError as exc:  # attributes over the bound
        raise RowError(str(exc), exc.error_class) from exc


def split_row(row: dict[str, Any], keep: Keep) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the metadata's fields by normalised name, the attributes: the other columns, those in
    `keep` or all of them when it is None, merged with an `attributes` object if there is one)."""
    known = {*USE_CASE_NAMES, *SKILLS_NAMES, *OPTIONAL_FIELDS, *RECORD_FIELDS}
    fields: dict[str, Any] = {}
    others: dict[str, Any] = {}
    for name, value in row.items():
        key = column_key(name)
        if key in known:
            fields.setdefault(key, value)
        else:
            others[name] = value
    given = fields.get("attributes") or {}
    if not isinstance(given, dict):
        raise RowError(f'"attributes" is a {type(given).__name__}, not an object', "WrongType")
    kept = others if keep is None else {name: others[name] for name in keep if name in others}
    return fields, {**kept, **given}


def metadata_or_bad(row: dict[str, Any], number: int, raw: str, keep: Keep) -> MetadataItem:
    if not valid_utf8(raw):
        return BadLine(number, "not valid UTF-8", raw, "UnicodeDecodeError")
    try:
        fields, attributes = split_row(row, keep)
        return metadata_from_fields(fields, attributes)
    except RowError as exc:
        return BadLine(number, exc.reason, raw, exc.error_class)


def parse_jsonl_line(line: str, number: int, keep: Keep = None) -> MetadataItem:
    read = json_line(line, number)
    if isinstance(read, BadLine):
        return read
    raw, obj = read
    if not isinstance(obj, dict):
        return BadLine(number, f"expected a JSON object, got {type(obj).__name__}", raw, "WrongType")
    return metadata_or_bad(obj, number, raw, keep)


def read_jsonl(lines: Iterable[str], keep: Keep = None) -> Iterator[MetadataItem]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield parse_jsonl_line(line, number, keep)


def read_csv(lines: Iterable[str], source: str, keep: Keep = None) -> Iterator[MetadataItem]:
    """A CSV file whose header names a use case and a skills column."""
    table = csv_table(lines)
    if table is None:
        return
    header, rows = table
    keys = {column_key(name) for name in header}
    for names, what in ((USE_CASE_NAMES, "use_case"), (SKILLS_NAMES, "skills")):
        if not keys & set(names):
            raise FeedError(f"{source}: no {what} column; the columns are {', '.join(header) or '(none)'}")
    check_kept_columns(header, keep, source)
    for row in rows:
        if isinstance(row, BadLine):
            yield row
        else:
            yield metadata_or_bad(row.cells, row.line, row.raw, keep)


def read_metadata_items(
    stream: IO[str],
    fmt: str,
    source: str,
    *,
    follow: bool = False,
    poll: float = 0.5,
    stop: threading.Event | None = None,
    keep: Keep = None,
) -> Iterator[MetadataItem]:
    """Metadata records and bad lines of a JSONL or CSV stream (see streams.ops.seed_files.text_stream)."""
    if fmt not in FORMATS:
        raise FeedError(f"{source}: metadata is read from jsonl or csv, not {fmt}")
    lines = read_lines(stream, follow=follow, poll=poll, stop=stop)
    return read_jsonl(lines, keep) if fmt == "jsonl" else read_csv(lines, source, keep)


def read_metadata(path: Path, fmt: str | None = None, keep: Keep = None) -> Iterator[MetadataItem]:
    """Metadata records and bad lines of a file, its format from its name unless given."""
    fmt = fmt or detect_format(path.name)
    with text_stream(path.open("rb"), fmt) as stream:
        yield from read_metadata_items(stream, fmt, path.name, keep=keep)


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _required(fields: dict[str, Any], names: tuple[str, ...], what: str) -> Any:
    for name in names:
        if name in fields:
            return fields[name]
    raise RowError(f"no {what} (a field named {' or '.join(names)})", f"Missing{what.title().replace(' ', '')}")


def _label(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise RowError(f"{what} is a {type(value).__name__}, not text", "WrongType")
    label = " ".join(value.split())
    if not label:
        raise RowError(f"{what} is empty", "EmptyUseCase" if what == "the use case" else "EmptySkill")
    if len(label) > limit:
        raise RowError(f"{what} is {len(label)} characters, at most {limit}: a label, not a text", "TooLong")
    if _CONTROL_CHARS.search(label):
        raise RowError(f"{what} holds a control character", "ValidationError")
    return label


def _optional_label(value: Any, what: str) -> str | None:
    return _label(value, what, MAX_USE_CASE_CHARS) if _given(value) else None


def _difficulty(value: Any) -> Any:
    if not _given(value):
        return None
    level = str(value).strip().casefold()
    if level not in DIFFICULTIES:
        raise RowError(f"difficulty {value!r} is not one of {', '.join(DIFFICULTIES)}", "WrongType")
    return level
