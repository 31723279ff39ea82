"""`codeclm feed` as a user runs it, against the embedded broker: every format, bad lines,
duplicates, following a growing file, a progress bar on a terminal, a rate limit."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import DeadLetter, Seed, seed_id_for
from streams.kafka.topic_io import read_records
from streams.settings import settings_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
FEED = [sys.executable, "-m", "streams.cli", "feed"]


def feed(settings, *args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FEED, *args],
        env={**os.environ, **settings_env(settings)},
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


async def topic(settings, name: str) -> list:
    return [r async for _, r in read_records(settings, [name], idle_timeout=1.0)]


async def test_bad_lines_are_reported_and_dead_lettered_and_a_second_feed_adds_nothing(settings, tmp_path):
    path = tmp_path / "seeds.jsonl"
    good = [f"Instruction number {i}" for i in range(50)]
    lines = [orjson.dumps({"text": t}).decode() for t in good]
    lines.insert(10, "{broken json")
    lines.insert(30, '{"text": ""}')
    lines.append('{"text": "instruction NUMBER 0"}')  # the same seed once normalised
    path.write_text("\n".join(lines) + "\n")

    first = feed(settings, str(path))
    assert first.returncode == 0, first.stderr
    assert "seeds.jsonl:11: bad line: not JSON" in first.stderr
    assert "seeds.jsonl:31: bad line: empty text" in first.stderr
    assert "fed 50 seeds" in first.stdout and "1 already fed" in first.stdout and "2 bad lines" in first.stdout

    seeds = await topic(settings, "seeds")
    assert sorted(s.id for s in seeds) == sorted(seed_id_for(t) for t in good)
    assert all(isinstance(s, Seed) for s in seeds)
    dead = await topic(settings, "deadletter")
    assert sorted(d.reason.split(":")[0] for d in dead) == ["seeds.jsonl line 11", "seeds.jsonl line 31"]
    assert all(isinstance(d, DeadLetter) and d.stage == "feed" for d in dead)
    assert {d.original for d in dead} == {"{broken json", '{"text": ""}'}

    again = feed(settings, str(path))
    assert again.returncode == 0, again.stderr
    assert "fed 0 seeds" in again.stdout and "51 already fed" in again.stdout
    assert len(await topic(settings, "seeds")) == 50

    forced = feed(settings, str(path), "--allow-duplicates")
    assert "fed 51 seeds" in forced.stdout
    assert len(await topic(settings, "seeds")) == 101


async def test_csv_parquet_text_and_standard_input_land_as_one_set_of_seeds(settings, tmp_path):
    csv_path = tmp_path / "seeds.csv"
    csv_path.write_text('id,question\n1,"Shared, across formats"\n2,Only in CSV\n')
    parquet_path = tmp_path / "seeds.parquet"
    pq.write_table(pa.table({"question": ["shared,  ACROSS formats", "Only in Parquet", None]}), parquet_path)
    text_path = tmp_path / "seeds.txt"
    text_path.write_text("Only in text\n\nShared, across formats\n")

    assert "fed 2 seeds" in feed(settings, str(csv_path)).stdout
    out = feed(settings, str(parquet_path), "--text-field", "question")
    assert "fed 1 seeds" in out.stdout and "1 already fed" in out.stdout and "1 bad lines" in out.stdout
    assert "seeds.parquet:3: bad line: no value in field 'question'" in out.stderr
    assert "fed 1 seeds" in feed(settings, str(text_path)).stdout
    piped = feed(settings, "-", "--format", "jsonl", stdin=b'{"text": "Only on stdin"}\n{"text": "Only in text"}\n')
    assert "fed 1 seeds" in piped.stdout and "1 already fed" in piped.stdout

    texts = sorted(s.text for s in await topic(settings, "seeds"))
    assert texts == ["Only in CSV", "Only in Parquet", "Only in text", "Only on stdin", "Shared, across formats"]

    missing = feed(settings, str(csv_path), "--text-field", "nope")
    assert missing.returncode == 2 and "no column named nope; the columns are id, question" in missing.stderr
    assert feed(settings, str(tmp_path / "absent.jsonl")).returncode == 2


async def test_follow_sends_lines_as_they_are_appended_until_interrupted(settings, tmp_path, processes):
    path = tmp_path / "growing.jsonl"
    path.write_text('{"text": "there from the start"}\n')
    follower = processes(
        "feed", [*FEED, str(path), "--follow", "--poll", "0.1"], {**settings_env(settings), "PYTHONUNBUFFERED": "1"}
    )

    async def wait_for(count: int) -> list:
        for _ in range(120):
            assert follower.popen.poll() is None, follower.tail()
            seeds = await topic(settings, "seeds")
            if len(seeds) >= count:
                return seeds
            await asyncio.sleep(0.25)
        raise AssertionError(f"only {len(seeds)} seeds after a while:\n{follower.tail()}")

    await wait_for(1)
    with path.open("a") as f:
        f.write('{"text": "appended later"}\nnot json at all\n{"text": "and ano')
        f.flush()
    await wait_for(2)
    with path.open("a") as f:
        f.write('ther one"}\n{"text": "there from the start"}\n')
    seeds = await wait_for(3)
    assert sorted(s.text for s in seeds) == ["and another one", "appended later", "there from the start"]

    follower.popen.send_signal(signal.SIGINT)
    assert follower.popen.wait(30) == 0, follower.tail()
    out = follower.log_path.read_text()
    assert "growing.jsonl:3: bad line: not JSON" in out
    assert "fed 3 seeds" in out and "1 already fed" in out and "1 bad lines" in out
    assert len(await topic(settings, "deadletter")) == 1


async def test_a_large_feed_with_bad_lines_goes_through_with_a_progress_bar_on_a_terminal(settings, tmp_path):
    path = tmp_path / "big.jsonl"
    lines = [
        "{not json" if i % 997 == 0 else orjson.dumps({"instruction": f"Large feed item {i}"}).decode()
        for i in range(1, 20_001)
    ]
    path.write_text("\n".join(lines) + "\n")
    bad = sum(1 for line in lines if line == "{not json")

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    try:
        started = time.monotonic()
        process = subprocess.Popen(
            [*FEED, str(path)],
            env={**os.environ, **settings_env(settings)},
            stdout=subprocess.PIPE,
            stderr=follower,
            cwd=ROOT,
        )
        os.close(follower)
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            screen += chunk
        stdout = process.stdout.read().decode()
        process.stdout.close()
        assert process.wait(60) == 0, screen.decode(errors="replace")[-2000:]
        elapsed = time.monotonic() - started
    finally:
        os.close(leader)
    text = screen.decode(errors="replace")
    assert "100%" in text and "20.0k/20.0k" in text and "lines/s" in text  # bar, count, rate
    assert "big.jsonl:997: bad line" in text
    assert "further bad lines are counted and dead-lettered, not shown" in text
    assert f"fed {20_000 - bad} seeds" in stdout and f"{bad} bad lines" in stdout
    print(f"fed 20000 lines (with {bad} bad) in {elapsed:.1f}s")
    assert len(await topic(settings, "deadletter")) == bad


async def test_rate_limit_holds_the_pace(settings, tmp_path):
    path = tmp_path / "slow.txt"
    path.write_text("".join(f"paced seed {i}\n" for i in range(12)))
    started = time.monotonic()
    out = feed(settings, str(path), "--rate", "10")
    elapsed = time.monotonic() - started
    assert out.returncode == 0 and "fed 12 seeds" in out.stdout
    assert elapsed >= 1.1  # 12 sends 0.1 s apart cannot take less; no upper bound is asserted
