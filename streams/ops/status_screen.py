"""`codeclm status`'s screen: per stage rate, lag and errors; pairs, LLM calls, tokens, error rate.

The figures come from a worker's `/metrics` (counters since that worker started) and the lag
straight from the broker, so the lag column is right even when the worker is down. Rates are
the change of a counter between two samples. Everything here but `fetch_metrics` is pure.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agents.pipeline import STAGE_INPUTS
from streams.ops.consumer_lag import LagReport


@dataclass(frozen=True)
class WorkerFigures:
    """What one scrape of a worker's /metrics says (cumulative since it started)."""

    taken_at: float
    processed: dict[str, float] = field(default_factory=dict)  # stage -> records processed
    dead_lettered: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, float] = field(default_factory=dict)
    verdicts: dict[str, float] = field(default_factory=dict)  # accept, retry, reject
    dedup: dict[str, float] = field(default_factory=dict)  # kept, exact, embedding
    llm_requests: dict[str, dict[str, float]] = field(default_factory=dict)  # role -> outcome -> count
    llm_failures: dict[str, float] = field(default_factory=dict)  # role -> calls failed after retries
    tokens: dict[str, float] = field(default_factory=dict)  # prompt, completion
    latency_sum: dict[str, float] = field(default_factory=dict)  # role -> seconds
    latency_count: dict[str, float] = field(default_factory=dict)
    refused: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (status, what it said)
    cost_by_role: dict[str, float] = field(default_factory=dict)  # US dollars, where prices are set
    cost_by_stage: dict[str, float] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)  # roles whose endpoint does not answer

    @property
    def llm_total(self) -> float:
        return sum(sum(outcomes.values()) for outcomes in self.llm_requests.values())

    @property
    def llm_errors(self) -> float:
        return sum(n for outcomes in self.llm_requests.values() for o, n in outcomes.items() if o != "ok")


def parse_metrics(text: str, taken_at: float) -> WorkerFigures:
    figures = WorkerFigures(taken_at)
    requests: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels, value = s.labels, s.value
            if s.name == "codeclm_records_total":
                target = figures.processed if labels["outcome"] == "processed" else figures.dead_lettered
                target[labels["stage"]] = value
            elif s.name == "codeclm_stage_in_flight":
                figures.in_flight[labels["stage"]] = value
            elif s.name == "codeclm_verdicts_total":
                figures.verdicts[labels["verdict"]] = value
            elif s.name == "codeclm_dedup_decisions_total":
                figures.dedup[labels["outcome"]] = value
            elif s.name == "codeclm_llm_requests_total":
                requests[labels["role"]][labels["outcome"]] = value
            elif s.name == "codeclm_llm_failures_total":
                figures.llm_failures[labels["role"]] = value
            elif s.name == "codeclm_llm_tokens_total":
                figures.tokens[labels["kind"]] = figures.tokens.get(labels["kind"], 0.0) + value
            elif s.name == "codeclm_llm_latency_seconds_sum":
                figures.latency_sum[labels["role"]] = value
            elif s.name == "codeclm_llm_latency_seconds_count":
                figures.latency_count[labels["role"]] = value
            elif s.name == "codeclm_llm_cost_usd_total":
                figures.cost_by_role[labels["role"]] = figures.cost_by_role.get(labels["role"], 0.0) + value
            elif s.name == "codeclm_stage_cost_usd_total":
                figures.cost_by_stage[labels["stage"]] = value
            elif s.name == "codeclm_llm_endpoint_refused" and value == 1:
                figures.refused[labels["role"]] = (labels["status"], labels["reason"])
            elif s.name == "codeclm_llm_endpoint_down" and value == 1:
                figures.down.add(labels["role"])
    figures.llm_requests.update(requests)
    return figures


async def fetch_metrics(session: aiohttp.ClientSession, url: str, token: str | None) -> WorkerFigures:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(f"{url.rstrip('/')}/metrics", headers=headers) as response:
        if response.status == 401:
            raise PermissionError("the worker wants a bearer token (--token or CODECLM_WORKER__HTTP_TOKEN)")
        response.raise_for_status()
        return parse_metrics(await response.text(), time.time())


def _rate(now: WorkerFigures, before: WorkerFigures | None, stage: str) -> float | None:
    if before is None or now.taken_at <= before.taken_at:
        return None
    done = now.processed.get(stage, 0) + now.dead_lettered.get(stage, 0)
    done_before = before.processed.get(stage, 0) + before.dead_lettered.get(stage, 0)
    return max(0.0, done - done_before) / (now.taken_at - before.taken_at)


def _count(n: float) -> str:
    """Whole numbers up to 9999, then 12.3k, 4.5M, 6.7G."""
    for threshold, unit, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if n >= threshold:
            return f"{n / unit:.1f}{suffix}"
    return f"{n:.0f}"


def render_status(
    url: str,
    at: float,
    now: WorkerFigures | None,
    before: WorkerFigures | None,
    lag: LagReport | None,
    worker_error: str | None = None,
    lag_error: str | None = None,
) -> str:
    """One screen. `now`/`before`: the last two scrapes (rates need both); either side may be
    missing (worker or broker unreachable) and the screen says so instead of failing."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    lines = [f"codeclm status   worker {url}   {stamp}"]
    if worker_error:
        lines.append(f"worker: not reachable ({worker_error}); counters unknown")
    if lag_error:
        lines.append(f"broker: lag unknown ({lag_error})")
    if now is not None:
        for role, (status, reason) in sorted(now.refused.items()):
            lines.append(
                f"{role} endpoint REFUSES the configuration (HTTP {status}): {reason}; "
                "its calls wait: fix the setting and restart the worker (see the worker log)"
            )
        lines.extend(f"{role} endpoint DOWN: its calls wait until it answers" for role in sorted(now.down))
    lines.append("")
    lines.append(f"{'STAGE':<9} {'RATE/s':>8} {'PROCESSED':>10} {'ERRORS':>7} {'IN-FLIGHT':>9} {'LAG':>8}")
    for stage in STAGE_INPUTS:
        rate = _rate(now, before, stage) if now else None
        cells = [
            f"{rate:.1f}" if rate is not None else "-",
            _count(now.processed.get(stage, 0)) if now else "-",
            _count(now.dead_lettered.get(stage, 0)) if now else "-",
            _count(now.in_flight.get(stage, 0)) if now else "-",
            _count(lag.stage(stage).lag) if lag else "-",
        ]
        lines.append(f"{stage:<9} {cells[0]:>8} {cells[1]:>10} {cells[2]:>7} {cells[3]:>9} {cells[4]:>8}")
    lines.append("")
    if now is not None:
        v = now.verdicts
        lines.append(
            f"pairs accepted {_count(v.get('accept', 0))}   rejected {_count(v.get('reject', 0))}   "
            f"sent back to tailor {_count(v.get('retry', 0))}"
        )
        if now.dedup:
            d = now.dedup
            lines.append(
                f"dedup kept {_count(d.get('kept', 0))}   dropped as duplicates "
                f"{_count(d.get('exact', 0) + d.get('embedding', 0))} "
                f"(exact {_count(d.get('exact', 0))}, near {_count(d.get('embedding', 0))})"
            )
        total, errors = now.llm_total, now.llm_errors
        by_role = ", ".join(f"{role} {_count(sum(o.values()))}" for role, o in sorted(now.llm_requests.items()))
        error_rate = f"{100 * errors / total:.1f}%" if total else "-"
        failed = sum(now.llm_failures.values())
        lines.append(f"LLM calls {_count(total)} ({by_role or 'none yet'})   errors {_count(errors)} ({error_rate})")
        lines.append(f"          failed after retries {_count(failed)}")
        latency = [
            f"{role} {1000 * now.latency_sum[role] / n:.0f} ms"
            for role, n in sorted(now.latency_count.items())
            if n and role in now.latency_sum
        ]
        lines.append(
            f"tokens prompt {_count(now.tokens.get('prompt', 0))}   completion {_count(now.tokens.get('completion', 0))}"
            + (f"   mean latency {', '.join(latency)}" if latency else "")
        )
        if now.cost_by_role:
            lines.append(cost_line(now))
    if lag is not None:
        lines.append(f"total lag {_count(lag.total)} records")
    return "\n".join(lines)


def cost_line(figures: WorkerFigures) -> str:
    """What the calls cost (where the endpoints have prices), by role and stage, and per accepted pair."""
    total = sum(figures.cost_by_role.values())
    roles = ", ".join(f"{role} ${v:,.2f}" for role, v in sorted(figures.cost_by_role.items()))
    stages = ", ".join(f"{stage} ${v:,.2f}" for stage, v in figures.cost_by_stage.items() if v)
    accepted = figures.verdicts.get("accept", 0)
    per_pair = f"   per accepted pair ${total / accepted:,.4f}" if accepted else ""
    return f"cost ${total:,.2f} ({roles}){per_pair}" + (f"\n          by stage: {stages}" if stages else "")
