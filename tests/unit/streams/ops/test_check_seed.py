"""`codeclm check --seed`: one seed through every stage in this process, against the LLM double
(a stand-in for an OpenAI-compatible server, not a model), and the lines that show what each
stage made; a refusal on the way stops the run with what to fix, at once."""

from __future__ import annotations

import time

import pytest

from agents.filter import accepted_pair, rejected_instruction
from llm.double import DoubleConfig, LLMDouble
from schemas import PromptSetRef
from streams.ops.check_seed import calls_summary, filter_lines, run_seed, shorten
from streams.settings import PipelineSettings, Settings, overlay
from tests.unit import fakes

KEY = "sk-seed-0123456789abcdef"
SEED = "Write a haiku about autumn leaves falling in a quiet park"


def settings_for(url: str, **target) -> Settings:
    return overlay(
        Settings(),
        {
            "strong": {"base_url": url, "model": "gpt-5-mini", "api_key": KEY},
            "target": {"base_url": url, "model": "small-7b", "api_key": KEY, **target},
        },
    )


async def test_the_seed_goes_through_every_stage_and_each_is_shown():
    lines: list[str] = []
    async with LLMDouble(DoubleConfig(api_key=KEY)) as double:
        problems = await run_seed(settings_for(double.base_url or ""), SEED, lines.append, instructions=2)
    assert problems == []
    text = "\n".join(lines)
    assert lines[0] == f"seed: {SEED} (decode asked for 2 instructions)"
    heads = [line.split(":")[0] for line in lines if not line.startswith(" ")]
    assert heads == ["seed", "encode", "decode", "contrast on instruction 1", "filter", "tailor"]
    for shown in ("use case:", "skills:", "instruction 1:", "instruction 2:", "rubric 1:", "action:"):
        assert shown in text
    assert "strong answer (gpt-5-mini):" in text and "target answer (small-7b):" in text
    assert "judge (gpt-5-mini): strong " in text
    assert "tailored instruction (iteration 2):" in text
    assert "decode: 2 calls (decode 1, rubrics 1), " in text  # calls and tokens per stage
    assert "contrast on instruction 1: 4 calls (answer_strong 1, answer_target 1, judge 2), " in text


async def test_a_refusal_on_the_way_stops_the_run_at_once_with_what_to_fix():
    lines: list[str] = []
    async with LLMDouble(DoubleConfig(api_key=KEY, known_models=["gpt-5-mini"])) as double:
        started = time.monotonic()
        problems = await run_seed(settings_for(double.base_url or ""), SEED, lines.append)
    assert time.monotonic() - started < 5  # the client alone would wait for a fix
    (problem,) = problems
    assert problem.subject == "target endpoint"
    assert problem.fix.startswith("refused at contrast: HTTP 404")
    assert "CODECLM_TARGET__MODEL" in problem.fix
    assert lines[-1] == f"seed run stopped: {problem}"


def test_calls_summary_counts_calls_by_purpose_and_tokens():
    assert calls_summary([fakes.call("encode", 200, 30)]) == "1 call, 200 prompt + 30 completion tokens"
    calls = [fakes.call("decode", 100, 50), fakes.call("rubrics", 80, 40), fakes.call("rubrics", 80, 40)]
    assert calls_summary(calls) == "3 calls (decode 1, rubrics 2), 260 prompt + 130 completion tokens"


def test_shorten_keeps_one_line_and_cuts_long_text():
    assert shorten("a  b\n c") == "a b c"
    cut = shorten("word " * 100, limit=20)
    assert len(cut) <= 20 and cut.endswith("...")


PIPELINE = PipelineSettings(gap_threshold=3.0, max_iterations=4)


def test_filter_lines_retry_and_reject():
    assert filter_lines(fakes.scored(gap=1.5, iteration=2), PIPELINE) == [
        "filter: retry (|gap| 1.5 <= 3 at iteration 2 of 4): tailor makes the instruction harder"
    ]
    rejected = rejected_instruction(fakes.scored(gap=-0.5, iteration=4), threshold=3.0, max_iterations=4)
    assert filter_lines(rejected, PIPELINE) == [f"filter: reject: {rejected.reason}"]


@pytest.mark.parametrize(("gap", "kept"), [(5.0, "strong"), (-4.0, "target")])
def test_filter_lines_accept_shows_the_kept_answer_and_what_the_pair_cost(gap, kept):
    pair = accepted_pair(fakes.scored(gap=gap), settings_hash="x", prompts=PromptSetRef(name="paper", version="1"))
    first, cost = filter_lines(pair, PIPELINE)
    assert first == f"filter: accept (|gap| {abs(gap):g} > 3): the pair keeps the {kept} answer"
    assert cost.startswith(f"  the pair cost {pair.llm_calls:g} calls (")
