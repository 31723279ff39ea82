"""`codeclm check`: whether what the pipeline needs is there and configured right, before a
worker runs: the settings in effect, the broker and the pipeline's topics, and each LLM endpoint
(the models it lists, one short call through the pipeline's own client, the token parameter it
takes). Every failure becomes a `Problem` naming what to change.

A probe never waits for a fix: the client makes calls to an endpoint that refuses the
configuration (401, 403, 404, a 400 on every call) wait, which is right for a worker and wrong
for a check, so each probe is watched (`watched`) and stopped as soon as the client says the
endpoint refuses, or when its time is up. The probes and `run_check` do I/O; the verdicts and
the lines they print are pure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from llm.client import AMBIGUOUS_400_WAIT_S, OpenAIChatClient, open_session, refusal_hint
from llm.settings import EndpointSettings
from llm.wire import ErrorBody, wire_for
from schemas.topics import TOPICS
from streams.kafka.admin import client_options, topic_partitions
from streams.settings import Settings, env_name
from streams.settings_lines import same_model_warning, settings_lines, shown_url

T = TypeVar("T")
Say = Callable[[str], None]

DEFAULT_TIMEOUT_S = 5.0
PROBE_MESSAGES = [{"role": "user", "content": "Reply with the single word OK."}]
PROBE_MAX_TOKENS = 5  # a word; an endpoint that takes max_completion_tokens gets it as that
PROBE_RETRIES = 1  # a probe retries a failure once: a down endpoint is told quickly
REFUSAL_POLL_S = 0.05
STATUS_VERDICTS = {
    401: "wrong API key",
    403: "key not allowed to use the model",
    404: "unknown model (or URL)",
    400: "refuses the request",
}
STARTS_MISSING_TOPICS = "the worker creates them at start, or `codeclm topics`"


@dataclass(frozen=True)
class Problem:
    """What stops the pipeline, and what to change."""

    subject: str  # "broker", "strong endpoint", "settings", "seed run"
    fix: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.fix}"


def summary_line(problems: Sequence[Problem], seeded: bool = False) -> str:
    """The last line of a check: that all is well, or everything to fix."""
    if not problems:
        return "check passed: the broker and every endpoint answer" + (
            ", and the seed went through every stage" if seeded else ""
        )
    return "check failed: fix " + "; ".join(str(p) for p in problems)


# -- watching a call -----------------------------------------------------------------------------


class Refused(Exception):
    """An endpoint refuses the configuration: the call waits for a fix, so the check stops it."""

    def __init__(self, role: str, status: int | None, reason: str):
        super().__init__(reason)
        self.role, self.status, self.reason = role, status, reason


async def watched(call: Awaitable[T], clients: Iterable[OpenAIChatClient], deadline_s: float | None) -> T:
    """The call's result. Raises Refused as soon as one of `clients` says its endpoint refuses
    the configuration, and TimeoutError after `deadline_s`; the call is cancelled either way."""
    task = asyncio.ensure_future(call)
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                done, _ = await asyncio.wait({task}, timeout=REFUSAL_POLL_S)
                if done:
                    return task.result()
                for client in clients:
                    if client.refused is not None:
                        raise Refused(client.role, client.refused_status, client.refused)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- the broker ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerCheck:
    bootstrap: str
    prefix: str
    error: str | None = None  # why it could not be reached
    present: tuple[str, ...] = ()  # pipeline topics (without prefix) that exist
    missing: tuple[str, ...] = ()
    partitions: tuple[tuple[str, int], ...] = ()  # of those whose partitions all have a leader

    def lines(self) -> list[str]:
        if self.error is not None:
            return [f"broker {self.bootstrap}: not reachable: {self.error}"]
        lines = [
            f"broker {self.bootstrap}: reachable; topics (prefix {self.prefix}): "
            f"{len(self.present)} of {len(self.present) + len(self.missing)} exist"
        ]
        if self.present:
            lines.append("  exist: " + ", ".join(f"{name} ({count})" for name, count in self.partitions))
            leaderless = sorted(set(self.present) - {name for name, _ in self.partitions})
            if leaderless:
                lines.append(f"  without a leader yet: {', '.join(leaderless)}")
        if self.missing:
            lines.append(f"  missing: {', '.join(self.missing)} ({STARTS_MISSING_TOPICS})")
        return lines

    def problems(self) -> list[Problem]:
        # Missing topics are no problem: the worker creates them.
        if self.error is None:
            return []
        where = env_name("kafka", "bootstrap_servers")
        return [
            Problem("broker", f"nothing answers at {self.bootstrap}: start Kafka there, or set {where} (--bootstrap)")
        ]


async def check_broker(settings: Settings, timeout_s: float) -> BrokerCheck:
    """Connect, list the topics, describe the pipeline's; nothing is created."""
    kafka = settings.kafka
    names = {t.name: settings.topic(t.name) for t in TOPICS}
    admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            existing = set(await admin.list_topics())
            present = {short: full for short, full in names.items() if full in existing}
            counts = await topic_partitions(admin, list(present.values())) if present else {}
    except (KafkaError, OSError, TimeoutError) as exc:
        return BrokerCheck(kafka.bootstrap_servers, kafka.topic_prefix, error=error_text(exc, timeout_s))
    finally:
        await admin.close()
    return BrokerCheck(
        kafka.bootstrap_servers,
        kafka.topic_prefix,
        present=tuple(present),
        missing=tuple(short for short in names if short not in present),
        partitions=tuple((short, counts[full]) for short, full in present.items() if full in counts),
    )


def error_text(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g}s"
    text, name = str(exc), type(exc).__name__
    if not text:
        return name
    # aiokafka's errors already start with their name
    return text if text.startswith(name) else f"{name}: {text}"


# -- an endpoint ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelList:
    """What GET <models_url> said: the model ids, or the status of a refusal, or no answer."""

    ids: tuple[str, ...] | None = None
    status: int | None = None
    error: str | None = None  # no HTTP answer at all

    def text(self, model: str | None) -> str:
        if self.error is not None:
            return f"no answer: {self.error}"
        if self.ids is None:
            return "no model list" if self.status in (200, 404) else f"no model list: HTTP {self.status}"
        if model in self.ids:
            return "the model is listed"
        shown = ", ".join(self.ids[:5]) + (", ..." if len(self.ids) > 5 else "")
        return f"the model is not among the {len(self.ids)} it lists ({shown})"


@dataclass(frozen=True)
class CallResult:
    """How the one-token call ended."""

    latency_s: float | None = None  # set when it answered
    token_parameter: str | None = None
    sends_temperature: bool = True
    model: str | None = None  # the model that answered, as the endpoint names it
    status: int | None = None  # the HTTP status of a failure, None when nothing answered
    error: str | None = None
    refused: bool = False  # the client found the endpoint refuses the configuration


@dataclass(frozen=True)
class EndpointCheck:
    role: str
    endpoint: EndpointSettings
    models: ModelList | None = None
    call: CallResult | None = None
    key_error: str | None = None  # the key file could not be read

    @property
    def verdict(self) -> str:
        """ok, down, no key, one of STATUS_VERDICTS' values, or failed."""
        if self.key_error is not None:
            return "no key"
        call = self.call
        if call is None:  # not even the models URL answered
            return "down"
        if call.latency_s is not None:
            return "ok"
        if call.status is None or call.status >= 500:
            return "down"  # no answer, or a server that answers but cannot serve (its model is not up)
        return STATUS_VERDICTS.get(call.status, "failed")

    def lines(self) -> list[str]:
        e = self.endpoint
        head = f"endpoint {self.role}: model {e.model} at {shown_url(e.base_url)} ({e.provider})"
        if self.key_error is not None:
            return [head, f"  api key file: {self.key_error}"]
        lines = [head]
        if self.models is not None:
            lines.append(f"  models: {self.models.text(e.model)}")
        call = self.call
        if call is None:
            lines.append("  call: not made (nothing answers)")
        elif call.latency_s is not None:
            answered_by = f" by {call.model}" if call.model and call.model != e.model else ""
            temperature = "" if call.sends_temperature else "; no temperature (it takes only its default)"
            lines.append(
                f"  call: answered{answered_by} in {call.latency_s * 1000:.0f} ms; "
                f"token parameter {call.token_parameter}{temperature}"
            )
        else:
            lines.append(f"  call: {self.verdict}: {call.error}")
        return lines

    def problems(self) -> list[Problem]:
        verdict, role, e = self.verdict, self.role, self.endpoint
        subject = f"{role} endpoint"
        if verdict == "ok":
            return []
        if verdict == "no key":
            return [Problem(subject, f"API key file unreadable ({env_name(role, 'api_key_file')}): {self.key_error}")]
        call = self.call
        if verdict == "down":
            where = shown_url(e.base_url)
            said = f"{where} answers HTTP {call.status}" if call and call.status else f"nothing answers at {where}"
            return [Problem(subject, f"down: {said}: start it, or set {env_name(role, 'base_url')}")]
        assert call is not None and call.status is not None
        if verdict == "failed":
            return [Problem(subject, f"HTTP {call.status}: {call.error}")]
        hint = refusal_hint(role, call.status, ErrorBody(call.error or ""))
        return [Problem(subject, f"{verdict} (HTTP {call.status}): check {hint}")]


def probe_settings(endpoint: EndpointSettings, timeout_s: float) -> EndpointSettings:
    """The endpoint as a probe calls it: a short timeout, one retry, no waiting while it is down."""
    return endpoint.model_copy(
        update={
            "timeout_s": timeout_s,
            "max_retries": PROBE_RETRIES,
            "backoff_base_s": 0.2,
            "backoff_max_s": 0.5,
            "pause_when_down": False,
        }
    )


def probe_deadline(timeout_s: float) -> float:
    """How long a probe call may take: each try its timeout, and a 400 time to tell whether the
    endpoint refuses every call (the client waits AMBIGUOUS_400_WAIT_S for that) or only this one."""
    return (PROBE_RETRIES + 1) * timeout_s + AMBIGUOUS_400_WAIT_S + 1.0


async def check_endpoint(
    role: str, endpoint: EndpointSettings, session: aiohttp.ClientSession, timeout_s: float, temperature: float
) -> EndpointCheck:
    """The models the endpoint lists, then (when anything answered) one short call."""
    probe = probe_settings(endpoint, timeout_s)
    try:
        key = probe.key()
    except OSError as exc:
        return EndpointCheck(role, endpoint, key_error=f"{probe.api_key_file}: {exc.strerror or exc}")
    models = await list_models(session, probe, key, timeout_s)
    if models.error is not None:
        return EndpointCheck(role, endpoint, models=models)  # nothing listens: a call would not either
    client = OpenAIChatClient(probe, session, role=role)
    call = await one_short_call(client, temperature, probe_deadline(timeout_s))
    return EndpointCheck(role, endpoint, models=models, call=call)


async def list_models(
    session: aiohttp.ClientSession, endpoint: EndpointSettings, key: str | None, timeout_s: float
) -> ModelList:
    """GET the wire's models URL. Any HTTP answer means the server is up; 404 means it keeps
    no list (Azure's deployments, some proxies), not that anything is wrong."""
    wire = wire_for(endpoint, key)
    try:
        async with session.get(
            wire.models_url, headers=wire.headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            if response.status != 200:
                return ModelList(status=response.status)
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return ModelList(error=error_text(exc, timeout_s))
    except ValueError:  # not JSON
        return ModelList(status=200)
    return ModelList(ids=model_ids(body), status=200)


def model_ids(body: Any) -> tuple[str, ...] | None:
    """The ids of OpenAI's and Anthropic's model lists ({"data": [{"id": ...}, ...]})."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return tuple(str(item["id"]) for item in data if isinstance(item, dict) and "id" in item)


async def one_short_call(client: OpenAIChatClient, temperature: float, deadline_s: float) -> CallResult:
    """A call of a few tokens through the pipeline's own client, which learns the token
    parameter (and whether a temperature is taken) from the endpoint's 400, as a worker would."""
    call = client.complete(PROBE_MESSAGES, temperature=temperature, max_tokens=PROBE_MAX_TOKENS)
    try:
        completion = await watched(call, (client,), deadline_s)
    except Refused as exc:
        return CallResult(status=exc.status, error=exc.reason, refused=True)
    except TimeoutError:
        return CallResult(error=f"no answer within {deadline_s:g}s")
    except Exception as exc:  # LLMError, and anything else the call raised: reported, not a traceback
        return CallResult(status=getattr(exc, "status", None), error=str(exc) or type(exc).__name__)
    return CallResult(
        latency_s=completion.latency_s,
        token_parameter=client.token_parameter,
        sends_temperature=client.sends_temperature,
        model=completion.model or None,
    )


# -- the whole check -----------------------------------------------------------------------------


def roles_to_check(settings: Settings, unset_roles: set[str]) -> list[tuple[str, EndpointSettings]]:
    """strong, target and the judge when it has settings of its own; not those left unset."""
    roles = [("strong", settings.strong), ("target", settings.target)]
    if settings.judge is not None:
        roles.append(("judge", settings.judge))
    return [(role, endpoint) for role, endpoint in roles if role not in unset_roles]


def unset_problem(unset: Sequence[tuple[str, str]]) -> Problem:
    return Problem("settings", "set " + ", ".join(env_name(role, field) for role, field in unset))


async def run_check(
    settings: Settings, say: Say, *, timeout_s: float = DEFAULT_TIMEOUT_S, unset: Sequence[tuple[str, str]] = ()
) -> list[Problem]:
    """Print the settings, the broker and every endpoint as each is checked; return the problems.
    `unset` (streams.settings.unset_endpoint_fields) names the endpoint settings missing."""
    say("settings in effect:")
    for line in settings_lines(settings):
        say(f"  {line}")
    warning = same_model_warning(settings)
    if warning:
        say(f"warning: {warning}")
    broker = await check_broker(settings, timeout_s)
    for line in broker.lines():
        say(line)
    problems = broker.problems()
    unset_roles = {role for role, _ in unset}
    for role in sorted(unset_roles, key=["strong", "target", "judge"].index):
        missing = ", ".join(env_name(r, field) for r, field in unset if r == role)
        say(f"endpoint {role}: not checked: {missing} not set")
    if unset:
        problems.append(unset_problem(unset))
    checked = roles_to_check(settings, unset_roles)
    async with open_session(*(endpoint for _, endpoint in checked)) as session:
        for role, endpoint in checked:
            check = await check_endpoint(role, endpoint, session, timeout_s, settings.pipeline.generation_temperature)
            for line in check.lines():
                say(line)
            problems += check.problems()
    if settings.judge is None and "strong" not in unset_roles:
        say("endpoint judge: the strong endpoint (checked above)")
    return problems
