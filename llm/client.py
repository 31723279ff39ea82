"""The aiohttp client of OpenAI-compatible chat-completions endpoints (OpenAI, vLLM, Ollama,
llama.cpp server, LiteLLM, the LLM double).

One `OpenAIChatClient` per endpoint, all sharing one `aiohttp.ClientSession` that their owner
opens and closes. How each kind of failure is met:

- 429: wait as long as Retry-After says (else back off), halve the requests allowed in flight
  (AIMD, `llm/flow.py`; it creeps back up with successes); a 429 never uses up the retries,
  since the server asked to wait, not reported a failure.
- 5xx, dropped or refused connections, timeouts, a 200 without an answer (no JSON, empty
  `choices`): retried with capped exponential backoff and full jitter, up to `max_retries`.
  When they run out and nothing answered during the last two tries, the endpoint is down: the
  call waits, and callers probe one at a time until it answers, then all go on. When other
  calls got answers meanwhile, this request itself is the problem and it fails (a dead letter).
- Other 4xx: fail at once. A body over `max_response_bytes`: fails at once, with that reason.
- `finish_reason=length`: the truncated text is returned as is (the stage parsers take what
  is complete; a judge's scores come first) and counted in `codeclm_llm_truncated_total`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from pydantic import SecretStr

from llm import metrics
from llm.base import Completion, LLMError, Message
from llm.flow import AdaptiveLimit, Outage
from llm.metrics import CONCURRENCY_LIMIT, ENDPOINT_DOWN, TRUNCATED
from llm.settings import EndpointSettings

log = logging.getLogger("codeclm.llm")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})
_BODY_SNIPPET = 300  # characters of an error body kept in messages: enough to see why
# A chat answer within any sane max_tokens is a few KB; far more is a broken server, and
# keeping it would make records the broker refuses.
MAX_RESPONSE_BYTES = 256 * 1024


class MalformedResponseError(ValueError):
    """A 200 response whose body holds no usable answer (not JSON, no choices, no content).
    Servers under load emit these now and then, so the client retries them."""


def parse_chat_response(body: Any, *, latency_s: float, attempts: int, fallback_model: str = "") -> Completion:
    """Turn a chat-completions JSON body into a Completion; raise MalformedResponseError when
    it carries no answer. Missing usage counts as 0 tokens (some local servers omit it)."""
    if not isinstance(body, dict):
        raise MalformedResponseError(f"body is a {type(body).__name__}, not an object")
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise MalformedResponseError("body has no choices list")
    if not choices:
        raise MalformedResponseError("empty choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise MalformedResponseError("choices[0].message.content is missing")
    raw_usage = body.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    model = body.get("model")
    finish_reason = choice.get("finish_reason")
    return Completion(
        text=content,
        model=model if isinstance(model, str) and model else fallback_model,
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        latency_s=latency_s,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        attempts=attempts,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def backoff_delay(retry: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter (uniform between 0 and the capped exponential step), so many clients
    failing together do not retry together. `retry` counts from 0."""
    return rng.uniform(0.0, min(max_s, base_s * (2**retry)))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when
    absent or unreadable, so the caller falls back to its own backoff."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def redact(text: str, secret: str | None) -> str:
    """Remove a key, and any bearer token, from text that came back from a server: some
    servers echo request headers in their error bodies."""
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"(?i)(bearer\s+)[^\s\"',}]+", r"\1***", text)


class _Attempt:
    """How one request ended: a completion, or a failure and whether to retry it."""

    __slots__ = ("completion", "reason", "retry_after_s", "retryable", "sent_at", "status")

    def __init__(
        self,
        *,
        completion: Completion | None = None,
        reason: str = "",
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ):
        self.completion = completion
        self.reason = reason
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.sent_at = 0.0  # when it got its slot and went out (the flow-control clock)


class OpenAIChatClient:
    """A `ChatModel` over `POST {base_url}/chat/completions`."""

    def __init__(
        self,
        endpoint: EndpointSettings,
        session: aiohttp.ClientSession,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        role: str = "llm",
        pause_when_down: bool | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ):
        self.role = role  # strong, target or judge: the label of this client's metrics
        self._endpoint = endpoint
        self._session = session
        if endpoint.base_url is None or endpoint.model is None:
            # The worker refuses to start without them; any other caller stops here, not at a request.
            raise ValueError(f"the {role} endpoint needs a base_url and a model")
        self._model = endpoint.model
        self._url = endpoint.base_url.rstrip("/") + "/chat/completions"
        # Read once: a key file is not re-read per request. SecretStr keeps it out of reprs.
        key = endpoint.key()
        self._key = SecretStr(key) if key else None
        self._limit = AdaptiveLimit(endpoint.max_in_flight)
        self._outage = Outage()
        self._pause_when_down = endpoint.pause_when_down if pause_when_down is None else pause_when_down
        self._max_response_bytes = max_response_bytes
        self._timeout = aiohttp.ClientTimeout(total=endpoint.timeout_s)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._in_flight = 0
        self._request_headers = self._headers()
        CONCURRENCY_LIMIT.labels(role).set(endpoint.max_in_flight)
        ENDPOINT_DOWN.labels(role).set(0)

    @property
    def model(self) -> str:
        return self._model

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (not those waiting for a slot or a retry)."""
        return self._in_flight

    @property
    def concurrency_limit(self) -> int:
        """Requests currently allowed in flight (AIMD: halved on 429s, back up on successes)."""
        return self._limit.current

    @property
    def down(self) -> bool:
        return self._outage.down

    def __repr__(self) -> str:
        return f"OpenAIChatClient(model={self.model!r}, max_in_flight={self._endpoint.max_in_flight})"

    async def complete(
        self, messages: list[Message], *, temperature: float, max_tokens: int, sample: int = 0
    ) -> Completion:
        # `sample` tells otherwise equal calls apart (for caches); with `send_seed` it also
        # becomes the request's sampling seed, so a rerun draws the same answers.
        payload: dict[str, Any] = {
            "model": self._endpoint.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": min(max_tokens, self._endpoint.max_tokens_cap or max_tokens),
        }
        if self._endpoint.send_seed:
            payload["seed"] = sample
        body = orjson.dumps(payload)  # once for every attempt; orjson: a few times cheaper than json
        attempt = failures = 0
        sent_at = self._limit.now()
        while True:
            if self._outage.down:
                await self._outage.turn(self._probe_delay, self._sleep)
                if not self._outage.down:
                    failures = 0  # it is back: what failed during the outage does not count
            attempt += 1
            outcome = await self._attempt(body, attempt)
            previous_sent_at, sent_at = sent_at, outcome.sent_at
            if outcome.completion is not None:
                return outcome.completion
            if not outcome.retryable:
                break
            if outcome.status == 429:
                if self._limit.on_overload(sent_at):
                    CONCURRENCY_LIMIT.labels(self.role).set(self._limit.current)
                    log.info("%s: rate limited; at most %d requests in flight now", self.model, self._limit.current)
                await self._sleep(self._delay(min(attempt - 1, 16), outcome.retry_after_s))
                continue
            failures += 1
            if self._pause_when_down and self._outage.down:
                continue  # wait for a turn to probe, as every call does while it is down
            if failures <= self._endpoint.max_retries:
                delay = self._delay(failures - 1, outcome.retry_after_s)
                log.debug(
                    "%s: attempt %d failed (%s, status %s); retrying in %.3fs",
                    self.model, attempt, outcome.reason, outcome.status, delay,
                )  # fmt: skip
                await self._sleep(delay)  # no slot held while waiting
                continue
            if self._pause_when_down and not self._outage.answered_since(previous_sent_at):
                # Nothing has answered during this request's last two tries (the last, longest
                # backoff): the endpoint is down, not this request. Wait for it instead of
                # failing every record.
                if self._outage.declare_down():
                    ENDPOINT_DOWN.labels(self.role).set(1)
                    log.warning(
                        "%s: endpoint %s is down (%s); its calls wait until it answers",
                        self.model, self._endpoint.base_url, outcome.reason,
                    )  # fmt: skip
                continue
            break
        gave_up = f" after {attempt} attempts" if outcome.retryable else ""
        metrics.FAILURES.labels(self.role).inc()
        raise LLMError(
            f"{self.model}: {outcome.reason}{gave_up}",
            status=outcome.status,
            attempts=attempt,
            retryable=outcome.retryable,
        )

    def _probe_delay(self, probes: int) -> float:
        """Between probes of a down endpoint: growing to backoff_max_s, with some jitter."""
        e = self._endpoint
        step = min(e.backoff_max_s, e.backoff_base_s * (2**probes))
        return self._rng.uniform(step / 2, step)

    def _delay(self, retry: int, retry_after_s: float | None) -> float:
        e = self._endpoint
        if retry_after_s is not None:
            return min(retry_after_s, e.backoff_max_s * 4)
        return backoff_delay(retry, base_s=e.backoff_base_s, max_s=e.backoff_max_s, rng=self._rng)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        return headers

    async def _attempt(self, body: bytes, attempt: int) -> _Attempt:
        outcome = await self._attempt_once(body, attempt)
        if outcome.completion is not None or (outcome.status is not None and not outcome.retryable):
            # The server read the request and answered: it is up.
            was_down = self._outage.answered()
            if was_down is not None:
                ENDPOINT_DOWN.labels(self.role).set(0)
                log.warning("%s: endpoint %s answers again after %.0fs", self.model, self._endpoint.base_url, was_down)
        if outcome.completion is not None:
            c = outcome.completion
            self._limit.on_success()
            CONCURRENCY_LIMIT.labels(self.role).set(self._limit.current)
            if c.finish_reason == "length":
                TRUNCATED.labels(self.role).inc()
            metrics.CALLS.labels(self.role, "ok").inc()
            metrics.LATENCY.labels(self.role).observe(c.latency_s)
            metrics.TOKENS.labels(self.role, "prompt").inc(c.prompt_tokens)
            metrics.TOKENS.labels(self.role, "completion").inc(c.completion_tokens)
        else:
            metrics.CALLS.labels(self.role, metrics.outcome_of(outcome.status, outcome.reason)).inc()
        return outcome

    async def _attempt_once(self, body: bytes, attempt: int) -> _Attempt:
        await self._limit.acquire()
        sent_at = self._limit.now()
        try:
            outcome = await self._request(body, attempt)
        finally:
            self._limit.release()
        outcome.sent_at = sent_at
        return outcome

    async def _request(self, body: bytes, attempt: int) -> _Attempt:
        self._in_flight += 1
        metrics.IN_FLIGHT.labels(self.role).inc()
        started = time.monotonic()
        try:
            async with self._session.post(
                self._url, data=body, headers=self._request_headers, timeout=self._timeout
            ) as response:
                status = response.status
                raw = await self._read_capped(response)
                retry_after = response.headers.get("Retry-After")
            if raw is None:
                return _Attempt(reason=f"oversized response: more than {self._max_response_bytes} bytes", status=status)
        except TimeoutError:
            return _Attempt(reason=f"timed out after {self._endpoint.timeout_s}s", retryable=True)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Connection refused or reset, server gone mid-body: the next try may reach it.
            return _Attempt(reason=f"connection error: {type(exc).__name__}: {self._clean(str(exc))}", retryable=True)
        finally:
            self._in_flight -= 1
            metrics.IN_FLIGHT.labels(self.role).dec()
        latency_s = time.monotonic() - started
        if status != 200:
            return _Attempt(
                reason=f"HTTP {status}: {self._clean(raw.decode('utf-8', 'replace'))}",
                status=status,
                retryable=status in RETRYABLE_STATUSES,
                retry_after_s=parse_retry_after(retry_after) if status in RETRY_AFTER_STATUSES else None,
            )
        try:
            answer = orjson.loads(raw)
            completion = parse_chat_response(answer, latency_s=latency_s, attempts=attempt, fallback_model=self._model)
        except ValueError as exc:  # JSONDecodeError and MalformedResponseError
            return _Attempt(reason=f"malformed response: {self._clean(str(exc))}", status=status, retryable=True)
        return _Attempt(completion=completion)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes | None:
        """The body, or None when it is longer than max_response_bytes (not read further)."""
        limit = self._max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            return None
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limit:
                return None
        return bytes(body)

    def _clean(self, text: str) -> str:
        # Redact before cutting, so no cut can leave part of the key behind.
        text = redact(" ".join(text.split()), self._key.get_secret_value() if self._key else None)
        return text[:_BODY_SNIPPET]


def build_clients(
    strong: EndpointSettings, target: EndpointSettings, judge: EndpointSettings | None, session: aiohttp.ClientSession
) -> tuple[OpenAIChatClient, OpenAIChatClient, OpenAIChatClient]:
    """(strong, target, judge). Without its own endpoint the judge is the strong client itself,
    so both share one in-flight limit, as they share one server."""
    strong_client = OpenAIChatClient(strong, session, role="strong")
    target_client = OpenAIChatClient(target, session, role="target")
    judge_client = strong_client if judge is None else OpenAIChatClient(judge, session, role="judge")
    return strong_client, target_client, judge_client


def open_session(*endpoints: EndpointSettings) -> aiohttp.ClientSession:
    """A session whose connection pool fits every endpoint's max_in_flight: aiohttp's default
    of 100 connections would otherwise queue requests, and the queueing counts against the
    request timeout. Call from a running event loop; the caller closes it."""
    limit = sum(e.max_in_flight for e in {id(e): e for e in endpoints}.values())
    # No cookies: chat endpoints set none worth keeping, and the jar costs CPU on every call.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0), cookie_jar=aiohttp.DummyCookieJar()
    )
