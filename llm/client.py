"""The aiohttp client of chat endpoints: OpenAI's chat completions (OpenAI, vLLM, Ollama,
llama.cpp server, LiteLLM, the LLM double), Azure OpenAI and Anthropic's Messages API; how each
wants its requests is `llm/wire.py`.

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
- A 400 that teaches the wire (the endpoint takes `max_completion_tokens`, or no temperature):
  the request is sent again as the endpoint wants it, and so is every later one.
- A configuration the endpoint refuses (401, 403, 404, or a 400 that every call gets): one
  error in the log and `codeclm_llm_endpoint_refused`, and calls wait instead of failing their
  records; one call tries again every `refused_probe_s`, and the first that succeeds lets the
  others go (or the worker restarts with the fix). Nothing is dead-lettered for it.
- A 400 about the request's own content (its prompt over the context length, a content
  filter): that call fails, and its record is dead-lettered with the reason. Other 4xx: fail
  at once. A body over `max_response_bytes`: fails at once, with that reason.
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

import aiohttp
import orjson

from llm import metrics
from llm.base import Completion, LLMError, Message
from llm.flow import AdaptiveLimit, Outage, Refusal
from llm.metrics import CONCURRENCY_LIMIT, ENDPOINT_DOWN, ENDPOINT_REFUSED, TRUNCATED
from llm.settings import EndpointSettings
from llm.wire import ErrorBody, error_body, is_record_fault, wire_for

log = logging.getLogger("codeclm.llm")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})  # 529: Anthropic overloaded
RETRY_AFTER_STATUSES = frozenset({429, 503, 529})
REFUSING_STATUSES = frozenset({401, 403, 404})  # every call would get these: the configuration
# How long a call that got an ambiguous 400 waits for other calls to tell whether the endpoint
# refuses everyone (they fail too) or only this request (they succeed).
AMBIGUOUS_400_WAIT_S = 10.0
_BODY_SNIPPET = 300  # characters of an error body kept in messages: enough to see why
# A chat answer within any sane max_tokens is a few KB; far more is a broken server, and
# keeping it would make records the broker refuses.
MAX_RESPONSE_BYTES = 256 * 1024


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

    __slots__ = ("completion", "error", "reason", "retry_after_s", "retryable", "sent_at", "status")

    def __init__(
        self,
        *,
        completion: Completion | None = None,
        reason: str = "",
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        error: ErrorBody | None = None,
    ):
        self.completion = completion
        self.reason = reason
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.error = error or ErrorBody(reason)  # what the body of an error response said
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
        # Read once: a key file is not re-read per request. SecretStr keeps it out of reprs.
        key = endpoint.key()
        self._wire = wire_for(endpoint, key)
        # Everything to redact from what comes back: the key and the custom headers' values.
        self._secrets = [s for s in (key, *(v.get_secret_value() for v in endpoint.headers.values())) if s]
        self._limit = AdaptiveLimit(endpoint.max_in_flight)
        self._outage = Outage()
        self._refusal = Refusal()
        self._pause_when_down = endpoint.pause_when_down if pause_when_down is None else pause_when_down
        self._max_response_bytes = max_response_bytes
        self._timeout = aiohttp.ClientTimeout(total=endpoint.timeout_s)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._in_flight = 0
        CONCURRENCY_LIMIT.labels(role).set(endpoint.max_in_flight)
        ENDPOINT_DOWN.labels(role).set(0)

    @property
    def model(self) -> str:
        return self._model

    @property
    def token_parameter(self) -> str:
        """How this endpoint takes the completion budget (learned from its 400, where it told)."""
        return self._wire.token_parameter

    @property
    def sends_temperature(self) -> bool:
        """False once the endpoint said it takes no temperature but its default."""
        return self._wire.sends_temperature

    @property
    def refused(self) -> str | None:
        """What the endpoint said while it refuses the configuration, else None."""
        return self._refusal.reason

    @property
    def refused_status(self) -> int | None:
        """The HTTP status of that refusal (401, 403, 404 or 400), else None."""
        return self._refusal.status

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
        max_tokens = min(max_tokens, self._endpoint.max_tokens_cap or max_tokens)

        def body() -> bytes:
            return self._wire.body(messages, temperature=temperature, max_tokens=max_tokens, sample=sample)

        request = body()
        attempt = failures = 0
        sent_at = self._limit.now()
        while True:
            if self._refusal.refused:
                await self._refusal.turn(self._endpoint.refused_probe_s, self._sleep)
            if self._outage.down:
                await self._outage.turn(self._probe_delay, self._sleep)
                if not self._outage.down:
                    failures = 0  # it is back: what failed during the outage does not count
            attempt += 1
            outcome = await self._attempt(request, attempt)
            previous_sent_at, sent_at = sent_at, outcome.sent_at
            if outcome.completion is not None:
                return outcome.completion
            if not outcome.retryable:
                lesson = self._wire.learn(outcome.status, outcome.error)
                if lesson is not None:
                    if lesson.new:
                        log.warning(
                            "%s: %s answered %s; %s", self.role, self._endpoint.base_url, outcome.reason, lesson.what
                        )
                    request = body()
                    continue
                if await self._refuses(outcome):
                    continue  # wait, at the top, until the endpoint takes the configuration
                break
            if outcome.status in (429, 529):
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

    async def _refuses(self, outcome: _Attempt) -> bool:
        """Whether this failure is the endpoint refusing the configuration (then the call
        waits) rather than this request (then it fails, and its record is dead-lettered)."""
        status = outcome.status
        if status is None or is_record_fault(status, outcome.error):
            return False
        if status in REFUSING_STATUSES or self._refusal.refused:
            self._refuse(outcome)
            return True
        if status != 400 or self._refusal.succeeded_since(outcome.sent_at):
            return False  # others succeed meanwhile: this request's own fault
        if self._refusal.rejected():
            self._refuse(outcome)
            return True
        await self._refusal.news(AMBIGUOUS_400_WAIT_S)  # do other calls fail too?
        return self._refusal.refused

    def _refuse(self, outcome: _Attempt) -> None:
        reason = outcome.reason
        if not self._refusal.refuse(outcome.status, reason):
            return
        ENDPOINT_REFUSED.labels(self.role, str(outcome.status), reason[:120]).set(1)
        log.error(
            "%s endpoint %s (model %s) refuses the configuration: %s. Check %s. Its calls wait, and "
            "nothing is dead-lettered for it, until it answers (one try every %.0fs) or the worker "
            "restarts with the fix.",
            self.role, self._endpoint.base_url, self.model, reason,
            refusal_hint(self.role, outcome.status, outcome.error), self._endpoint.refused_probe_s,
        )  # fmt: skip

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
            lifted = self._refusal.succeeded()
            if lifted is not None:
                status, reason = lifted
                ENDPOINT_REFUSED.remove(self.role, str(status), (reason or "")[:120])
                log.warning("%s endpoint %s takes the configuration again", self.role, self._endpoint.base_url)
            self._limit.on_success()
            CONCURRENCY_LIMIT.labels(self.role).set(self._limit.current)
            if c.finish_reason == "length":
                TRUNCATED.labels(self.role).inc()
            metrics.CALLS.labels(self.role, "ok").inc()
            metrics.LATENCY.labels(self.role).observe(c.latency_s)
            metrics.TOKENS.labels(self.role, "prompt").inc(c.prompt_tokens)
            metrics.TOKENS.labels(self.role, "completion").inc(c.completion_tokens)
            e = self._endpoint
            if e.prompt_price_per_million is not None:
                metrics.COST.labels(self.role, "prompt").inc(c.prompt_tokens * e.prompt_price_per_million / 1e6)
            if e.completion_price_per_million is not None:
                metrics.COST.labels(self.role, "completion").inc(
                    c.completion_tokens * e.completion_price_per_million / 1e6
                )
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
                self._wire.url, data=body, headers=self._wire.headers, timeout=self._timeout
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
            error = error_body(raw)
            return _Attempt(
                reason=f"HTTP {status}: {self._clean(error.message or raw.decode('utf-8', 'replace'))}",
                status=status,
                retryable=status in RETRYABLE_STATUSES,
                retry_after_s=parse_retry_after(retry_after) if status in RETRY_AFTER_STATUSES else None,
                error=ErrorBody(self._clean(error.message), error.type, error.param, error.code),
            )
        try:
            answer = orjson.loads(raw)
            completion = self._wire.completion(answer, latency_s=latency_s, attempts=attempt)
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
        # Redact before cutting, so no cut can leave part of a secret behind.
        text = " ".join(text.split())
        for secret in self._secrets:
            text = redact(text, secret)
        return redact(text, None)[:_BODY_SNIPPET]


def refusal_hint(role: str, status: int | None, error: ErrorBody) -> str:
    """What to change, by what the endpoint said."""
    env = f"CODECLM_{role.upper()}__"
    if status == 401:
        return f"the API key ({env}API_KEY or {env}API_KEY_FILE; azure and anthropic need {env}PROVIDER)"
    if status == 403:
        return f"whether the key may use the model ({env}API_KEY, {env}MODEL)"
    if status == 404:
        return f"the model and the URL ({env}MODEL is it served at {env}BASE_URL?)"
    what = f"the parameter '{error.param}'" if error.param else "the request's parameters"
    return f"{what}: the endpoint refuses it on every call ({env}PROVIDER, {env}TOKEN_PARAMETER, the pipeline settings)"


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
