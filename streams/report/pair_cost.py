"""What an accepted pair costs, by stage (purpose of the LLM call). Pure: records in, figures out.

Two figures, which answer different questions and are always labelled apart:

- **pair**: the mean of the accepted pairs' own cost (`AcceptedPair.cost_by_purpose`): every
  iteration of the pair's root plus its share (1/siblings) of the encode, decode and rubrics
  calls that served it. What one more accepted pair of this kind costs.
- **run**: every LLM call of the run, divided by the accepted pairs. It also pays for the roots
  that were rejected after their last iteration, dropped as duplicates or dead-lettered, so it
  is what a run's bill comes to per pair it delivered, and it is at least the pair figure.

Both count every call the records carry, those the answer cache answered included (a cached
call on a record stands for a call paid once, before a crash lost the record that first
carried it), as the pairs' own cost does.

`codeclm report` and `codeclm bench` both use these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agents.cost import Price, dollars
from agents.pipeline import PURPOSES, ROLE_OF_PURPOSE, STAGE_OF_PURPOSE
from schemas import AcceptedPair, CallTotals, LLMCall

TOTAL = "total"


@dataclass(frozen=True)
class PurposeCost:
    """Mean LLM calls and tokens per accepted pair for one purpose (or the total)."""

    purpose: str
    stage: str
    calls: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class CostPerPair:
    """Cost per accepted pair on one basis ("pair" or "run"), by purpose and in total.

    `pairs` is the divisor: the accepted pairs whose own cost was read (basis "pair"; pairs
    from before the cost breakdown existed have none and are counted in `without_breakdown`),
    or every accepted pair (basis "run"). With no pair to divide by every figure is None."""

    basis: str
    pairs: int
    rows: tuple[PurposeCost, ...]  # one per purpose, pipeline order, zeros included
    total: PurposeCost | None
    without_breakdown: int = 0

    def row(self, purpose: str) -> PurposeCost | None:
        if purpose == TOTAL:
            return self.total
        return next((r for r in self.rows if r.purpose == purpose), None)

    def prompt_share(self, purpose: str) -> float | None:
        """The purpose's share of all prompt tokens on this basis (None without any)."""
        row = self.row(purpose)
        if row is None or self.total is None or not self.total.prompt_tokens:
            return None
        return row.prompt_tokens / self.total.prompt_tokens


@dataclass(frozen=True)
class PairCostFigures:
    """Both bases side by side, and the prompt sets the pairs were made with (`name@version`:
    count, from their provenance)."""

    pair: CostPerPair
    run: CostPerPair
    prompt_sets: dict[str, int] = field(default_factory=dict)
    # US dollars per accepted pair by purpose, where the endpoints have prices (empty otherwise)
    pair_usd: dict[str, float] = field(default_factory=dict)
    run_usd: dict[str, float] = field(default_factory=dict)

    @property
    def usd_per_pair(self) -> tuple[float, float] | None:
        """(pair basis, run basis) in US dollars, when any endpoint has a price."""
        if not self.pair_usd and not self.run_usd:
            return None
        return sum(self.pair_usd.values()), sum(self.run_usd.values())


def _ordered(purposes: Iterable[str]) -> list[str]:
    extra = sorted(set(purposes) - set(PURPOSES))
    return [*PURPOSES, *extra]


def _mean(basis: str, sums: Mapping[str, list[float]], pairs: int, without: int = 0) -> CostPerPair:
    if pairs <= 0:
        rows = tuple(PurposeCost(p, STAGE_OF_PURPOSE.get(p, p)) for p in _ordered(sums))
        return CostPerPair(basis, 0, rows, None, without)
    rows = tuple(
        PurposeCost(p, STAGE_OF_PURPOSE.get(p, p), *(v / pairs for v in sums.get(p, (0.0, 0.0, 0.0))))
        for p in _ordered(sums)
    )
    total = PurposeCost(
        TOTAL,
        "",
        sum(r.calls for r in rows),
        sum(r.prompt_tokens for r in rows),
        sum(r.completion_tokens for r in rows),
    )
    return CostPerPair(basis, pairs, rows, total, without)


def per_accepted_pair(pairs: Iterable[AcceptedPair]) -> CostPerPair:
    """Basis "pair": the mean of the pairs' own `cost_by_purpose`, each pair once by id.
    Pairs without a breakdown (made before it existed) are left out of the mean and counted."""
    seen: set[str] = set()
    sums: dict[str, list[float]] = {}
    counted = without = 0
    for pair in pairs:
        if pair.id in seen:
            continue
        seen.add(pair.id)
        if not pair.cost_by_purpose:
            without += 1
            continue
        counted += 1
        for purpose, totals in pair.cost_by_purpose.items():
            _add(sums, purpose, totals)
    return _mean("pair", sums, counted, without)


def per_accepted_pair_of_run(calls: Iterable[LLMCall], accepted: int) -> CostPerPair:
    """Basis "run": every call of the run (each carried by one record, counted once by the
    caller) divided by the accepted pairs, whatever became of the root that made it."""
    sums: dict[str, list[float]] = {}
    for call in calls:
        _add(
            sums,
            call.purpose,
            CallTotals(calls=1, prompt_tokens=call.prompt_tokens, completion_tokens=call.completion_tokens),
        )
    return _mean("run", sums, accepted)


def prompt_sets_of(pairs: Iterable[AcceptedPair]) -> dict[str, int]:
    """`name@version` -> accepted pairs made with it (from their provenance; "unknown" without)."""
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for pair in pairs:
        if pair.id in seen:
            continue
        seen.add(pair.id)
        p = pair.provenance
        key = f"{p.prompt_set}@{p.prompt_version}" if p is not None else "unknown"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def pair_cost_figures(
    pairs: Sequence[AcceptedPair], calls: Iterable[LLMCall], prices: Mapping[str, Price] | None = None
) -> PairCostFigures:
    """Both bases for one run: `pairs` its accepted pairs, `calls` every call its records carry
    (each record once); with `prices` (by role), what they come to in US dollars."""
    accepted = len({p.id for p in pairs})
    pair, run = per_accepted_pair(pairs), per_accepted_pair_of_run(calls, accepted)
    return PairCostFigures(pair, run, prompt_sets_of(pairs), _usd(pair, prices), _usd(run, prices))


def _usd(basis: CostPerPair, prices: Mapping[str, Price] | None) -> dict[str, float]:
    totals = {
        r.purpose: CallTotals(calls=r.calls, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens)
        for r in basis.rows
    }
    return dollars(totals, prices or {}, ROLE_OF_PURPOSE) if basis.total is not None else {}


def _add(sums: dict[str, list[float]], purpose: str, totals: CallTotals) -> None:
    values = sums.setdefault(purpose, [0.0, 0.0, 0.0])
    values[0] += totals.calls
    values[1] += totals.prompt_tokens
    values[2] += totals.completion_tokens


# -- as a table (the text of `codeclm report` and `codeclm bench`) ---------------------------

COST_HEADERS = (
    "purpose",
    "stage",
    "pair: calls",
    "pair: prompt tok",
    "pair: completion tok",
    "run/accepted: calls",
    "run/accepted: prompt tok",
    "run/accepted: completion tok",
)
COST_LEGEND = (
    "pair: the accepted pairs' own cost, averaged (AcceptedPair.cost_by_purpose: every iteration of the pair's "
    "root plus 1/siblings of encode, decode and rubrics)\n"
    "run/accepted: every LLM call of the run / accepted pairs (also pays for roots rejected, dropped as "
    "duplicates or dead-lettered)"
)


def cost_rows(figures: PairCostFigures) -> list[list[object]]:
    """One row per purpose and a total: the pair basis, then the run basis (None: no pairs)."""
    out: list[list[object]] = []
    purposes = _ordered([r.purpose for r in (*figures.pair.rows, *figures.run.rows)])
    for purpose in (*purposes, TOTAL):
        pair, run = figures.pair.row(purpose), figures.run.row(purpose)
        stage = STAGE_OF_PURPOSE.get(purpose, "" if purpose == TOTAL else purpose)
        out.append([purpose, stage, *_figures(pair, figures.pair), *_figures(run, figures.run)])
    return out


def _figures(row: PurposeCost | None, basis: CostPerPair) -> list[float | None]:
    if basis.total is None:
        return [None, None, None]
    if row is None:
        return [0.0, 0.0, 0.0]
    return [row.calls, row.prompt_tokens, row.completion_tokens]


def compare_prompt_tokens(
    sets: Mapping[str, CostPerPair], base: str | None = None
) -> tuple[list[str], list[list[object]]]:
    """Prompt tokens per accepted pair by purpose, one column pair (tokens, share of the set's
    prompt tokens) per prompt set, and each other set's ratio to `base` (the first set)."""
    names = list(sets)
    base = base if base is not None else names[0]
    others = [n for n in names if n != base]
    headers = ["purpose", "stage"]
    for name in names:
        headers += [f"{name}: prompt tok", f"{name}: share"]
    headers += [f"{n} / {base}" for n in others]
    purposes = _ordered([r.purpose for c in sets.values() for r in c.rows])
    rows: list[list[object]] = []
    for purpose in (*purposes, TOTAL):
        row: list[object] = [purpose, STAGE_OF_PURPOSE.get(purpose, "" if purpose == TOTAL else purpose)]
        tokens: dict[str, float | None] = {}
        for name in names:
            cost = sets[name]
            found = cost.row(purpose)
            tokens[name] = None if cost.total is None else (found.prompt_tokens if found else 0.0)
            row += [tokens[name], cost.prompt_share(purpose) if cost.total is not None else None]
        for name in others:
            a, b = tokens[name], tokens[base]
            row.append(a / b if a is not None and b else None)
        rows.append(row)
    return headers, rows
