"""The report's figures broken down by a seed attribute (`codeclm report --by category`).

Every record carries its seed's attributes, so each group is simply the records whose attribute
has that value: how many seeds, how many accepted and rejected, and how far the accepted pairs'
use cases and skills drift from the group's own seeds (Jensen-Shannon divergence, as in the
whole-run figures).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from schemas import AcceptedPair, Metadata, Record, RejectedInstruction
from streams.report.figures import NONE_LABEL, distribution
from streams.report.text import percent


@dataclass
class BreakdownRow:
    value: str
    seeds: int
    accepted: int
    rejected: int
    accepted_rate: float | None  # accepted / (accepted + rejected)
    js_use_case: float | None
    js_skills: float | None
    top_use_cases: list[str]


@dataclass
class Breakdown:
    attribute: str
    rows: list[BreakdownRow]


def attribute_label(record: Record, name: str) -> str:
    """The attribute's value as a group label: text as is, other JSON values as JSON."""
    if name not in record.attributes:
        return NONE_LABEL  # the seed has no such attribute
    value: Any = record.attributes[name]
    return value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def breakdown(
    name: str,
    seeds: Iterable[Record],
    metadata: Sequence[Metadata],
    accepted: Sequence[AcceptedPair],
    rejected: Sequence[RejectedInstruction],
    top: int = 3,
) -> Breakdown:
    def grouped(records: Iterable[Record]) -> dict[str, list[Any]]:
        groups: dict[str, list[Any]] = {}
        for record in records:
            groups.setdefault(attribute_label(record, name), []).append(record)
        return groups

    by_seed, by_meta = grouped(seeds), grouped(metadata)
    by_pair, by_rejected = grouped(accepted), grouped(rejected)
    values = set(by_seed) | set(by_meta) | set(by_pair) | set(by_rejected)
    rows = []
    for value in values:
        seed_meta = [m.metadata for m in by_meta.get(value, [])]
        pair_meta = [p.metadata for p in by_pair.get(value, [])]
        use_case = distribution("use_case", seed_meta, pair_meta)
        skills = distribution("skills", seed_meta, pair_meta)
        n_accepted, n_rejected = len(pair_meta), len(by_rejected.get(value, []))
        finished = n_accepted + n_rejected
        rows.append(
            BreakdownRow(
                value=value,
                seeds=len(by_seed.get(value, [])),
                accepted=n_accepted,
                rejected=n_rejected,
                accepted_rate=n_accepted / finished if finished else None,
                js_use_case=use_case.js_divergence,
                js_skills=skills.js_divergence,
                top_use_cases=list(use_case.accepted)[:top],
            )
        )
    rows.sort(key=lambda r: (-r.seeds, -r.accepted, r.value))
    return Breakdown(name, rows)


HEADERS = ("value", "seeds", "accepted", "rejected", "accepted rate", "JS use cases", "JS skills", "top use cases")


def breakdown_rows(b: Breakdown) -> list[list[object]]:
    """The table's rows, as `codeclm report` prints them and report.html shows them."""
    return [
        [
            r.value,
            r.seeds,
            r.accepted,
            r.rejected,
            percent(r.accepted_rate),
            _num(r.js_use_case),
            _num(r.js_skills),
            ", ".join(r.top_use_cases) or "-",
        ]
        for r in b.rows
    ]


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
