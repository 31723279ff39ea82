"""The stage parsers against answers written the way strong chat models write them.

The corpus in tests/fixtures/chat_answers/ holds hand-written answers in the styles of
GPT-4o, Claude, Llama-3-70B and Qwen (markdown lists, bold titles, headings, preambles,
closing remarks, code fences, tables) with the parse a careful reader expects. An instruction
keeps everything the model wrote inside it; only the wrapping goes (DESIGN.md, "Faithful to
the paper, whatever model is on the other end"). A case the parser gets wrong is marked
`xfail_reason` in its file and must keep failing until the parser is fixed (strict xfail).

The property tests generate instructions full of markdown-looking characters (`*`, `_`,
backticks, `$`, quotes, blank lines in an input), wrap them in the formats models use, and
check that each parses back unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import contrast, decode, encode, tailor
from agents.base import ParseFailure
from agents.parsing import normalise
from tests.paths import FIXTURES

CORPUS = FIXTURES / "chat_answers"
STAGES = ("encode", "decode", "rubrics", "tailor", "judge")
MIN_CASES = 12


def _load(stage: str) -> list[dict[str, Any]]:
    return yaml.safe_load((CORPUS / f"{stage}.yaml").read_text(encoding="utf-8"))


def _cases(stage: str) -> list[Any]:
    params = []
    for case in _load(stage):
        reason = case.get("xfail_reason")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


@pytest.mark.parametrize("stage", STAGES)
def test_corpus_is_well_formed(stage: str) -> None:
    """Enough cases, unique ids, each with an expected value or `fails`, and every expected
    text a string (a stray `: ` in plain YAML would silently make it a mapping)."""
    cases = _load(stage)
    ids = [case["id"] for case in cases]
    assert len(cases) >= MIN_CASES
    assert len(ids) == len(set(ids))
    for case in cases:
        assert isinstance(case["answer"], str), case["id"]
        assert ("expected" in case) != bool(case.get("fails")), case["id"]
        expected = case.get("expected")
        if stage == "decode" and expected is not None:
            assert all(isinstance(item, str) for item in expected), case["id"]
        if stage == "rubrics" and expected is not None:
            assert all(len(pair) == 2 and all(isinstance(v, str) for v in pair) for pair in expected), case["id"]
        if stage == "tailor":
            assert isinstance(case["original"], str), case["id"]
            assert expected is None or isinstance(expected, str), case["id"]


@pytest.mark.parametrize("case", _cases("decode"))
def test_decode_corpus(case: dict[str, Any]) -> None:
    result = decode.parse(case["answer"], n=case.get("n", 10))
    if case.get("fails"):
        assert isinstance(result, ParseFailure), result
    else:
        assert result == tuple(case["expected"])


@pytest.mark.parametrize("case", _cases("rubrics"))
def test_rubrics_corpus(case: dict[str, Any]) -> None:
    result = decode.parse_rubrics(case["answer"], k=case.get("k", 4))
    if case.get("fails"):
        assert isinstance(result, ParseFailure), result
    else:
        assert result == tuple((rubric, action) for rubric, action in case["expected"])


@pytest.mark.parametrize("case", _cases("tailor"))
def test_tailor_corpus(case: dict[str, Any]) -> None:
    result = tailor.parse(case["answer"], original=case["original"])
    if case.get("fails"):
        assert isinstance(result, ParseFailure), result
    else:
        assert result == case["expected"]


@pytest.mark.parametrize("case", _cases("encode"))
def test_encode_corpus(case: dict[str, Any]) -> None:
    result = encode.parse(case["answer"], max_skills=case.get("max_skills", 3))
    if case.get("fails"):
        assert isinstance(result, ParseFailure), result
    else:
        assert not isinstance(result, ParseFailure), result
        assert (result.use_case, result.skills) == (case["expected"]["use_case"], tuple(case["expected"]["skills"]))


@pytest.mark.parametrize("case", _cases("judge"))
def test_judge_corpus(case: dict[str, Any]) -> None:
    result = contrast.parse_judge(case["answer"])
    if case.get("fails"):
        assert isinstance(result, ParseFailure), result
    else:
        assert result == tuple(float(score) for score in case["expected"])


# -- properties ---------------------------------------------------------------------------
# A generated instruction is plausible: it starts with a verb, has at least two words, no line
# of it looks like a list marker, heading or commentary label at column 0, and it is not
# wrapped in emphasis or quotes as a whole. Inside, anything markdown-looking goes.

_VERBS = (
    "Write", "Explain", "Compute", "Describe", "Given", "Consider", "Implement", "Compare",
    "List", "Summarize", "Translate", "Prove", "Find", "Rewrite", "Classify", "Estimate",
)  # fmt: skip
_INPUT_WORDS = ("Alice", "Data", "Rows", "Values", "Water", "Paris", "Every", "Some", "Our", "My", "Sales", "Old")
_SPECIAL = (
    "`code`", "`a * b`", "`__init__`", "__slots__", "__dunder__", "2**10", "3**4", "a*b", "*args",
    "**kwargs", "snake_case", "_private", "x_1", "$x^2$", r"$\frac{a}{b}$", "$5", r"$$\int_0^1 x\,dx$$",
    '"quoted phrase"', "'single'", "“curly”", "it's", "**bold**", "*italic*", "_under_", "`**`", "(a, b)",
)  # fmt: skip
_CODE_LINES = (
    "x = 1", "    return x ** 2", "def f(*args, **kwargs):", "1. not a list item", "- not a bullet",
    "# a comment", 'print(f"{x!r}")', "", "    if x:", "        pass", "**bold** in code",
    "__all__ = ['f']", "> not a quote", "| not | a table |", "Let me know if this is code",
)  # fmt: skip
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
_TOKEN = st.one_of(_WORD, st.sampled_from(_SPECIAL))
_CLOSINGS = ("Let me know if you'd like more!", "I hope these help!", "Feel free to ask for variations.")


@st.composite
def _line(draw: st.DrawFn, starts: tuple[str, ...] = _VERBS) -> str:
    words = [draw(st.sampled_from(starts)), draw(_WORD), *draw(st.lists(_TOKEN, max_size=6))]
    return " ".join(words) + draw(st.sampled_from(("", ".", "?", "!")))


@st.composite
def _input_block(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(("paragraph", "bullets", "numbers", "fence", "table", "quote")))
    lines = draw(st.lists(_line(_INPUT_WORDS), min_size=1, max_size=3))
    if kind == "bullets":
        return "\n".join(f"- {line}" for line in lines)
    if kind == "numbers":
        return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))
    if kind == "table":
        return "\n".join(
            ["| Name | Value |", "|------|-------|", *(f"| {line} | {i} |" for i, line in enumerate(lines))]
        )
    if kind == "quote":
        return "\n".join(f"> {line}" for line in lines)
    if kind == "fence":
        code = draw(st.lists(st.sampled_from(_CODE_LINES), min_size=1, max_size=6).filter(lambda c: any(c)))
        opener = draw(st.sampled_from(("```", "```python", "~~~")))
        return "\n".join([opener, *code, opener[:3]])
    return "\n".join(lines)


@st.composite
def _instruction(draw: st.DrawFn, with_input: bool | None = None) -> str:
    """One instruction: a first paragraph of one to three lines, and, when it ends with a
    colon, input blocks under it (the first after a line break or a blank line, the others
    after a blank line)."""
    lines = draw(st.lists(_line(), min_size=1, max_size=3))
    if not (draw(st.booleans()) if with_input is None else with_input):
        return "\n".join(lines)
    lines[-1] = lines[-1].rstrip(".?!") + ":"
    blocks = draw(st.lists(_input_block(), min_size=1, max_size=2))
    first_gap = draw(st.sampled_from(("\n", "\n\n")))
    return "\n".join(lines) + first_gap + "\n\n".join(blocks)


def _indented(text: str, width: int = 3) -> str:
    """An item's text under its marker: continuation lines indented to the item's text."""
    first, *rest = text.split("\n")
    return "\n".join([first, *((" " * width + line) if line else "" for line in rest)])


def _instruction_lists(with_input: bool | None = None) -> st.SearchStrategy[list[str]]:
    return st.lists(_instruction(with_input), min_size=1, max_size=4, unique_by=normalise)


_PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(items=_instruction_lists(), gaps=st.lists(st.sampled_from(("\n", "\n\n")), min_size=4, max_size=4))
def test_plain_numbered_list_parses_back(items: list[str], gaps: list[str]) -> None:
    answer = ""
    for i, item in enumerate(items):
        answer += (gaps[i] if i else "") + f"{i + 1}. {_indented(item)}"
    assert decode.parse(answer, n=10) == tuple(items)


@_PROPERTY
@given(
    items=_instruction_lists(),
    titles=st.lists(st.lists(st.sampled_from(_INPUT_WORDS), min_size=1, max_size=3), min_size=4, max_size=4),
    style=st.sampled_from(("colon", "dash", "line")),
    closing=st.sampled_from(_CLOSINGS),
)
def test_bold_title_list_with_preamble_and_closing_parses_back(
    items: list[str], titles: list[list[str]], style: str, closing: str
) -> None:
    lines = [f"Sure! Here are {len(items)} instructions for you:", ""]
    for i, item in enumerate(items):
        title = " ".join(titles[i])
        head = {"colon": f"**{title}:** ", "dash": f"**{title}** – ", "line": f"**{title}**\n   "}[style]
        lines += [f"{i + 1}. {head}{_indented(item)}", ""]
    answer = "\n".join([*lines, closing])
    assert decode.parse(answer, n=10) == tuple(items)


@_PROPERTY
@given(items=_instruction_lists(with_input=True), closing=st.sampled_from(("", *_CLOSINGS)))
def test_items_with_an_input_after_the_colon_parse_back(items: list[str], closing: str) -> None:
    answer = "Here are the instructions:\n\n" + "\n\n".join(
        f"{i + 1}. {_indented(item)}" for i, item in enumerate(items)
    )
    answer += f"\n\n{closing}" if closing else ""
    assert decode.parse(answer, n=10) == tuple(items)


_ORIGINAL = "Do the original task as it was."


@_PROPERTY
@given(
    instruction=_instruction(),
    label=st.sampled_from(("**Improved Instruction:** ", "Improved Instruction: ", "**Improved Instruction:**\n")),
    explanation=st.sampled_from(
        ("**Why this is harder:** It adds constraints.", "Explanation: It adds constraints.", "")
    ),
)
def test_tailor_labelled_answer_parses_back(instruction: str, label: str, explanation: str) -> None:
    answer = label + instruction + (f"\n\n{explanation}" if explanation else "")
    assert tailor.parse(answer, original=_ORIGINAL) == instruction


# The preambles strong models put before an unlabelled improved instruction.
_TAILOR_PREAMBLES = (
    "Here is a more challenging version:",
    "Sure! Here's a harder version of the instruction:",
    "Certainly! Here is the improved instruction:",
    "Here's a more challenging version:",
)
_CLOSING_REMARK = st.sampled_from(("", "Let me know if you'd like it to be even harder!"))


def _unlabelled(preamble: str, instruction: str, closing: str) -> str:
    return f"{preamble}\n\n{instruction}" + (f"\n\n{closing}" if closing else "")


@_PROPERTY
@given(instruction=_instruction(), preamble=st.sampled_from(_TAILOR_PREAMBLES), closing=_CLOSING_REMARK)
def test_tailor_unlabelled_answer_parses_back(instruction: str, preamble: str, closing: str) -> None:
    assert tailor.parse(_unlabelled(preamble, instruction, closing), original=_ORIGINAL) == instruction
