"""The report's plots as inline SVG strings (matplotlib, Agg backend: no display needed).

Text stays text in the SVG (smaller, sharp, searchable), and each plot gets its own hash salt so
the ids of clip paths never collide between plots on one page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from streams.report.figures import Distribution, GapHistogram, Iterations, StageCost

SEEDS_COLOUR = "#4c72b0"
ACCEPTED_COLOUR = "#dd8452"
RETRIED_COLOUR = "#8c8c8c"
REJECTED_COLOUR = "#c44e52"
KEPT_COLOUR = "#55a868"
MAX_LABELS = 12  # bars per distribution plot; the rest are summed as "other"

_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.S)  # XML declaration and DOCTYPE: not for inline SVG
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def to_svg(fig: Figure, salt: str) -> str:
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return _METADATA.sub("", _PROLOGUE.sub("", buffer.getvalue(), count=1))


def _figure(width: float, height: float) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _shares(counts: dict[str, int], labels: Sequence[str]) -> list[float]:
    total = sum(counts.values()) or 1
    return [100 * counts.get(label, 0) / total for label in labels]


def distribution_plot(dist: Distribution) -> str:
    """Share of each label (%) in the seeds and in the accepted pairs, commonest first."""
    combined: dict[str, float] = {}
    for counts in (dist.seeds, dist.accepted):
        total = sum(counts.values()) or 1
        for label, n in counts.items():
            combined[label] = combined.get(label, 0) + n / total
    labels = sorted(combined, key=lambda k: (-combined[k], k))
    shown, rest = labels[:MAX_LABELS], labels[MAX_LABELS:]
    seeds, accepted = _shares(dist.seeds, shown), _shares(dist.accepted, shown)
    if rest:
        shown = [*shown, f"other ({len(rest)})"]
        seeds.append(100 - sum(seeds))
        accepted.append(100 - sum(accepted) if dist.accepted else 0)
    fig, ax = _figure(5.0, 1.0 + 0.3 * len(shown))
    y = range(len(shown))
    ax.barh([i - 0.2 for i in y], seeds, height=0.4, color=SEEDS_COLOUR, label="seeds")
    ax.barh([i + 0.2 for i in y], accepted, height=0.4, color=ACCEPTED_COLOUR, label="accepted pairs")
    ax.set_yticks(list(y), [_cut(label, 30) for label in shown])
    ax.invert_yaxis()
    ax.set_xlabel("share (%)")
    ax.legend(loc="lower right", frameon=False, fontsize="small")
    return to_svg(fig, f"dist-{dist.name}")


def gap_plot(gap: GapHistogram) -> str:
    """Histogram of the score gap; the band |gap| <= threshold (sent back to tailor) shaded."""
    fig, ax = _figure(5.2, 3.2)
    width = gap.bins[0]["hi"] - gap.bins[0]["lo"] if gap.bins else 0.5
    centres = [(b["lo"] + b["hi"]) / 2 for b in gap.bins]
    colours = [KEPT_COLOUR if abs(c) > gap.threshold else RETRIED_COLOUR for c in centres]
    ax.bar(centres, [b["count"] for b in gap.bins], width=width * 0.9, color=colours)
    ax.axvspan(-gap.threshold, gap.threshold, color="#eeeeee", zorder=0, label=f"|gap| <= {gap.threshold:g}: retried")
    for x in (-gap.threshold, gap.threshold):
        ax.axvline(x, color="#333333", linestyle="--", linewidth=1)
    ax.set_xlabel("gap = S(strong) - S(target)")
    ax.set_ylabel("scored pairs")
    ax.set_ylim(top=max([b["count"] for b in gap.bins] + [1]) * 1.2)  # room for the legend
    ax.legend(loc="upper left", frameon=False, fontsize="small")
    return to_svg(fig, "gap")


def iterations_plot(its: Iterations) -> str:
    fig, ax = _figure(5.2, 3.2)
    x = [row.iteration for row in its.rows]
    for offset, (name, colour, values) in zip(
        (-0.27, 0.0, 0.27),
        (
            ("accepted", ACCEPTED_COLOUR, [r.accepted for r in its.rows]),
            ("retried", RETRIED_COLOUR, [r.retried for r in its.rows]),
            ("rejected", REJECTED_COLOUR, [r.rejected for r in its.rows]),
        ),
        strict=True,
    ):
        ax.bar([i + offset for i in x], values, width=0.27, color=colour, label=name)
    ax.set_xticks(x, [str(i) for i in x])
    ax.set_xlabel("Self-Rubrics iteration (1 = basic instruction)")
    ax.set_ylabel("instructions")
    ax.legend(frameon=False, fontsize="small")
    return to_svg(fig, "iterations")


def stages_plot(stages: Sequence[StageCost]) -> str:
    """Calls per stage (cached apart) and their latency (mean, p50, p95)."""
    fig, (calls_ax, latency_ax) = plt.subplots(1, 2, figsize=(9.5, 3.0))
    names = [s.stage for s in stages]
    x = list(range(len(names)))
    calls_ax.bar(x, [s.calls for s in stages], color=SEEDS_COLOUR, label="to the model")
    calls_ax.bar(x, [s.cached_calls for s in stages], bottom=[s.calls for s in stages], color="#a1c9f4", label="cached")
    calls_ax.set_xticks(x, names)
    calls_ax.set_ylabel("LLM calls")
    calls_ax.legend(frameon=False)
    highest = 1.0
    for offset, name, colour in zip(
        (-0.27, 0.0, 0.27), ("mean", "p50", "p95"), ("#a1c9f4", SEEDS_COLOUR, "#1f3b73"), strict=True
    ):
        values = [getattr(s, f"latency_ms_{name}") or 0 for s in stages]
        highest = max(highest, *values)
        latency_ax.bar([i + offset for i in x], values, width=0.27, color=colour, label=name)
    latency_ax.set_xticks(x, names)
    latency_ax.set_ylabel("latency per call (ms)")
    latency_ax.set_ylim(top=highest * 1.25)  # room for the legend above the bars
    latency_ax.legend(frameon=False, ncol=3, loc="upper center", fontsize="small")
    for ax in (calls_ax, latency_ax):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return to_svg(fig, "stages")


def nearest_plot(nearest: Sequence[float], threshold: float) -> str:
    """Each accepted instruction's cosine similarity to its nearest other accepted instruction."""
    fig, ax = _figure(5.2, 2.8)
    ax.hist(list(nearest), bins=40, range=(min(0.0, *nearest), 1.0), color=SEEDS_COLOUR)
    ax.axvline(
        threshold, color=REJECTED_COLOUR, linestyle="--", linewidth=1, label=f"near duplicate (>= {threshold:g})"
    )
    ax.set_xlabel("cosine similarity to the nearest other accepted instruction")
    ax.set_ylabel("instructions")
    ax.legend(loc="upper left", frameon=False, fontsize="small")
    return to_svg(fig, "nearest")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
