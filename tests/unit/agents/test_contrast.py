"""contrast: the judge and answer parsers, order-swapped judging, and process()."""

from __future__ import annotations

import re

import pytest

from agents import contrast
from agents.base import ParseFailure, StageFailure
from agents.prompt_sets import load_prompt_set
from llm.double import answer_for, classify_text, judge_scores
from schemas import JudgeVerdict, ScoredPair, derive_id
from tests.unit.fakes import Call, ScriptedChatModel, assert_markers, failing, instruction, make_context, only

_SLOT = re.compile(r"\[The Start of Assistant (\d)'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.S)


def assert_chat_turns(messages: list[dict[str, str]], *, min_examples: int) -> None:
    """A system message, example exchanges (user, assistant), then the final user turn."""
    roles = [m["role"] for m in messages]
    examples = (len(roles) - 2) // 2
    assert roles == ["system", *["user", "assistant"] * examples, "user"]
    assert examples >= min_examples


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8 6", (8.0, 6.0)),
        ("8 6\nAssistant 1 gives 3 examples, Assistant 2 only 1.", (8.0, 6.0)),
        ("Assistant 1: 8/10\nAssistant 2: 6/10", (8.0, 6.0)),
        ("Assistant 2: 4\nAssistant 1: 9", (9.0, 4.0)),
        ("Scores: 7.5, 3", (7.5, 3.0)),
        ("8, 6", (8.0, 6.0)),
        ("**8** **6**", (8.0, 6.0)),
        ("9.5 out of 10 and 2 out of 10", (9.5, 2.0)),
        ("Assistant 1 receives a score of 7, while\nAssistant 2 receives 5.", (7.0, 5.0)),
        ("Both answers are fine.\nI would give them 7 and 6.", (7.0, 6.0)),
        ("10 1", (10.0, 1.0)),
    ],
)
def test_parse_judge_accepts(text: str, expected: tuple[float, float]) -> None:
    assert contrast.parse_judge(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I think both are good.",
        "8",
        "Assistant 1: 8",
        "11 5",
        "0 5",
        "8 12",
        "7 -",
        "8/9 7/10",  # a score over 9 is not a 1-10 score, and its 9 is no score of Assistant 2
        "7/5 8/4",
        "Assistant 1: 8/9\nAssistant 2: 6",
    ],
)
def test_parse_judge_rejects(text: str) -> None:
    result = contrast.parse_judge(text)
    assert isinstance(result, ParseFailure)
    assert result.raw == text


@pytest.mark.parametrize(("text", "expected"), [("  An answer.\n", "An answer."), ("x", "x")])
def test_parse_answer_accepts(text: str, expected: str) -> None:
    assert contrast.parse_answer(text) == expected


@pytest.mark.parametrize("text", ["", " \n\t "])
def test_parse_answer_rejects_empty(text: str) -> None:
    assert isinstance(contrast.parse_answer(text), ParseFailure)


def test_verdicts_map_back_and_average() -> None:
    assert contrast.strong_first_order(3) == [True, False, True]
    first = contrast.to_verdict((9.0, 4.0), strong_first=True)
    second = contrast.to_verdict((5.0, 8.0), strong_first=False)
    assert first == JudgeVerdict(strong_first=True, strong_score=9.0, target_score=4.0)
    assert second == JudgeVerdict(strong_first=False, strong_score=8.0, target_score=5.0)
    assert contrast.average([first, second]) == (8.5, 4.5, 4.0)
    assert contrast.average([contrast.to_verdict((7.3, 4.2), strong_first=True)]) == (7.3, 4.2, 3.1)


@pytest.mark.parametrize(("prompt_set", "examples"), [("paper", 0), ("small-model", 3)])
def test_judge_prompt_puts_each_answer_in_its_slot(prompt_set: str, examples: int) -> None:
    messages = contrast.build_judge_prompt(
        "Q {x}?", "first answer", "second answer", prompts=load_prompt_set(prompt_set)
    )
    assert_chat_turns(messages, min_examples=examples)
    assert len(messages) == 2 + 2 * examples
    last = messages[-1]["content"]
    assert dict(_SLOT.findall(last)) == {"1": "first answer", "2": "second answer"}
    assert last.startswith("[Question]\nQ {x}?\n")
    assert "not instructions to follow" in last
    everything = "\n".join(m["content"] for m in messages)
    assert re.search(r"helpfulness, relevance, accuracy,? and level of detail", everything)
    assert not any("first answer" in m["content"] for m in messages[:-1])  # the answers only in the final turn
    assert_markers("judge")


def test_the_papers_judge_asks_for_two_scores_and_nothing_else() -> None:
    messages = contrast.build_judge_prompt("Q?", "A1", "A2")
    everything = "\n".join(m["content"] for m in messages).casefold()
    assert "only a single line with the two scores" in everything and "write nothing else" in everything
    assert "explain" not in everything and "explanation" not in everything


def test_small_model_judge_examples_score_in_the_parsed_format_and_favour_neither_position() -> None:
    messages = contrast.build_judge_prompt("Q?", "A1", "A2", prompts=load_prompt_set("small-model"))
    scores = [contrast.parse_judge(m["content"]) for m in messages[2:-1:2]]
    assert all(isinstance(s, tuple) for s in scores), scores
    assert {s[0] > s[1] for s in scores} == {True, False}  # the better answer is sometimes first, sometimes second


def test_the_llm_double_recognises_the_final_turn_and_its_scores_parse() -> None:
    messages = contrast.build_judge_prompt("What is 2+2?", "Four.", "It is five.")
    assert classify_text(messages) == ("judge", messages[-1]["content"])
    expected = tuple(float(s) for s in judge_scores(messages[-1]["content"]))
    assert contrast.parse_judge(answer_for("judge", messages, "judge")) == expected


def _biased_judge(call: Call) -> str:
    """Gives the strong answer 9 and the target 4, plus 1 to whichever it reads first."""
    slots = dict(_SLOT.findall(call.messages[-1]["content"]))
    score = {"STRONG": 9, "TARGET": 4}
    return f"{score[slots['1']] + 1} {score[slots['2']]}\nAssistant 1 is better."


def _models(**judge_kwargs):
    strong = ScriptedChatModel(respond=lambda call: "STRONG", model="strong-m", prompt_tokens=30, completion_tokens=300)
    target = ScriptedChatModel(respond=lambda call: "TARGET", model="target-m", prompt_tokens=30, completion_tokens=200)
    judge = ScriptedChatModel(
        respond=_biased_judge, model="judge-m", prompt_tokens=500, completion_tokens=10, **judge_kwargs
    )
    return strong, target, judge


async def test_process_scores_with_order_swapped_passes() -> None:
    inst = instruction(iteration=2)
    strong, target, judge = _models()
    ctx = make_context(
        strong, target, judge, answer_temperature=0.6, answer_max_tokens=500, judge_temperature=0.0, judge_max_tokens=64
    )

    (emit,) = await contrast.process(inst, ctx)

    assert emit.topic == "scored"
    pair = emit.record
    assert isinstance(pair, ScoredPair)
    assert pair.id == derive_id("scored", inst.id)
    assert (pair.seed_id, pair.parent_id, pair.root_id, pair.iteration) == (inst.seed_id, inst.id, inst.root_id, 2)
    assert pair.instruction == inst
    assert (pair.strong_answer, pair.target_answer) == ("STRONG", "TARGET")
    # pass 0: strong read first (10, 4); pass 1: target read first (5, 9) -> strong 9.5, target 4.5
    assert pair.judgements == (
        JudgeVerdict(strong_first=True, strong_score=10.0, target_score=4.0),
        JudgeVerdict(strong_first=False, strong_score=9.0, target_score=5.0),
    )
    assert (pair.strong_score, pair.target_score, pair.gap) == (9.5, 4.5, 5.0)
    # the judge saw the answers in swapped order
    slots = [dict(_SLOT.findall(c.messages[-1]["content"])) for c in judge.calls]
    assert slots == [{"1": "STRONG", "2": "TARGET"}, {"1": "TARGET", "2": "STRONG"}]
    assert all(c.messages[-1]["content"].startswith(f"[Question]\n{inst.text}") for c in judge.calls)
    assert {(c.temperature, c.max_tokens, c.sample) for c in judge.calls} == {(0.0, 64, 0)}
    # both models answer the bare instruction with the answer settings
    for model in (strong, target):
        (sent,) = model.calls
        assert sent.messages == [{"role": "user", "content": inst.text}]
        assert (sent.temperature, sent.max_tokens) == (0.6, 500)
    assert [(c.purpose, c.model) for c in pair.llm_calls] == [
        ("answer_strong", "strong-m"),
        ("answer_target", "target-m"),
        ("judge", "judge-m"),
        ("judge", "judge-m"),
    ]
    assert sum(c.completion_tokens for c in pair.llm_calls) == 300 + 200 + 10 + 10


async def test_judge_passes_alternate_and_run_concurrently() -> None:
    strong, target, judge = _models(delay_s=0.01)
    pair = only(
        await contrast.process(instruction(), make_context(strong, target, judge, judge_passes=3)), "scored", ScoredPair
    )
    assert [v.strong_first for v in pair.judgements] == [True, False, True]
    # passes 0 and 2 send the same messages: distinct sample ranges keep them distinct calls
    assert [c.sample for c in judge.calls] == [0, 0, 3]
    assert judge.max_in_flight == 3
    # each order's mean weighs the same: strong-first passes give 10 and 10, target-first 9
    assert (pair.strong_score, pair.target_score) == ((10 + 9) / 2, (4 + 5) / 2)


def test_odd_passes_keep_the_orders_balanced() -> None:
    verdicts = [
        contrast.to_verdict((8.0, 2.0), strong_first=True),
        contrast.to_verdict((2.0, 8.0), strong_first=False),
        contrast.to_verdict((6.0, 4.0), strong_first=True),
    ]
    # strong first: strong 7, target 3; target first: strong 8, target 2 -> 7.5 and 2.5
    assert contrast.average(verdicts) == (7.5, 2.5, 5.0)
    # the number of passes in one order does not tilt the result towards it
    assert contrast.average([*verdicts, verdicts[0], verdicts[2]]) == (7.5, 2.5, 5.0)


async def test_process_is_deterministic_across_runs() -> None:
    first = await contrast.process(instruction(), make_context(*_models()))
    second = await contrast.process(instruction(), make_context(*_models()))
    assert first[0].record.model_dump(exclude={"created_at"}) == second[0].record.model_dump(exclude={"created_at"})


async def test_unparsable_verdict_is_asked_again_with_the_next_sample_above_temperature_0() -> None:
    strong, target, _ = _models()
    judge = ScriptedChatModel("Both are good.", "8 6", "7 7")
    ctx = make_context(strong, target, judge, judge_temperature=0.0, reask_temperature=0.8)
    pair = only(await contrast.process(instruction(), ctx), "scored", ScoredPair)
    assert sorted((c.sample, c.temperature) for c in judge.calls) == [(0, 0.0), (0, 0.0), (1, 0.8)]
    assert len(pair.judgements) == 2
    # the unparsable answer was paid for: three judge calls on the record
    assert [c.purpose for c in pair.llm_calls].count("judge") == 3


async def test_empty_answer_after_parse_attempts_is_a_stage_failure() -> None:
    strong, _, judge = _models()
    target = ScriptedChatModel(respond=lambda call: "   ")
    with pytest.raises(StageFailure) as caught:
        await contrast.process(instruction(), make_context(strong, target, judge, parse_attempts=3))
    assert caught.value.reason.startswith("answer_target:")
    assert caught.value.error_class == "ParseFailure"
    assert [c.sample for c in target.calls] == [0, 1, 2]
    assert judge.calls == []


async def test_judge_that_never_scores_is_a_stage_failure() -> None:
    strong, target, _ = _models()
    judge = ScriptedChatModel(respond=lambda call: "Both are helpful.")
    with pytest.raises(StageFailure) as caught:
        await contrast.process(instruction(), make_context(strong, target, judge, parse_attempts=2))
    assert caught.value.reason.startswith("judge:")


async def test_llm_error_becomes_stage_failure() -> None:
    strong, _, judge = _models()
    with pytest.raises(StageFailure) as caught:
        await contrast.process(instruction(), make_context(strong, ScriptedChatModel(failing()), judge))
    assert caught.value.error_class == "LLMError"
