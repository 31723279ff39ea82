"""Seed instructions from files: JSONL, CSV, Parquet, plain text (one per line), standard input.

Reading is synchronous and pure apart from the file: each reader yields a `Seed`, or a `BadLine`
saying where and why, and never stops at a bad line. `streams.ops.feeder` sends what they yield.
Seed ids are a hash of the normalised text (schemas.seed_id_for): the same instruction is the
same seed whichever file, line or format it comes from.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError

from schemas import Seed, seed_id_for
from schemas.codec import DecodeError
from schemas.seed_input import KNOWN_FIELDS, bounded

TEXT_FIELDS = ("text", "instruction", "prompt", "question", "query")
FORMATS = ("jsonl", "csv", "parquet", "text")
SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class FeedError(ValueError):
    """The input as a whole cannot be read as asked (no such file, no text column, ...)."""


@dataclass(frozen=True)
class BadLine:
    line: int  # line of a text/JSONL/CSV file, row of a Parquet file (1-based)
    reason: str
    raw: str
    error_class: str = "BadSeedLine"


Item = Seed | BadLine
# Which other columns of a row become the seed's attributes: None for all of them.
Keep = tuple[str, ...] | None


def detect_format(name: str) -> str:
    """The format a file name suggests; plain text (one instruction per line) otherwise."""
    return SUFFIX_FORMATS.get(Path(name).suffix.lower(), "text")


def seed_from_text(text: str, source: str | None = None, attributes: dict[str, Any] | None = None) -> Seed:
    text = text.strip()
    seed_id = seed_id_for(text)
    return Seed(id=seed_id, seed_id=seed_id, parent_id=None, text=text, source=source, attributes=attributes or {})


def attributes_of_row(row: dict[str, Any], text_field: str, keep: Keep) -> dict[str, Any]:
    """The row's other columns: the ones named in `keep`, all of them when it is None."""
    names = [k for k in row if k != text_field and k not in KNOWN_FIELDS] if keep is None else keep
    return {name: row[name] for name in names if name in row}


def check_kept_columns(columns: list[str], keep: Keep, source: str) -> None:
    """A file with a header (CSV, Parquet) must have every column `--attributes` names."""
    missing = [name for name in keep or () if name not in columns]
    if missing:
        raise FeedError(
            f"{source}: no column named {', '.join(missing)} (asked for by --attributes); "
            f"the columns are {', '.join(columns)}"
        )


def seed_or_bad(
    text: Any, number: int, source: str, raw: str, field: str, attributes: dict[str, Any] | None = None
) -> Item:
    if text is None:
        return BadLine(number, f"no value in field {field!r}", raw, "MissingText")
    if not isinstance(text, str):
        return BadLine(number, f"field {field!r} is a {type(text).__name__}, not text", raw, "WrongType")
    if not text.strip():
        return BadLine(number, "empty text", raw, "EmptyText")
    if not valid_utf8(text):
        return BadLine(number, "not valid UTF-8", raw, "UnicodeDecodeError")
    try:
        return seed_from_text(text, f"{source}:{number}", bounded(attributes or {}))
    except ValidationError as exc:  # too long, control characters: the Seed model's rules
        reasons = "; ".join(e["msg"] for e in exc.errors())
        return BadLine(number, f"not a valid seed: {reasons}", raw, "ValidationError")
    except DecodeError as exc:  # attributes over the bound
        return BadLine(number, str(exc), raw, exc.error_class)


def valid_utf8(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (read as surrogate escapes, see text_stream)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_line(line: str, number: int) -> tuple[str, Any] | BadLine:
    """A JSONL line without its line end, and its JSON value; or the BadLine saying why not."""
    raw = line.rstrip("\r\n")
    if not valid_utf8(raw):
        return BadLine(number, "not valid UTF-8", raw, "UnicodeDecodeError")
    try:
        return raw, orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return BadLine(number, f"not JSON: {exc}", raw, "JSONDecodeError")


def parse_jsonl_line(
    line: str, number: int, source: str, text_field: str | None = None, keep: Keep | None = None
) -> Item:
    read = json_line(line, number)
    if isinstance(read, BadLine):
        return read
    raw, obj = read
    if isinstance(obj, str):
        return seed_or_bad(obj, number, source, raw, "<string>")
    if not isinstance(obj, dict):
        return BadLine(number, f"expected a JSON object or string, got {type(obj).__name__}", raw, "WrongType")
    fields = (text_field,) if text_field else TEXT_FIELDS
    field = next((f for f in fields if f in obj), None)
    if field is None:
        return BadLine(number, f"no text field (looked for {', '.join(fields)})", raw, "MissingText")
    given = obj.get("attributes") or {}
    if not isinstance(given, dict):
        return BadLine(number, f'"attributes" is a {type(given).__name__}, not an object', raw, "WrongType")
    return seed_or_bad(obj[field], number, source, raw, field, {**attributes_of_row(obj, field, keep), **given})


# -- lines, with or without following a growing file ------------------------------------------
def read_lines(
    stream: IO[str], *, follow: bool = False, poll: float = 0.5, stop: threading.Event | None = None
) -> Iterator[str]:
    """Lines of `stream`. With `follow`, at the end wait for more (a line is only given once its
    newline has been written) until `stop` is set; a file truncated in place is read again
    from its start."""
    stop = stop or threading.Event()
    partial = ""
    while True:
        line = stream.readline()
        if line:
            if line.endswith("\n") or not follow:
                yield partial + line
                partial = ""
            else:
                partial += line
            continue
        if not follow:
            return
        if stop.is_set():
            return  # a line still being written is left for the next feed of this file
        if _truncated(stream):
            stream.seek(0)
            partial = ""
            continue
        stop.wait(poll)


def _truncated(stream: IO[str]) -> bool:
    try:
        return os.fstat(stream.fileno()).st_size < stream.tell()
    except (OSError, io.UnsupportedOperation):
        return False


def read_text(lines: Iterable[str], source: str) -> Iterator[Item]:
    """One instruction per line; blank lines are skipped."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield seed_or_bad(line, number, source, line.rstrip("\r\n"), "<line>")


def read_jsonl(lines: Iterable[str], source: str, text_field: str | None = None, keep: Keep = None) -> Iterator[Item]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield parse_jsonl_line(line, number, source, text_field, keep)


def read_csv(lines: Iterable[str], source: str, text_field: str | None = None, keep: Keep = None) -> Iterator[Item]:
    """A CSV file with a header row; quoted fields may span lines (numbers are the row's first line)."""
    table = csv_table(lines)
    if table is None:
        return
    header, rows = table
    field = text_column(header, text_field, source)
    check_kept_columns(header, keep, source)
    for row in rows:
        if isinstance(row, BadLine):
            yield row
        else:
            attributes = attributes_of_row(row.cells, field, keep)
            yield seed_or_bad(row.cells[field], row.line, source, row.raw, field, attributes)


@dataclass(frozen=True)
class CsvRow:
    line: int  # the row's first line (a quoted field may span lines)
    cells: dict[str, str]  # column -> value, in the header's order
    raw: str  # the row written back as one CSV line, for a dead letter


def csv_table(lines: Iterable[str]) -> tuple[list[str], Iterator[CsvRow | BadLine]] | None:
    """The header of a CSV file and its rows, blank rows skipped, a row whose number of fields
    is not the header's a BadLine; None for an empty file."""
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return None

    def rows() -> Iterator[CsvRow | BadLine]:
        first = reader.line_num + 1
        for row in reader:
            number, first = first, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            raw = _csv_line(row)
            if len(row) != len(header):
                yield BadLine(number, f"{len(row)} fields, the header has {len(header)}", raw, "WrongFieldCount")
            else:
                yield CsvRow(number, dict(zip(header, row, strict=True)), raw)

    return header, rows()


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()


def text_column(columns: list[str], text_field: str | None, source: str) -> str:
    wanted = (text_field,) if text_field else TEXT_FIELDS
    found = next((c for c in wanted if c in columns), None)
    if found is None:
        raise FeedError(
            f"{source}: no column named {' or '.join(wanted)}; the columns are {', '.join(columns) or '(none)'} "
            "(name one with --text-field)"
        )
    return found


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def read_parquet(
    path: Path, text_field: str | None = None, batch_rows: int = 8192, keep: Keep = None
) -> Iterator[Item]:
    """Rows of a Parquet file, reading only the text column and the attributes' columns, a batch
    at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise FeedError(f"{path}: not a readable Parquet file: {exc}") from exc
    names = parquet.schema_arrow.names
    field = text_column(names, text_field, path.name)
    check_kept_columns(names, keep, path.name)
    columns = [field, *(c for c in attributes_of_row(dict.fromkeys(names), field, keep))]
    number = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        for row in batch.to_pylist():
            number += 1
            value = row[field]
            raw = orjson.dumps({field: value}, default=str).decode()
            yield seed_or_bad(value, number, path.name, raw, field, attributes_of_row(row, field, keep))


def read_items(
    stream: IO[str],
    fmt: str,
    source: str,
    text_field: str | None = None,
    *,
    follow: bool = False,
    poll: float = 0.5,
    stop: threading.Event | None = None,
    keep: Keep = None,
) -> Iterator[Item]:
    """Seeds and bad lines of a text-based input (jsonl, csv, text)."""
    lines = read_lines(stream, follow=follow, poll=poll, stop=stop)
    if fmt == "jsonl":
        return read_jsonl(lines, source, text_field, keep)
    if fmt == "csv":
        return read_csv(lines, source, text_field, keep)
    if fmt == "text":
        return read_text(lines, source)
    raise FeedError(f"{source}: {fmt} is not a line format")


def text_stream(binary: IO[bytes], fmt: str) -> io.TextIOWrapper:
    """UTF-8 text of a byte stream, without the byte-order mark some editors (Excel's "CSV
    UTF-8") put first; bytes that are not UTF-8 survive as surrogate escapes, so their line
    becomes a bad line with the original bytes, not a silently altered seed."""
    return io.TextIOWrapper(
        binary, encoding="utf-8-sig", errors="surrogateescape", newline="" if fmt == "csv" else None
    )


def read_seeds(path: Path, text_field: str | None = None, fmt: str | None = None, keep: Keep = None) -> Iterator[Item]:
    """Seeds and bad lines of a file, its format from its name unless given."""
    fmt = fmt or detect_format(path.name)
    if fmt == "parquet":
        yield from read_parquet(path, text_field, keep=keep)
        return
    with text_stream(path.open("rb"), fmt) as stream:
        yield from read_items(stream, fmt, path.name, text_field, keep=keep)
