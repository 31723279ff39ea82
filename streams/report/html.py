"""The report as one self-contained HTML page: inline CSS, inline SVG plots, no script, no
link to anything outside the file, so it opens offline and can be mailed as it is.

Every string from the run (labels, reasons) comes from an LLM or a user: all of it is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape

from streams.report import plots
from streams.report.figures import Distribution, Report
from streams.report.pair_cost import COST_HEADERS, cost_rows

MAX_TABLE_ROWS = 15

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: #222;
       margin: 0; background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; border-bottom: 2px solid #dde1e6; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
.sub { color: #666; font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; margin: 18px 0; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 12px 14px; }
.card .v { font-size: 24px; font-weight: 600; }
.card .k { color: #555; font-size: 13px; margin-top: 2px; }
.card .n { color: #888; font-size: 12px; margin-top: 4px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 4px 20px 16px; margin-top: 18px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceff3; text-align: right; vertical-align: top; }
th { background: #f2f4f7; font-weight: 600; }
.l { text-align: left; }
.note { color: #666; font-size: 13px; }
.na { color: #a33; }
.plot svg { max-width: 100%; height: auto; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; align-items: start; }
.grid > section { margin-top: 18px; }
.grid > div > h3 { margin-top: 14px; }
details summary { cursor: pointer; color: #555; font-size: 13px; margin: 4px 0; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
"""

FIELD_TITLES = {
    "use_case": "Use cases",
    "skills": "Skills",
    "domain": "Domains",
    "difficulty": "Difficulty",
    "format_constraints": "Output-format constraints",
}


def render(report: Report, *, topic_prefix: str, generated_at: float) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>codeclm report: {escape(topic_prefix)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>CodecLM run report</h1>",
        f'<div class="sub">topics <code>{escape(topic_prefix)}*</code> · {escape(_span(report))} · '
        f"generated {escape(_when(generated_at))}</div>",
        _cards(report),
        _distributions(report),
        _breakdown(report),
        _augmentation(report),
        _grid([_gap(report), _iterations(report)]),
        _grid([_diversity(report), _duplicates(report)]),
        _stages(report),
        _cost_per_pair(report),
        _dead_letters(report),
        "</main></body></html>",
    ]
    return "\n".join(parts)


# -- pieces --------------------------------------------------------------------------------


def _cards(r: Report) -> str:
    o, its, dup, div = r.overview, r.iterations, r.duplicates, r.diversity
    js = {d.name: d.js_divergence for d in r.distributions}
    saved = f"≈{dup.calls_saved_estimate:,.0f} LLM calls saved (estimate)" if dup.calls_saved_estimate else ""
    cards = [
        (_int(o.seeds), "seeds", f"{_int(o.metadata)} encoded"),
        (_int(o.accepted), "accepted pairs", f"{_int(o.rejected)} rejected · {_int(o.scored)} scored"),
        (
            _pct(its.first_iteration_share),
            "accepted at iteration 1",
            f"the paper: over {its.paper_first_iteration_share:.0%}",
        ),
        (_num(js.get("use_case")), "JS divergence, use cases", "0: same mix as the seeds"),
        (_num(js.get("skills")), "JS divergence, skills", "1: no label in common"),
        (_num(div.distinct_2), "distinct-2 of accepted", f"distinct-1 {_num(div.distinct_1)}"),
        (
            _pct(div.near_duplicate_rate),
            "near-duplicate rate",
            _embedding_note(r) or f"cosine >= {div.similarity_threshold:g}",
        ),
        (_int(dup.dropped), "duplicates dropped", saved or f"of {_int(o.decoded_instructions)} decoded instructions"),
        (_int(o.llm_calls), "LLM calls", f"{_int(sum(s.cached_calls for s in r.stages))} more from the cache"),
        _pair_cost_card(r),
        (_int(o.dead_letters), "dead letters", ""),
    ]
    body = "".join(
        f'<div class="card"><div class="v">{escape(v)}</div><div class="k">{escape(k)}</div>'
        f'<div class="n">{escape(n)}</div></div>'
        for v, k, n in cards
    )
    return f'<div class="cards">{body}</div>'


def _distributions(r: Report) -> str:
    intro = (
        "How the accepted pairs' metadata compares with the seeds' (one metadata record per seed). "
        "Jensen-Shannon divergence, base 2: 0 when the shares match, 1 when no label is shared."
    )
    if not r.rich_metadata:
        intro += " Domain, difficulty and format constraints: not extracted in this run (pipeline.rich_metadata off)."
    head = f"<h2>Distribution match: seeds vs accepted pairs</h2><p class='note'>{escape(intro)}</p>"
    return _section([head, _grid([_distribution(d) for d in r.distributions], tag="div")])


def _augmentation(r: Report) -> str:
    c = r.augmentation
    if c is None:
        return ""
    note = (
        f"{c.augmented_metadata} augmented metadata (codeclm augment), {c.accepted_from_augmented} accepted pairs "
        "from them. Distinct labels of the accepted pairs without and with those pairs."
    )
    rows = [
        [what, str(getattr(c.before, name)), str(getattr(c.after, name)), f"+{getattr(c.added, name)}"]
        for what, name in (("use cases", "use_cases"), ("skills", "skills"), ("use case x skill pairs", "pairs"))
    ]
    table = _table(["distinct", "without augmentation", "with", "added"], rows, "lrrr")
    return _section(["<h2>What metadata augmentation added</h2>", f"<p class='note'>{escape(note)}</p>", table])


def _distribution(dist: Distribution) -> str:
    title = FIELD_TITLES.get(dist.name, dist.name)
    head = f"<h3>{escape(title)}: JS divergence {escape(_num(dist.js_divergence))}</h3>"
    if not dist.seeds and not dist.accepted:
        return head + "<p class='note'>no labels in this run</p>"
    seed_total, pair_total = sum(dist.seeds.values()) or 1, sum(dist.accepted.values()) or 1
    labels = list(dict.fromkeys([*dist.seeds, *dist.accepted]))
    rows = [
        [label, _int(dist.seeds.get(label, 0)), _pct(dist.seeds.get(label, 0) / seed_total),
         _int(dist.accepted.get(label, 0)), _pct(dist.accepted.get(label, 0) / pair_total)]
        for label in labels
    ]  # fmt: skip
    more = f" (first {MAX_TABLE_ROWS}; all in report.json)" if len(rows) > MAX_TABLE_ROWS else ""
    table = _table(["label", "seeds", "share", "accepted", "share"], rows[:MAX_TABLE_ROWS], "lrrrr")
    counts = f"<details><summary>counts of {len(rows)} labels{more}</summary>{table}</details>"
    return f"<div>{head}<div class='plot'>{plots.distribution_plot(dist)}</div>{counts}</div>"


def _diversity(r: Report) -> str:
    d = r.diversity
    note = _embedding_note(r)
    rows = [
        ["accepted instructions", _int(d.instructions), ""],
        ["distinct-1", _num(d.distinct_1), "distinct words / all words"],
        ["distinct-2", _num(d.distinct_2), "distinct word pairs / all word pairs"],
        [
            "embedding dispersion",
            note or _num(d.embedding_dispersion),
            "mean pairwise cosine distance (all-MiniLM-L6-v2)",
        ],
        [
            "near-duplicate rate",
            note or _pct(d.near_duplicate_rate),
            f"share whose nearest other accepted instruction has cosine >= {d.similarity_threshold:g}",
        ],
    ]
    blocks = ["<h2>Diversity of accepted instructions</h2>", _table(["figure", "value", "what it is"], rows, "lrl")]
    if d.nearest_similarity:
        blocks.append(f"<div class='plot'>{plots.nearest_plot(d.nearest_similarity, d.similarity_threshold)}</div>")
    return _section(blocks)


def _gap(r: Report) -> str:
    g = r.gap
    summary = (
        f"{_int(g.total)} scored pairs; {_int(g.kept)} with |gap| > {g.threshold:g} (kept: strong answer when the gap "
        f"is positive, target answer when negative); mean gap {_num(g.mean_gap)}. The dashed lines are "
        f"±{g.threshold:g} (pipeline.gap_threshold); pairs in the shaded band go back to tailor, or are rejected at "
        "the last iteration."
    )
    plot = f"<div class='plot'>{plots.gap_plot(g)}</div>" if g.total else "<p class='note'>no scored pairs</p>"
    return _section(["<h2>Score gap</h2>", f"<p class='note'>{escape(summary)}</p>", plot])


def _iterations(r: Report) -> str:
    its = r.iterations
    share = (
        f"{_pct(its.first_iteration_share)} of the accepted pairs came from iteration 1 (the basic instruction); "
        f"the paper reports over {its.paper_first_iteration_share:.0%}."
    )
    rows = [[str(row.iteration), _int(row.accepted), _int(row.retried), _int(row.rejected)] for row in its.rows]
    blocks = ["<h2>Accepted, retried and rejected per iteration</h2>", f"<p class='note'>{escape(share)}</p>"]
    if rows:
        table = _table(["iteration", "accepted", "retried", "rejected"], rows)
        blocks.append(f"<div class='plot'>{plots.iterations_plot(its)}</div>{table}")
    return _section(blocks)


def _duplicates(r: Report) -> str:
    d = r.duplicates
    spent = (
        f"Finished roots (accepted or rejected) spent {_int(d.calls_after_decode)} contrast and tailor calls, "
        f"{_num(d.calls_per_finished_root, 1)} per root."
    )
    if not d.dropped:
        text = f"No basic instruction was dropped as a duplicate before contrast in this run. {spent}"
        return _section(["<h2>Near-duplicates dropped</h2>", f"<p class='note'>{escape(text)}</p>"])
    text = (
        f"{_int(d.dropped)} basic instructions dropped before contrast. {spent} So the dropped ones saved about "
        f"{_num(d.calls_saved_estimate, 0)} LLM calls: an estimate, as a dropped instruction might have needed "
        "fewer or more iterations than the average."
    )
    rows = [[method, _int(n)] for method, n in d.by_method.items()]
    examples = [[_cut(e["instruction"], 90), _cut(e["duplicate_of"], 90), _num(e["similarity"], 3)] for e in d.examples]
    return _section(
        [
            "<h2>Near-duplicates dropped</h2>",
            f"<p class='note'>{escape(text)}</p>",
            _table(["method", "dropped"], rows),
            "<p class='note'>Near (not exact) drops, least similar first: the ones to read when judging the threshold.</p>",
            _table(["dropped", "too similar to", "cosine"], examples, "llr"),
        ]
    )


def _stages(r: Report) -> str:
    rows = [
        [
            s.stage,
            _int(s.calls),
            _int(s.cached_calls),
            _int(s.prompt_tokens),
            _int(s.completion_tokens),
            _num(s.latency_ms_mean, 0),
            _num(s.latency_ms_p50, 0),
            _num(s.latency_ms_p95, 0),
        ]
        for s in r.stages
    ]
    note = (
        "Calls that reached a model; calls answered from the answer cache (replays) are counted apart and have no "
        "tokens or latency. decode includes rubrics; contrast is both answers and the judge passes."
    )
    head = ["stage", "calls", "cached", "prompt tokens", "completion tokens", "mean ms", "p50 ms", "p95 ms"]
    return _section(
        [
            "<h2>LLM calls, tokens and latency per stage</h2>",
            f"<p class='note'>{escape(note)}</p>",
            _table(head, rows),
            f"<div class='plot'>{plots.stages_plot(r.stages)}</div>",
        ]
    )


def _pair_cost_card(r: Report) -> tuple[str, str, str]:
    pair, run = r.cost_per_pair.pair.total, r.cost_per_pair.run.total
    return (
        _num(pair.tokens if pair else None, 0),
        "LLM tokens per accepted pair",
        f"the pair's own; run / accepted pairs: {_num(run.tokens if run else None, 0)}",
    )


def _cost_per_pair(r: Report) -> str:
    c = r.cost_per_pair
    note = (
        "Mean LLM calls and tokens per accepted pair, by the purpose of the call. pair: the accepted pairs' own "
        "cost (each pair carries it: every iteration of its root plus its share, 1/siblings, of the encode, decode "
        "and rubrics calls that served it), averaged over the pairs. run/accepted: every call of the run divided "
        "by the accepted pairs, so it also pays for the roots rejected after their last iteration, dropped as "
        "duplicates or dead-lettered. Both count calls answered from the answer cache (a replayed record's calls "
        "were paid once, before the crash)."
    )
    blocks = ["<h2>LLM cost per accepted pair by stage</h2>", f"<p class='note'>{escape(note)}</p>"]
    if c.pair.without_breakdown:
        blocks.append(
            f"<p class='note'>{_int(c.pair.without_breakdown)} accepted pairs carry no cost breakdown (made "
            "before records had one) and are left out of the pair figures.</p>"
        )
    if c.run.total is None:
        blocks.append("<p class='note'>no accepted pairs: nothing to divide by</p>")
        return _section(blocks)
    if c.usd_per_pair is not None:
        own, run = c.usd_per_pair
        blocks.append(
            f"<p class='note'>In US dollars, at the endpoints' prices: ${own:.5f} per accepted pair (its own), "
            f"${run:.5f} (the run's / accepted pairs).</p>"
        )
    calls_columns = {i for i, h in enumerate(COST_HEADERS) if h.endswith(": calls")}
    rows = [
        [
            str(row[0]),
            str(row[1]),
            *(
                _num(v, 2 if i in calls_columns else 1) if isinstance(v, int | float) else "—"
                for i, v in enumerate(row[2:], start=2)
            ),
        ]
        for row in cost_rows(c)
    ]
    judge = (
        f"The judge: {_pct(c.pair.prompt_share('judge'))} of the pairs' prompt tokens, "
        f"{_pct(c.run.prompt_share('judge'))} of the run's."
    )
    blocks.append(_table(list(COST_HEADERS), rows, "ll" + "r" * (len(COST_HEADERS) - 2)))
    blocks.append(f"<p class='note'>{escape(judge)}</p>")
    if c.prompt_sets:
        sets = ", ".join(f"{name} ({n:,} pairs)" for name, n in c.prompt_sets.items())
        blocks.append(f"<p class='note'>Prompt set of the accepted pairs (provenance): {escape(sets)}.</p>")
    return _section(blocks)


def _breakdown(r: Report) -> str:
    if r.breakdown is None:
        return ""
    from streams.report.breakdown import HEADERS, breakdown_rows

    rows = [[str(cell) for cell in row] for row in breakdown_rows(r.breakdown)]
    note = (
        "Each value of the seed attribute: its seeds, accepted and rejected pairs, and the JS divergence of the "
        "accepted pairs' use cases and skills from its own seeds' (0: same distribution)."
    )
    return _section(
        [
            f"<h2>By {escape(r.breakdown.attribute)}</h2>",
            f"<p class='note'>{escape(note)}</p>",
            _table(HEADERS, rows, "lrrrrrrl"),
        ]
    )


def _dead_letters(r: Report) -> str:
    if not r.dead_letters:
        return _section(["<h2>Dead letters</h2>", "<p class='note'>none</p>"])
    rows = [[d.stage, d.error_class, d.reason, _int(d.count)] for d in r.dead_letters]
    note = "Grouped by stage, error class and reason (ids and numbers blanked as #). `codeclm deadletter` replays them."
    return _section(
        [
            "<h2>Dead letters</h2>",
            f"<p class='note'>{escape(note)}</p>",
            _table(["stage", "error class", "reason", "count"], rows, "lllr"),
        ]
    )


# -- helpers -------------------------------------------------------------------------------


def _section(blocks: Iterable[str]) -> str:
    return "<section>" + "\n".join(blocks) + "</section>"


def _grid(blocks: Iterable[str], tag: str = "div") -> str:
    """Blocks two to a row (one on a narrow screen)."""
    return f"<{tag} class='grid'>" + "\n".join(blocks) + f"</{tag}>"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """`align`: one letter per column, l or r; by default the first column (a name) left, the rest
    (figures) right."""
    align = align or "l" + "r" * (len(head) - 1)
    th = "".join(f"<th class='{a}'>{escape(h)}</th>" for h, a in zip(head, align, strict=True))
    body = "".join(
        "<tr>" + "".join(f"<td class='{a}'>{escape(c)}</td>" for c, a in zip(row, align, strict=True)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _embedding_note(r: Report) -> str | None:
    d = r.diversity
    return d.embeddings_note if d.embedding_dispersion is None else None


def _int(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _when(t: float | None) -> str:
    return "—" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(r: Report) -> str:
    since, until = r.window.get("since"), r.window.get("until")
    window = (
        f"window {_when(since) if since is not None else 'start'} to {_when(until) if until is not None else 'now'}"
        if since is not None or until is not None
        else "whole run"
    )
    return f"{window}; records from {_when(r.overview.first_record_at)} to {_when(r.overview.last_record_at)}"
