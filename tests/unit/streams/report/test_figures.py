"""The report's figures from hand-made records (streams/report/figures.py): no broker, no LLM."""

from __future__ import annotations

import math

import numpy as np
import pytest

from schemas import (
    AcceptedPair,
    CallTotals,
    DeadLetter,
    DuplicateInstruction,
    Instruction,
    JudgeVerdict,
    LLMCall,
    Metadata,
    MetadataSummary,
    Provenance,
    RejectedInstruction,
    ScoredPair,
    Seed,
)
from streams.report import figures
from streams.report.figures import (
    NOT_COMPUTED_EMBEDDINGS,
    compute,
    distinct_n,
    embedding_figures,
    gap_histogram,
    js_divergence,
    percentile,
)
from streams.report.pair_cost import (
    PURPOSES,
    compare_prompt_tokens,
    cost_rows,
    pair_cost_figures,
    per_accepted_pair,
    per_accepted_pair_of_run,
)

T0 = 1_700_000_000.0


def meta(use_case: str, *skills: str, **rich) -> MetadataSummary:
    return MetadataSummary(use_case=use_case, skills=skills, **rich)


def call(
    purpose: str, latency_ms: float = 100.0, *, cached: bool = False, tokens: tuple[int, int] = (10, 5)
) -> LLMCall:
    return LLMCall(
        purpose=purpose,
        model="m",
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        latency_ms=latency_ms,
        cached=cached,
    )


def metadata_record(seed: str, summary: MetadataSummary, calls=(), at: float = T0) -> Metadata:
    return Metadata(
        id=f"meta-{seed}",
        seed_id=seed,
        parent_id=seed,
        seed_text=seed,
        metadata=summary,
        llm_calls=calls,
        created_at=at,
    )


def instruction(root: str, iteration: int = 1, calls=(), summary: MetadataSummary | None = None) -> Instruction:
    return Instruction(
        id=root if iteration == 1 else f"{root}-i{iteration}",
        seed_id="s",
        parent_id="meta-s",
        root_id=root,
        metadata_id="meta-s",
        iteration=iteration,
        index=0,
        siblings=1,
        text=f"instruction {root} {iteration}",
        metadata=summary or meta("coding", "python"),
        rubrics=("r",),
        actions=("a",),
        llm_calls=calls,
    )


def scored(root: str, iteration: int, gap: float, calls=(), inst_calls=()) -> ScoredPair:
    return ScoredPair(
        id=f"scored-{root}-{iteration}",
        seed_id="s",
        parent_id=root,
        root_id=root,
        iteration=iteration,
        instruction=instruction(root, iteration, inst_calls),
        strong_answer="a",
        target_answer="b",
        strong_score=5 + gap / 2,
        target_score=5 - gap / 2,
        gap=gap,
        judgements=(JudgeVerdict(strong_first=True, strong_score=5, target_score=5),),
        llm_calls=calls,
    )


def accepted(root: str, iteration: int, summary: MetadataSummary | None = None, text: str | None = None, at=T0):
    return AcceptedPair(
        id=f"pair-{root}",
        seed_id="s",
        parent_id=f"scored-{root}-{iteration}",
        root_id=root,
        iteration=iteration,
        instruction=text or f"instruction {root}",
        response="r",
        response_source="strong",
        strong_score=9,
        target_score=4,
        gap=5,
        metadata=summary or meta("coding", "python"),
        lineage=("s", root),
        llm_calls=3,
        prompt_tokens=1,
        completion_tokens=1,
        created_at=at,
    )


def rejected(root: str, iteration: int = 4) -> RejectedInstruction:
    return RejectedInstruction(
        id=f"rejected-{root}",
        seed_id="s",
        parent_id=None,
        root_id=root,
        iteration=iteration,
        instruction="x",
        gap=0,
        reason="easy",
    )


def duplicate(root: str, method: str = "exact") -> DuplicateInstruction:
    return DuplicateInstruction(
        id=f"dup-{root}",
        seed_id="s",
        parent_id="meta-s",
        root_id=root,
        metadata_id="meta-s",
        instruction="x",
        duplicate_of="other",
        duplicate_of_text="x",
        similarity=1.0 if method == "exact" else 0.95,
        method=method,
        threshold=None if method == "exact" else 0.9,
    )


def dead(i: int, stage: str, reason: str, error_class: str = "ParseError") -> DeadLetter:
    return DeadLetter(
        id=f"dead-{i}", seed_id="s", parent_id=None, stage=stage, reason=reason, error_class=error_class, original="{}"
    )


def report(records, **kw):
    kw.setdefault("gap_threshold", 3.0)
    kw.setdefault("similarity_threshold", 0.9)
    return compute(records, **kw)


# -- Jensen-Shannon ------------------------------------------------------------------------


def test_js_divergence_of_identical_distributions_is_zero_whatever_the_totals():
    assert js_divergence({"a": 2, "b": 6}, {"a": 1, "b": 3}) == pytest.approx(0.0, abs=1e-12)


def test_js_divergence_of_disjoint_distributions_is_one():
    assert js_divergence({"a": 5, "b": 1}, {"c": 2}) == pytest.approx(1.0)


def test_js_divergence_matches_the_formula_in_between():
    p, q = {"a": 1, "b": 1}, {"a": 1}
    # m = (0.75, 0.25): 0.5 * [0.5 log2(0.5/0.75) + 0.5 log2(0.5/0.25)] + 0.5 * [1 * log2(1/0.75)]
    expected = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(2)) + 0.5 * math.log2(1 / 0.75)
    assert js_divergence(p, q) == pytest.approx(expected)
    assert 0 < expected < 1


def test_js_divergence_is_none_when_a_side_is_empty():
    assert js_divergence({"a": 1}, {}) is None


def test_distributions_compare_seeds_with_accepted_pairs_ignoring_case_and_spaces():
    records = [
        ("metadata", metadata_record("s1", meta("Coding", "python", "Debugging"))),
        ("metadata", metadata_record("s2", meta("writing", "tone"))),
        ("accepted", accepted("r1", 1, meta("coding ", "Python"))),
        ("accepted", accepted("r2", 1, meta("WRITING", "tone"))),
    ]
    r = report(records)
    use_case, skills = r.distributions
    assert (use_case.name, skills.name) == ("use_case", "skills")
    assert use_case.seeds == {"coding": 1, "writing": 1} == use_case.accepted
    assert use_case.js_divergence == pytest.approx(0.0)
    assert skills.seeds == {"debugging": 1, "python": 1, "tone": 1}
    assert skills.accepted == {"python": 1, "tone": 1}
    assert 0 < skills.js_divergence < 1


# -- rich metadata -------------------------------------------------------------------------


def test_rich_breakdown_is_absent_when_no_record_has_the_fields():
    r = report([("metadata", metadata_record("s1", meta("coding", "python"))), ("accepted", accepted("r1", 1))])
    assert not r.rich_metadata
    assert [d.name for d in r.distributions] == ["use_case", "skills"]


def test_rich_breakdown_is_present_when_the_fields_are_set():
    rich_seed = meta("coding", "python", domain="Software", difficulty="hard", format_constraints=("JSON output",))
    plain_seed = meta("writing", "tone", domain="marketing", difficulty="easy")
    records = [
        ("metadata", metadata_record("s1", rich_seed)),
        ("metadata", metadata_record("s2", plain_seed)),
        ("accepted", accepted("r1", 1, rich_seed)),
    ]
    r = report(records)
    assert r.rich_metadata
    by_name = {d.name: d for d in r.distributions}
    assert list(by_name) == ["use_case", "skills", "domain", "difficulty", "format_constraints"]
    assert by_name["domain"].seeds == {"marketing": 1, "software": 1}
    assert by_name["domain"].accepted == {"software": 1}
    assert by_name["difficulty"].seeds == {"easy": 1, "hard": 1}
    assert by_name["format_constraints"].seeds == {"(none)": 1, "json output": 1}
    assert by_name["format_constraints"].accepted == {"json output": 1}
    assert by_name["difficulty"].js_divergence == pytest.approx(js_divergence({"easy": 1, "hard": 1}, {"hard": 1}))


# -- counting once, per iteration -----------------------------------------------------------


def test_per_iteration_counts_of_accepted_retried_and_rejected():
    records = [
        ("accepted", accepted("r1", 1)),
        ("accepted", accepted("r2", 1)),
        ("accepted", accepted("r3", 2)),
        ("retry", scored("r3", 1, 1.0)),
        ("retry", scored("r4", 1, 0.5)),
        ("retry", scored("r4", 2, 0.5)),
        ("retry", scored("r4", 3, 0.5)),
        ("rejected", rejected("r4", 4)),
    ]
    its = report(records).iterations
    assert [(row.iteration, row.accepted, row.retried, row.rejected) for row in its.rows] == [
        (1, 2, 2, 0),
        (2, 1, 1, 0),
        (3, 0, 1, 0),
        (4, 0, 0, 1),
    ]
    assert its.accepted_total == 3
    assert its.first_iteration_share == pytest.approx(2 / 3)
    assert its.paper_first_iteration_share == 0.7


def test_replayed_copies_are_counted_once():
    pair = accepted("r1", 1)
    meta_record = metadata_record("s1", meta("coding", "python"), calls=(call("encode"),))
    letter = dead(1, "contrast", "judge said nothing")
    records = [
        ("metadata", meta_record),
        ("metadata", meta_record),
        ("accepted", pair),
        ("accepted", pair),
        ("accepted", accepted("r2", 2)),
        ("deadletter", letter),
        ("deadletter", letter),
        ("duplicates", duplicate("r9")),
        ("duplicates", duplicate("r9")),
    ]
    r = report(records)
    assert (r.overview.metadata, r.overview.accepted, r.overview.dead_letters, r.overview.duplicates) == (1, 2, 1, 1)
    assert r.distributions[0].seeds == {"coding": 1}
    assert r.iterations.first_iteration_share == pytest.approx(0.5)
    assert r.stages[0].calls == 1


def test_the_same_instruction_on_decoded_and_basic_pays_its_calls_once():
    root = instruction("r1", 1, calls=(call("decode"), call("rubrics")))
    r = report([("decoded", root), ("basic", root)])
    decode = next(s for s in r.stages if s.stage == "decode")
    assert decode.calls == 2


def test_time_window_keeps_records_created_inside_it():
    records = [("accepted", accepted(f"r{i}", 1, at=T0 + i)) for i in range(10)]
    r = report(records, since=T0 + 3, until=T0 + 7)
    assert r.overview.accepted == 4  # 3, 4, 5, 6: since is inclusive, until exclusive
    assert r.window == {"since": T0 + 3, "until": T0 + 7}


# -- gap histogram -------------------------------------------------------------------------


def test_gap_histogram_counts_every_scored_pair_and_the_kept_ones():
    gaps = [-9.0, -3.5, -3.0, 0.0, 0.25, 2.5, 3.0, 3.5, 9.0]
    g = gap_histogram(gaps, 3.0)
    assert g.total == sum(b["count"] for b in g.bins) == len(gaps)
    assert g.kept == 4  # |gap| > 3: -9, -3.5, 3.5, 9 (exactly 3 goes back to tailor)
    bin_of_3 = next(b for b in g.bins if b["lo"] <= 3.0 < b["hi"])
    assert bin_of_3["count"] == 1 and bin_of_3["hi"] <= 3.5
    assert g.bins[0]["lo"] <= -9 and g.bins[-1]["hi"] > 9


def test_gap_histogram_from_scored_topic_uses_the_threshold_given():
    records = [("scored", scored(f"r{i}", 1, gap)) for i, gap in enumerate([4.0, -5.0, 1.0])]
    g = report(records, gap_threshold=4.5).gap
    assert (g.total, g.kept, g.threshold) == (3, 1, 4.5)


# -- LLM cost ------------------------------------------------------------------------------


def test_percentiles_interpolate_between_ranks():
    values = [50.0, 10.0, 40.0, 20.0, 30.0]
    assert percentile(values, 50) == 30.0
    assert percentile(values, 95) == pytest.approx(48.0)  # rank 3.8: 40 + 0.8 * 10
    assert percentile(values, 95) == pytest.approx(float(np.percentile(values, 95)))
    assert percentile([], 50) is None


def test_calls_tokens_and_latency_per_stage_with_cached_calls_apart():
    records = [
        ("metadata", metadata_record("s1", meta("c", "p"), calls=(call("encode", 100),))),
        ("metadata", metadata_record("s2", meta("c", "p"), calls=(call("encode", 300, tokens=(20, 8)),))),
        ("basic", instruction("r1", 1, calls=(call("decode", 1000), call("rubrics", 500)))),
        ("tailored", instruction("r1", 2, calls=(call("tailor", 700),))),
        (
            "scored",
            scored(
                "r1",
                1,
                1.0,
                calls=(call("answer_strong", 10), call("answer_target", 20), call("judge", 30, cached=True)),
            ),
        ),
        ("retry", scored("r1", 1, 1.0, calls=(call("answer_strong", 10),))),  # the same pair again: not new calls
    ]
    stages = {s.stage: s for s in report(records).stages}
    assert list(stages) == ["encode", "decode", "contrast", "tailor"]
    assert (stages["encode"].calls, stages["encode"].prompt_tokens, stages["encode"].completion_tokens) == (2, 30, 13)
    assert stages["encode"].latency_ms_mean == 200 and stages["encode"].latency_ms_p50 == 200
    assert stages["encode"].latency_ms_p95 == pytest.approx(290)
    assert (stages["decode"].calls, stages["decode"].latency_ms_p50) == (2, 750)
    assert (stages["contrast"].calls, stages["contrast"].cached_calls) == (2, 1)
    assert stages["contrast"].latency_ms_mean == 15  # the cached call has no latency to count
    assert stages["tailor"].calls == 1


# -- duplicates ----------------------------------------------------------------------------


def test_calls_saved_is_dropped_times_contrast_and_tailor_calls_per_finished_root():
    contrast = (call("answer_strong"), call("answer_target"), call("judge"), call("judge"))
    records = [
        ("basic", instruction("r1", 1, calls=(call("decode"), call("rubrics")))),  # decode calls: not saved
        ("scored", scored("r1", 1, 0.0, calls=contrast)),
        ("tailored", instruction("r1", 2, calls=(call("tailor"),))),
        ("scored", scored("r1", 2, 5.0, calls=contrast)),
        ("accepted", accepted("r1", 2)),
        ("scored", scored("r2", 1, 5.0, calls=contrast)),
        ("accepted", accepted("r2", 1)),
        ("scored", scored("r3", 1, 0.0, calls=contrast)),  # still in flight: not a finished root
        ("duplicates", duplicate("r7", "exact")),
        ("duplicates", duplicate("r8", "embedding")),
        ("duplicates", duplicate("r9", "embedding")),
    ]
    d = report(records).duplicates
    assert d.dropped == 3 and d.by_method == {"embedding": 2, "exact": 1}
    assert [e["method"] for e in d.examples] == ["embedding", "embedding"]  # identical texts teach little
    only_exact = report([("duplicates", duplicate(f"r{i}", "exact")) for i in range(5)]).duplicates
    assert [e["method"] for e in only_exact.examples] == ["exact"] * 3
    assert (d.finished_roots, d.calls_after_decode) == (2, 13)
    assert d.calls_per_finished_root == 6.5
    assert d.calls_saved_estimate == pytest.approx(19.5)


def test_no_duplicates_topic_means_nothing_dropped_and_nothing_saved():
    d = report([("accepted", accepted("r1", 1))]).duplicates
    assert (d.dropped, d.by_method, d.calls_saved_estimate) == (0, {}, 0.0)


# -- dead letters --------------------------------------------------------------------------


def test_dead_letters_grouped_by_stage_error_class_and_reason_kind():
    letters = [
        dead(1, "contrast", "judge answer unparsable for inst-0123456789abcdef0123 after 3 attempts"),
        dead(2, "contrast", "judge answer unparsable for inst-aaaaaaaaaaaaaaaaaaaa after 3 attempts"),
        dead(3, "encode", "no use case", "ValidationError"),
    ]
    rows = report([("deadletter", d) for d in letters]).dead_letters
    assert [(r.stage, r.error_class, r.count) for r in rows] == [
        ("contrast", "ParseError", 2),
        ("encode", "ValidationError", 1),
    ]
    assert "#" in rows[0].reason and "0123" not in rows[0].reason


# -- diversity -----------------------------------------------------------------------------


def test_distinct_n_counts_within_each_text():
    texts = ["the cat sat", "The cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # the cat (twice), cat sat, cat ran
    assert distinct_n(["one"], 2) is None


def test_embedding_figures_from_known_vectors():
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    dispersion, rate, nearest = embedding_figures(v, 0.9, chunk=2)  # chunks smaller than n on purpose
    # pair distances: 0, 1, 1 -> mean 2/3; rows 0 and 1 have an identical neighbour
    assert dispersion == pytest.approx(2 / 3)
    assert rate == pytest.approx(2 / 3)
    assert nearest == pytest.approx([1.0, 1.0, 0.0])


def test_embedding_figures_are_null_with_a_reason_when_no_embedder():
    records = [("accepted", accepted(f"r{i}", 1, text=f"write a poem about {i}")) for i in range(3)]
    d = report(records).diversity
    assert d.distinct_1 is not None
    assert d.embedding_dispersion is None and d.near_duplicate_rate is None
    assert d.embeddings_note == NOT_COMPUTED_EMBEDDINGS
    assert report(records).as_json()["diversity"]["near_duplicate_rate"] is None


def test_embedding_figures_use_the_embedder_given():
    texts = ["alpha", "alpha again", "beta"]
    vectors = {"alpha": [1.0, 0.0], "alpha again": [0.96, 0.28], "beta": [0.0, 1.0]}
    records = [("accepted", accepted(f"r{i}", 1, text=t)) for i, t in enumerate(texts)]
    d = report(records, embed=lambda batch: np.array([vectors[t] for t in batch])).diversity
    assert d.near_duplicate_rate == pytest.approx(2 / 3)
    assert d.embedding_dispersion == pytest.approx(1 - (0.96 + 0 + 0.28) / 3)
    assert d.embeddings_note is None


def test_json_summary_has_every_section():
    data = report([("seeds", Seed(id="s", seed_id="s", parent_id=None, text="hi"))]).as_json()
    assert set(data) >= {
        "overview",
        "distributions",
        "diversity",
        "gap",
        "iterations",
        "duplicates",
        "stages",
        "dead_letters",
    }
    assert data["overview"]["seeds"] == 1
    assert "nearest_similarity" not in data["diversity"]
    assert figures.REPORT_TOPICS[0] == "seeds"


# -- the page ------------------------------------------------------------------------------


def test_page_of_an_empty_run_renders_with_no_figures_made_up():
    from streams.report.html import render

    page = render(report([]), topic_prefix="empty.", generated_at=T0)
    assert "no scored pairs" in page and "no labels in this run" in page
    assert NOT_COMPUTED_EMBEDDINGS in page


def test_page_escapes_what_the_llm_wrote_and_links_nothing_outside():
    from streams.report.html import render

    evil = meta("<script>alert(1)</script>", "<img src=http://x/y.png>")
    records = [
        ("metadata", metadata_record("s1", evil)),
        ("accepted", accepted("r1", 1, evil)),
        ("scored", scored("r1", 1, 5.0)),
        ("deadletter", dead(1, "encode", "<b>bad</b>")),
    ]
    page = render(report(records), topic_prefix="t.", generated_at=T0)
    assert "<script>" not in page and "<img" not in page and "<b>bad" not in page
    assert "&lt;script&gt;" in page
    assert page.count("<svg") == 5  # use cases, skills, gap, iterations, stages


def test_decoded_instructions_count_kept_and_dropped_roots_once():
    root = instruction("r1")
    records = [("decoded", root), ("basic", root), ("decoded", instruction("r2")), ("duplicates", duplicate("r2"))]
    o = report(records).overview
    assert (o.decoded_instructions, o.basic_instructions, o.duplicates) == (2, 1, 1)


# -- cost per accepted pair by stage -------------------------------------------------------


def costed_pair(root: str, cost: dict[str, tuple[float, float, float]], *, prompt_set: str = "paper") -> AcceptedPair:
    """An accepted pair carrying its own cost: purpose -> (calls, prompt tokens, completion tokens)."""
    by_purpose = {p: CallTotals(calls=c, prompt_tokens=pt, completion_tokens=ct) for p, (c, pt, ct) in cost.items()}
    pair = accepted(root, 1)
    return pair.model_copy(
        update={
            "cost_by_purpose": by_purpose,
            "llm_calls": sum(c for c, _, _ in cost.values()),
            "provenance": Provenance(
                strong_model="s",
                target_model="t",
                judge_model="s",
                prompt_set=prompt_set,
                prompt_version="v1",
                settings_hash="h",
            ),
        }
    )


def test_cost_per_accepted_pair_is_the_mean_of_the_pairs_own_cost_by_purpose():
    a = costed_pair("r1", {"encode": (0.1, 20, 2), "judge": (2, 600, 20), "answer_strong": (1, 50, 80)})
    b = costed_pair("r2", {"encode": (0.1, 20, 2), "judge": (4, 1400, 40), "tailor": (1, 90, 30)})
    cost = per_accepted_pair([a, b, a])  # a replayed copy counts once
    assert cost.basis == "pair" and cost.pairs == 2 and cost.without_breakdown == 0
    assert [r.purpose for r in cost.rows] == list(PURPOSES)  # every purpose, pipeline order
    judge = cost.row("judge")
    assert (judge.stage, judge.calls, judge.prompt_tokens, judge.completion_tokens) == ("contrast", 3, 1000, 30)
    assert cost.row("encode").calls == pytest.approx(0.1)
    assert cost.row("tailor").prompt_tokens == 45 and cost.row("decode").calls == 0
    total = cost.total
    assert total.calls == pytest.approx((3.1 + 5.1) / 2)
    assert total.prompt_tokens == pytest.approx((670 + 1510) / 2)
    assert total.completion_tokens == pytest.approx((102 + 72) / 2)
    assert cost.prompt_share("judge") == pytest.approx(1000 / 1090)


def test_pairs_without_a_breakdown_are_left_out_of_the_mean_and_counted():
    old = accepted("old", 1)  # made before pairs carried cost_by_purpose
    new = costed_pair("new", {"judge": (2, 500, 10)})
    cost = per_accepted_pair([old, new])
    assert (cost.pairs, cost.without_breakdown) == (1, 1)
    assert cost.total.prompt_tokens == 500
    nothing = per_accepted_pair([old])
    assert nothing.total is None and nothing.prompt_share("judge") is None


def test_unknown_purposes_follow_the_known_ones():
    cost = per_accepted_pair([costed_pair("r", {"judge": (1, 1, 1), "critique": (1, 2, 3)})])
    assert [r.purpose for r in cost.rows][-1] == "critique"
    assert cost.row("critique").stage == "critique" and cost.total.calls == 2


def test_run_cost_divides_every_call_by_the_accepted_pairs():
    calls = [call("judge", tokens=(100, 4))] * 6 + [call("encode", tokens=(30, 3))] * 3
    cost = per_accepted_pair_of_run(calls, accepted=2)
    assert cost.basis == "run" and cost.pairs == 2
    assert cost.row("judge").calls == 3 and cost.row("judge").prompt_tokens == 300
    assert cost.row("encode").completion_tokens == pytest.approx(4.5)
    assert cost.total.calls == pytest.approx(4.5) and cost.total.prompt_tokens == 345
    assert per_accepted_pair_of_run(calls, accepted=0).total is None


def test_report_shows_the_pairs_own_cost_next_to_the_run_per_accepted_pair():
    """Two roots of one metadata; one is accepted, one is rejected. The accepted pair's own
    cost is half the shared calls plus its contrast; the run's also pays for the rejected root."""
    shared = (call("decode", tokens=(40, 100)), call("rubrics", tokens=(60, 20)))
    contrast = (
        call("answer_strong"),
        call("answer_target"),
        call("judge", tokens=(300, 6)),
        call("judge", tokens=(300, 6)),
    )
    records = [
        ("metadata", metadata_record("s", meta("coding", "python"), calls=(call("encode", tokens=(80, 8)),))),
        ("decoded", instruction("r1", 1, calls=shared)),
        ("scored", scored("r1", 1, 5.0, calls=contrast)),
        ("scored", scored("r2", 4, 0.0, calls=contrast)),
        ("rejected", rejected("r2", 4)),
        (
            "accepted",
            costed_pair(
                "r1",
                {
                    "encode": (0.5, 40, 4),
                    "decode": (0.5, 20, 50),
                    "rubrics": (0.5, 30, 10),
                    "answer_strong": (1, 10, 5),
                    "answer_target": (1, 10, 5),
                    "judge": (2, 600, 12),
                },
            ),
        ),
    ]
    c = report(records).cost_per_pair
    assert c.pair.pairs == c.run.pairs == 1
    assert c.pair.total.calls == pytest.approx(5.5)
    assert c.run.total.calls == 11  # every call of the run: 1 encode, 2 shared, 2 x 4 contrast
    assert c.run.row("judge").prompt_tokens == 1200 and c.pair.row("judge").prompt_tokens == 600
    assert c.run.total.prompt_tokens > c.pair.total.prompt_tokens  # the rejected root is paid for
    assert c.prompt_sets == {"paper@v1": 1}

    data = report(records).as_json()["cost_per_pair"]
    judge = next(row for row in data["pair"]["rows"] if row["purpose"] == "judge")
    assert judge["prompt_tokens"] == 600 and judge["prompt_share"] == pytest.approx(600 / 710)
    assert data["run"]["total"]["calls"] == 11


def test_cost_table_puts_both_bases_side_by_side():
    figures = pair_cost_figures([costed_pair("r", {"judge": (2, 600, 12)})], [call("judge", tokens=(300, 6))] * 4)
    rows = {row[0]: row for row in cost_rows(figures)}
    assert list(rows) == [*PURPOSES, "total"]
    assert rows["judge"] == ["judge", "contrast", 2, 600, 12, 4, 1200, 24]
    assert rows["encode"][2:] == [0, 0, 0, 0, 0, 0]
    assert rows["total"][:3] == ["total", "", 2]
    empty = pair_cost_figures([], [])
    assert rows.keys() == {r[0] for r in cost_rows(empty)}
    assert all(v is None for r in cost_rows(empty) for v in r[2:])


def test_prompt_sets_compared_side_by_side_with_shares_and_ratios():
    paper = per_accepted_pair([costed_pair("r", {"encode": (0.1, 30, 1), "judge": (2, 600, 4)})])
    small = per_accepted_pair([costed_pair("r", {"encode": (0.1, 60, 1), "judge": (2, 1500, 4)})])
    headers, rows = compare_prompt_tokens({"paper": paper, "small-model": small})
    assert headers == [
        "purpose",
        "stage",
        "paper: prompt tok",
        "paper: share",
        "small-model: prompt tok",
        "small-model: share",
        "small-model / paper",
    ]
    by = {row[0]: row for row in rows}
    assert by["judge"][2:] == [600, pytest.approx(600 / 630), 1500, pytest.approx(1500 / 1560), 2.5]
    assert by["encode"][6] == 2.0
    assert by["decode"][6] is None  # nothing to compare with
    assert by["total"][2:] == [630, 1.0, 1560, 1.0, pytest.approx(1560 / 630)]


def test_page_and_summary_show_cost_per_accepted_pair():
    from streams.cli.commands.report import cost_lines
    from streams.report.html import render

    records = [
        ("scored", scored("r1", 1, 5.0, calls=(call("judge", tokens=(300, 6)),) * 2)),
        ("accepted", costed_pair("r1", {"judge": (2, 600, 12)}, prompt_set="<small>")),
    ]
    r = report(records)
    page = render(r, topic_prefix="t.", generated_at=T0)
    assert "LLM cost per accepted pair by stage" in page and "run/accepted: prompt tok" in page
    assert "&lt;small&gt;@v1" in page and "<small>" not in page
    text = "\n".join(cost_lines(r.cost_per_pair))
    assert "its own cost: 2.00 LLM calls, 600 prompt + 12 completion tokens" in text
    assert "the run's / accepted pairs: 2.00 calls, 600 prompt + 12 completion tokens" in text
    assert "pair: the accepted pairs' own cost" in text and "run/accepted: every LLM call" in text
    assert cost_lines(report([]).cost_per_pair) == ["cost per accepted pair: no accepted pairs"]
    assert "no accepted pairs: nothing to divide by" in render(report([]), topic_prefix="t.", generated_at=T0)


def test_prices_turn_the_cost_per_pair_and_per_stage_into_dollars():
    from agents import cost
    from agents.cost import Price
    from tests.unit.fakes import instruction

    calls = (
        call("answer_strong", tokens=(1000, 500)),
        call("answer_target", tokens=(1000, 100)),
        call("judge", tokens=(2000, 10)),
    )
    pair = AcceptedPair(
        id="pair-1",
        seed_id="s",
        parent_id="x",
        root_id="r",
        iteration=1,
        instruction="i",
        response="a",
        response_source="strong",
        strong_score=9,
        target_score=2,
        gap=7,
        metadata=meta("u", "s"),
        lineage=(),
        llm_calls=3,
        prompt_tokens=4000,
        completion_tokens=610,
        cost_by_purpose=cost.by_purpose(calls),
    )
    scored_pair = ScoredPair(
        id="scored-1", seed_id="s", parent_id="i", root_id="r", iteration=1, instruction=instruction(),
        strong_answer="a", target_answer="b", strong_score=9, target_score=2, gap=7, judgements=(), llm_calls=calls,
    )  # fmt: skip
    prices = {"strong": Price(10.0, 30.0), "target": Price(0.0, 0.0)}  # the judge has no price
    r = compute([("accepted", pair), ("scored", scored_pair)], gap_threshold=3, similarity_threshold=0.9, prices=prices)
    # strong: 1000 * 10 / 1e6 + 500 * 30 / 1e6 = 0.025; target free; the judge unpriced, left out
    assert {k: v for k, v in r.cost_per_pair.pair_usd.items() if v} == pytest.approx({"answer_strong": 0.025})
    assert "judge" not in r.cost_per_pair.pair_usd
    assert r.cost_per_pair.usd_per_pair == pytest.approx((0.025, 0.025))
    assert next(s for s in r.stages if s.stage == "contrast").usd == pytest.approx(0.025)
    unpriced = compute([("accepted", pair)], gap_threshold=3, similarity_threshold=0.9)
    assert unpriced.cost_per_pair.usd_per_pair is None


# -- by a seed attribute -------------------------------------------------------------------


def with_attributes(record, **attributes):
    return record.model_copy(update={"attributes": attributes})


def test_breakdown_by_an_attribute_counts_each_value_and_its_own_drift():
    seeds = [
        ("seeds", with_attributes(Seed(id=f"seed-{i}", seed_id=f"seed-{i}", parent_id=None, text=f"t{i}"), **a))
        for i, a in enumerate([{"category": "math"}, {"category": "math"}, {"category": "writing"}, {}])
    ]
    records = [
        *seeds,
        ("metadata", with_attributes(metadata_record("m1", meta("algebra", "maths")), category="math")),
        ("metadata", with_attributes(metadata_record("m2", meta("poems", "rhyme")), category="writing")),
        ("accepted", with_attributes(accepted("r1", 1, meta("algebra", "maths")), category="math")),
        ("accepted", with_attributes(accepted("r2", 2, meta("geometry", "maths")), category="math")),
        ("rejected", with_attributes(rejected("r3"), category="writing")),
    ]
    b = report(records, by="category").breakdown
    assert b is not None and b.attribute == "category"
    rows = {r.value: r for r in b.rows}
    assert set(rows) == {"math", "writing", "(none)"}
    math_row = rows["math"]
    assert (math_row.seeds, math_row.accepted, math_row.rejected, math_row.accepted_rate) == (2, 2, 0, 1.0)
    assert math_row.js_skills == pytest.approx(0.0)  # maths in and out
    assert math_row.js_use_case == pytest.approx(js_divergence({"algebra": 1}, {"algebra": 1, "geometry": 1}))
    assert math_row.top_use_cases == ["algebra", "geometry"]
    assert (rows["writing"].accepted, rows["writing"].rejected, rows["writing"].accepted_rate) == (0, 1, 0.0)
    assert rows["(none)"].seeds == 1 and rows["(none)"].accepted_rate is None
    assert report(records).breakdown is None


def test_breakdown_labels_non_text_values_as_json():
    records = [("accepted", with_attributes(accepted("r1", 1), priority=5, tags=["b", "a"]))]
    assert [r.value for r in report(records, by="priority").breakdown.rows] == ["5"]
    assert [r.value for r in report(records, by="tags").breakdown.rows] == ['["b","a"]']
