"""Reading seeds from every input format, bad lines with their numbers, following a growing file."""

from __future__ import annotations

import base64
import io
import threading
import time

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import Seed, seed_id_for
from streams.ops.feeder import RateLimit, bad_line_record
from streams.ops.seed_files import (
    BadLine,
    FeedError,
    detect_format,
    read_items,
    read_lines,
    read_seeds,
    text_stream,
)


def texts(items) -> list[str]:
    return [i.text for i in items if isinstance(i, Seed)]


def bad(items) -> list[tuple[int, str]]:
    return [(i.line, i.error_class) for i in items if isinstance(i, BadLine)]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.NDJSON", "jsonl"),
        ("a.json", "jsonl"),
        ("a.csv", "csv"),
        ("a.parquet", "parquet"),
        ("a.txt", "text"),
        ("seeds", "text"),
    ],
)
def test_format_from_the_file_name(name, fmt):
    assert detect_format(name) == fmt


def test_jsonl_bad_lines_carry_their_number_and_the_rest_is_read(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(
        b'{"text": "first"}\n'
        b"not json\n"
        b"\n"
        b'{"text": ""}\n'
        b'{"instruction": "from another field"}\n'
        b'{"other": 1}\n'
        b'"a bare string"\n'
        b"[1, 2]\n"
        b'{"text": 42}\n'
        b'{"text": "caf\xe9 in latin-1"}\n'
        b'{"text": "last, no newline"}'
    )
    items = list(read_seeds(path))
    assert texts(items) == ["first", "from another field", "a bare string", "last, no newline"]
    assert bad(items) == [
        (2, "JSONDecodeError"),
        (4, "EmptyText"),
        (6, "MissingText"),
        (8, "WrongType"),
        (9, "WrongType"),
        (10, "UnicodeDecodeError"),
    ]
    first = items[0]
    assert first.id == first.seed_id == seed_id_for("first") and first.source == "s.jsonl:1"


def test_text_field_names_the_field(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"q": "asked", "text": "not this"}\n{"text": "no q"}\n')
    items = list(read_seeds(path, text_field="q"))
    assert texts(items) == ["asked"]
    assert bad(items) == [(2, "MissingText")]


def test_plain_text_one_instruction_per_line(tmp_path):
    path = tmp_path / "s.txt"
    path.write_bytes(b"  Explain  recursion \n\n\xff\xfe broken\nSecond one\r\n")
    items = list(read_seeds(path))
    assert texts(items) == ["Explain  recursion", "Second one"]
    assert bad(items) == [(3, "UnicodeDecodeError")]
    # Normalised text decides the id: case and white space do not make a new seed.
    assert items[0].id == seed_id_for("explain recursion")


def test_csv_with_header_quoted_newlines_and_bad_rows(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "id,prompt,lang\n"
        '1,"Write a haiku, about rain",en\n'
        '2,"A question\nover two lines",en\n'
        "3,,en\n"
        "4,too,many,fields\n"
        "\n"
        "5,Last,fr\n"
    )
    items = list(read_seeds(path))
    assert texts(items) == ["Write a haiku, about rain", "A question\nover two lines", "Last"]
    assert bad(items) == [(5, "EmptyText"), (6, "WrongFieldCount")]
    assert [i for i in items if isinstance(i, BadLine)][1].raw == "4,too,many,fields"


def test_csv_without_the_text_column_is_refused_before_any_row(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(FeedError, match=r"no column named text or instruction .*the columns are a, b .*--text-field"):
        list(read_seeds(path))
    path.write_text("a,b\nhello,2\n")
    assert texts(read_seeds(path, text_field="a")) == ["hello"]


def test_parquet_reads_the_text_column_and_reports_nulls_by_row(tmp_path):
    path = tmp_path / "s.parquet"
    table = pa.table({"n": [1, 2, 3, 4], "instruction": ["one", None, "  ", "four"]})
    pq.write_table(table, path, row_group_size=2)
    items = list(read_seeds(path))
    assert texts(items) == ["one", "four"]
    assert bad(items) == [(2, "MissingText"), (3, "EmptyText")]
    assert items[-1].source == "s.parquet:4"
    with pytest.raises(FeedError, match="the columns are n, instruction"):
        list(read_seeds(path, text_field="missing"))


def test_not_a_parquet_file_is_a_clear_error(tmp_path):
    path = tmp_path / "s.parquet"
    path.write_text("hello")
    with pytest.raises(FeedError, match="not a readable Parquet file"):
        list(read_seeds(path))


def test_standard_input_style_stream():
    stream = text_stream(io.BytesIO(b'{"text": "a"}\n{"text": "b"}\n'), "jsonl")
    assert texts(read_items(stream, "jsonl", "stdin")) == ["a", "b"]


def test_follow_waits_for_complete_lines_and_stops_when_told(tmp_path):
    path = tmp_path / "grow.txt"
    path.write_text("first\n")
    stop = threading.Event()

    def writer() -> None:
        with path.open("a") as f:
            for piece in ("sec", "ond\n", "third\n"):
                time.sleep(0.05)
                f.write(piece)
                f.flush()

    thread = threading.Thread(target=writer)
    got = []
    with path.open() as stream:
        lines = read_lines(stream, follow=True, poll=0.01, stop=stop)
        got.append(next(lines))
        thread.start()
        got.append(next(lines))  # waits: "sec" alone is not a line yet
        got.append(next(lines))
        with path.open("a") as f:
            f.write("half a li")  # still being written when we stop: left for the next feed
        stop.set()
        assert list(lines) == []
    thread.join()
    assert got == ["first\n", "second\n", "third\n"]


def test_follow_starts_again_when_the_file_is_truncated(tmp_path):
    path = tmp_path / "grow.txt"
    path.write_text("old line one\nold line two\n")
    stop = threading.Event()
    with path.open() as stream:
        lines = read_lines(stream, follow=True, poll=0.01, stop=stop)
        assert [next(lines), next(lines)] == ["old line one\n", "old line two\n"]
        path.write_text("new\n")  # truncated and rewritten in place (copytruncate rotation)
        assert next(lines) == "new\n"
        stop.set()
        assert list(lines) == []


def test_bad_line_record_keeps_the_original_and_says_where():
    record = bad_line_record(BadLine(7, "not JSON: x", "oops", "JSONDecodeError"), "s.jsonl")
    assert (record.stage, record.seed_id, record.error_class) == ("feed", "", "JSONDecodeError")
    assert record.reason == "s.jsonl line 7: not JSON: x" and record.original == "oops"
    assert record.id == bad_line_record(BadLine(7, "not JSON: x", "oops", "JSONDecodeError"), "s.jsonl").id
    binary = bad_line_record(BadLine(3, "not valid UTF-8", b"\xff\xfe".decode("utf-8", "surrogateescape")), "s.txt")
    assert binary.original_encoding == "base64" and base64.b64decode(binary.original) == b"\xff\xfe"


def test_rate_limit_spaces_sends_evenly_and_saves_no_burst_while_idle():
    now = [100.0]
    limit = RateLimit(4, clock=lambda: now[0])
    assert [limit.delay() for _ in range(3)] == [0.0, 0.25, 0.5]
    now[0] = 110.0  # idle for a while
    assert [limit.delay() for _ in range(2)] == [0.0, 0.25]
    assert RateLimit(None).delay() == 0.0


def test_lines_the_seed_model_refuses_are_bad_lines_not_crashes(tmp_path):
    from streams.ops.seed_files import BadLine, read_seeds

    path = tmp_path / "seeds.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "' + "x" * 30_000 + '"}\n{"text": "ring \\u0007 bell"}\n')
    items = list(read_seeds(path))
    assert [type(i).__name__ for i in items] == ["Seed", "BadLine", "BadLine"]
    assert items[1].line == 2 and "at most 20000 characters" in items[1].reason
    assert items[2].line == 3 and "control character" in items[2].reason
    assert all(isinstance(i, BadLine) and i.error_class == "ValidationError" for i in items[1:])


# -- attributes: the other fields and columns of a row ----------------------------------------


def seeds(items) -> list[Seed]:
    return [i for i in items if isinstance(i, Seed)]


def test_jsonl_keeps_other_fields_as_attributes_and_merges_an_attributes_object(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"text": "Plan a trip", "category": "generic", "priority": 5, "attributes": {"tenant": "acme"}}\n'
        '{"instruction": "Sort a list", "id_in_my_db": 17}\n'
    )
    first, second = seeds(read_seeds(path))
    assert first.attributes == {"category": "generic", "priority": 5, "tenant": "acme"}
    assert second.attributes == {"id_in_my_db": 17}


def test_named_attributes_keep_only_those_and_a_row_without_one_keeps_the_rest(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a", "category": "x", "noise": 1}\n{"text": "b", "noise": 2}\n')
    first, second = seeds(read_seeds(path, keep=("category",)))
    assert first.attributes == {"category": "x"}
    assert second.attributes == {}
    assert [s.attributes for s in seeds(read_seeds(path, keep=()))] == [{}, {}]


def test_an_attributes_field_that_is_not_an_object_is_a_bad_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a", "attributes": [1, 2]}\n{"text": "b"}\n')
    items = list(read_seeds(path))
    assert bad(items) == [(1, "WrongType")]
    assert texts(items) == ["b"]


def test_attributes_over_the_bound_are_a_bad_line_and_the_rest_is_read(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(orjson.dumps({"text": "a", "notes": "x" * 5000}).decode() + '\n{"text": "b"}\n')
    items = list(read_seeds(path))
    assert bad(items) == [(1, "AttributesTooLarge")]
    assert texts(items) == ["b"]


def test_csv_keeps_the_other_columns_as_text(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text('category,instruction,notes\ngeneric,"Write a haiku, about rain",\n')
    (seed,) = seeds(read_seeds(path))
    assert seed.text == "Write a haiku, about rain"
    assert seed.attributes == {"category": "generic", "notes": ""}


def test_csv_names_a_kept_column_it_does_not_have(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("instruction,category\nx,y\n")
    with pytest.raises(FeedError, match=r"no column named tenant.*the columns are instruction, category"):
        list(read_seeds(path, keep=("tenant",)))


def test_parquet_keeps_typed_columns_and_reads_only_those_asked_for(tmp_path):
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "score": [1.5, None], "category": ["x", "y"]}), path)
    assert [s.attributes for s in seeds(read_seeds(path))] == [
        {"score": 1.5, "category": "x"},
        {"score": None, "category": "y"},
    ]
    assert [s.attributes for s in seeds(read_seeds(path, keep=("category",)))] == [{"category": "x"}, {"category": "y"}]
    with pytest.raises(FeedError, match="no column named tenant"):
        list(read_seeds(path, keep=("tenant",)))


def test_the_same_text_with_other_attributes_is_the_same_seed(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "Same", "category": "a"}\n{"text": "same ", "category": "b"}\n')
    first, second = seeds(read_seeds(path))
    assert first.id == second.id
