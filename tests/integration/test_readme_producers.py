"""The README's non-Python producers, run as it shows them against the real broker: the kcat
line (plain text values, one per line) and the Java program (a JSON object with a field of
its own). What they write is read back off the seeds topic as the seeds it should be."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from schemas import Seed, seed_id_for
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import ensure_kafka_jars
from streams.kafka.topic_io import read_records
from tests.integration.kcat import ensure_kcat
from tests.paths import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

README = (ROOT / "README.md").read_text()


def readme_block(language: str, containing: str) -> str:
    blocks = [b for b in re.findall(rf"```{language}\n(.*?)```", README, re.S) if containing in b]
    assert len(blocks) == 1, f"the README should have one {language} block with {containing!r}"
    return blocks[0]


def readme_line(containing: str) -> str:
    (line,) = [line for line in readme_block("sh", containing).splitlines() if containing in line]
    return line


def seeds_on_topic(settings) -> list[Seed]:
    async def read() -> list[Seed]:
        return [r async for _, r in read_records(settings, ["seeds"]) if isinstance(r, Seed)]

    return asyncio.run(read())


def run(script: str, settings, path: str | None = None, cwd: Path | None = None) -> None:
    env = {**os.environ, "CODECLM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}
    if path:
        env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
    # The README writes to codeclm.seeds; this test's topics have a prefix of their own.
    script = script.replace("codeclm.seeds", settings.topic("seeds"))
    done = subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"


def test_the_readme_kcat_line_feeds_one_seed_per_line(settings):
    asyncio.run(ensure_topics(settings))
    line = readme_line("kcat -P")
    run(line, settings, path=str(ensure_kcat()))
    texts = shlex.split(line.split("|")[0])[1].encode().decode("unicode_escape").splitlines()
    assert len(texts) == 2
    seeds = seeds_on_topic(settings)
    assert sorted(s.text for s in seeds) == sorted(texts)
    assert all(s.id == seed_id_for(s.text) and s.attributes == {} for s in seeds)


def test_the_readme_java_program_feeds_a_seed_with_its_attributes(settings, tmp_path):
    asyncio.run(ensure_topics(settings))
    program = readme_block("java", "class SeedProducer")
    (tmp_path / "SeedProducer.java").write_text(program.replace('"codeclm.seeds"', f'"{settings.topic("seeds")}"'))
    run_line = re.search(r"`(java -cp [^`]*SeedProducer\.java)`", README)
    assert run_line, "the README should show the java command that runs SeedProducer.java"
    command = run_line.group(1)
    jars = str(ensure_kafka_jars()).replace(str(Path.home()), "$HOME")
    assert f'"{jars}/*"' in command, f"the README's class path should be the cached jars, {jars}"
    run(command, settings, cwd=tmp_path)
    (seed,) = seeds_on_topic(settings)
    assert seed.text == "How do I rotate a leaked API key safely?"
    assert seed.id == seed_id_for(seed.text) and seed.attributes == {"tenant": "acme"}
