"""The stages as declared: each emits only the topics it declares, the declarations and the topic
table agree, and the lower layers never reach up into streams/."""

from __future__ import annotations

import ast

import pytest

from agents import contrast, decode, dedup, encode, tailor
from agents import filter as filter_stage
from agents.base import Emit, Stage
from agents.dedup import Deduplicator, DedupState
from agents.pipeline import CONSERVATION_TOPICS, STAGE_BY_NAME, STAGES, TERMINAL_TOPICS, topic_table
from schemas.topics import TOPICS, decode_on, record_type
from tests.later_records import ADDED, ADDED_VALUE, with_added_fields
from tests.paths import ROOT
from tests.unit.fakes import ScriptedChatModel, by_marker, instruction, make_context, metadata, scored, seed


def _strong() -> ScriptedChatModel:
    return ScriptedChatModel(
        respond=by_marker(
            {
                "<instruction>": "Use case: writing\nSkills: poetry",
                "numbered list": "1. Write a haiku about rain.\n2. Describe a storm at sea.",
                "Rubric 1:": "Rubric 1: Form\nAction 1: Require a strict form",
                "#Instruction#": "Improved Instruction: Write a sonnet about the harbour at dawn.",
                "[The Start of Assistant 1's Answer]": "8 2",
                "": "An answer.",  # the strong answer to an instruction
            }
        )
    )


def _context(stage: Stage, **pipeline: object):
    ctx = make_context(_strong(), ScriptedChatModel(respond=lambda call: "A short answer."), **pipeline)
    if stage.name == "dedup":
        return make_context(ctx.strong, ctx.target, state=DedupState(Deduplicator(embed=None, threshold=0.9)))
    return ctx


# Inputs that drive each stage down every path it has (filter: accept, retry and reject).
INPUTS = {
    "encode": [seed()],
    "decode": [metadata()],
    # the second repeats the first's text under another id: a duplicate
    "dedup": [instruction(), instruction().model_copy(update={"id": "inst-2", "root_id": "inst-2", "index": 1})],
    "contrast": [instruction()],
    "filter": [scored(gap=5.0), scored(gap=1.0, iteration=1), scored(gap=1.0, iteration=4)],
    "tailor": [scored(iteration=1)],
}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
async def test_each_stage_emits_only_what_it_declares_and_uses_every_output(stage: Stage) -> None:
    ctx = _context(stage, instructions_per_metadata=2, rubrics_per_metadata=1)
    emitted: set[str] = set()
    for record in INPUTS[stage.name]:
        assert isinstance(record, stage.record)
        emits = await stage.process(record, ctx)
        assert stage.undeclared(emits) == [], emits
        emitted |= {emit.topic for emit in emits}
        for emit in emits:
            assert isinstance(emit.record, record_type(emit.topic))  # each topic gets its own record
    assert emitted == set(stage.outputs)  # and nothing declared is dead


ATTRIBUTES = {"tenant": "acme", "priority": 5}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
async def test_the_seeds_attributes_travel_to_every_record_a_stage_makes(stage: Stage) -> None:
    ctx = _context(stage, instructions_per_metadata=2, rubrics_per_metadata=1)
    for record in INPUTS[stage.name]:
        emits = await stage.process(record.model_copy(update={"attributes": ATTRIBUTES}), ctx)
        assert emits and all(emit.record.attributes == ATTRIBUTES for emit in emits)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
async def test_each_stage_reads_records_with_fields_it_does_not_know_and_makes_the_same(stage: Stage) -> None:
    for record in INPUTS[stage.name]:
        for topic in stage.inputs:
            later = decode_on(topic, with_added_fields(record))
            # on the seeds topic a field codeclm does not know is the producer's own: an attribute
            expected = record.model_copy(update={"attributes": {ADDED: ADDED_VALUE}}) if topic == "seeds" else record
            assert later == expected
            made = await stage.process(later, _context(stage, instructions_per_metadata=2, rubrics_per_metadata=1))
            again = await stage.process(record, _context(stage, instructions_per_metadata=2, rubrics_per_metadata=1))
            assert [(e.topic, e.record.id) for e in made] == [(e.topic, e.record.id) for e in again] != []


def test_a_stage_that_emits_an_undeclared_topic_is_caught() -> None:
    wrong = [Emit("accepted", scored().instruction), Emit("tailored", scored().instruction)]
    assert tailor.STAGE.undeclared(wrong) == ["accepted"]


def test_a_stage_whose_inputs_hold_different_records_is_refused() -> None:
    with pytest.raises(ValueError, match="inputs hold different records"):
        Stage(name="x", inputs=("seeds", "metadata"), outputs=(), process=encode.process)


def test_the_stages_run_in_pipeline_order_and_every_topic_is_accounted_for() -> None:
    assert [s.name for s in STAGES] == ["encode", "decode", "dedup", "contrast", "filter", "tailor"]
    assert list(STAGES) == [encode.STAGE, decode.STAGE, dedup.STAGE, contrast.STAGE, filter_stage.STAGE, tailor.STAGE]
    rows = {row.spec.name: row for row in topic_table()}
    assert list(rows) == [t.name for t in TOPICS]
    for name, row in rows.items():
        assert row.written_by, f"nobody writes {name}"
        # a topic nobody reads is a verdict: where a root ends
        assert row.read_by or name in TERMINAL_TOPICS, f"nobody reads {name}"
    assert rows["basic"].written_by == ("dedup",) and rows["basic"].read_by == ("contrast",)
    assert rows["tailored"].read_by == ("contrast",) and rows["retry"].written_by == ("filter",)
    assert set(CONSERVATION_TOPICS) == {"decoded", *TERMINAL_TOPICS}
    assert STAGE_BY_NAME["contrast"].roles == ("strong", "target", "judge") and not STAGE_BY_NAME["filter"].roles


LOWER_LAYERS = ("schemas", "agents", "llm")


@pytest.mark.parametrize("package", LOWER_LAYERS)
def test_the_lower_layers_never_import_streams(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "streams" or n.startswith("streams.")]
    assert offenders == []


def test_the_readme_pipeline_table_says_what_the_stages_declare() -> None:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`agents/"):
            name = cells[0].strip("`/").removeprefix("agents/").removesuffix(".py")
            rows[name] = (
                tuple(t.strip("` ") for t in cells[1].split(",")),
                tuple(t.strip("` ") for t in cells[2].split(",")),
            )
    assert rows == {stage.name: (stage.inputs, stage.outputs) for stage in STAGES}
