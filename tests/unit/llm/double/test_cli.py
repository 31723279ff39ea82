"""The double's command line (llm/double/cli.py, python -m llm.double)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import aiohttp
import pytest

from agents import tailor
from llm.double.chat import chat_tailored_instruction
from llm.double.cli import _parser
from llm.double.faults import DoubleConfig
from tests.unit.llm.double.conversations import MULTILINE, ROOT, prompt_text, user


def test_style_is_plain_by_default_and_checked():
    assert DoubleConfig().style == "plain"
    with pytest.raises(ValueError):
        DoubleConfig(style="fancy")
    assert _parser().parse_args([]).style == "plain"
    assert _parser().parse_args(["--style", "chat"]).style == "chat"
    with pytest.raises(SystemExit):
        _parser().parse_args(["--style", "fancy"])


def test_runs_as_a_program_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "llm.double", "--port", "0", "--latency-ms", "1", "--rate-429", "0", "--style", "chat"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"LLM double listening on (http://127\.0\.0\.1:\d+/v1)\n", line)
        assert match, line + process.stderr.read()

        text = prompt_text(tailor.build_prompt(MULTILINE, "Add an edge case."))

        async def calls() -> tuple[int, str]:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{match.group(1)}/models") as response:
                    status = response.status
                payload = {"model": "strong", "messages": user(text)}
                async with http.post(f"{match.group(1)}/chat/completions", json=payload) as response:
                    return status, (await response.json())["choices"][0]["message"]["content"]

        status, content = asyncio.run(calls())
        assert status == 200
        assert content.startswith(f"**Improved Instruction:** {chat_tailored_instruction(text)}\n\n")  # --style chat
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_help_calls_it_a_double():
    result = subprocess.run(
        [sys.executable, "-m", "llm.double", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "LLM double" in result.stdout
    assert "--rate-5xx" in result.stdout and "--max-concurrency" in result.stdout
    assert "--style {plain,chat}" in result.stdout
