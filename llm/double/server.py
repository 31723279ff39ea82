"""The double's HTTP face: LLMDouble, an aiohttp server speaking the OpenAI chat-completions
API, and as the providers do, Azure OpenAI's and Anthropic's.

Endpoints: POST /v1/chat/completions (OpenAI, and every OpenAI-compatible server),
POST /openai/deployments/{deployment}/chat/completions?api-version=... (Azure OpenAI),
POST /v1/messages (Anthropic's Messages API), GET /v1/models; and the double's own:
GET /stats, POST /reset, and POST /control with a JSON object of DoubleConfig fields to change
while running. A request passes, in order: the gateway's headers (require_headers), the key,
Anthropic's version header, down, force_status, the model, the token parameter, the
temperature, the context length, max_concurrency; then a fault may be drawn.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from typing import Any, Self

import orjson
from aiohttp import web

from llm.double.calls import Call, chat_body, count_tokens, message_body, read_chat, read_messages, truncate_words
from llm.double.faults import FIVE_XX_CYCLE, MALFORMED_TEXT, DoubleConfig, DoubleStats, draw_fault
from llm.double.prompts import classify
from llm.double.providers import (
    ANTHROPIC,
    ANTHROPIC_FIVE_XX_CYCLE,
    AUTH_STYLES,
    AZURE,
    OPENAI,
    Refusal,
    anthropic_invalid,
    azure_resource_not_found,
    context_exceeded,
    fault_body,
    header_refused,
    key_refused,
    max_completion_tokens_unrecognized,
    max_tokens_unsupported,
    model_not_found,
    temperature_unsupported,
    with_echo,
)
from llm.double.replies import answer_for

__all__ = ["LLMDouble", "chat_body", "count_tokens", "truncate_words"]

# Where each endpoint wants the key; /v1/chat/completions follows DoubleConfig.auth.
_KEY_HEADERS = {AZURE: "api-key", ANTHROPIC: "x-api-key"}


class LLMDouble:
    """The LLM double server. `async with LLMDouble(DoubleConfig(...)) as double:` starts it on
    a free port; `double.base_url` is what an EndpointSettings needs."""

    def __init__(self, config: DoubleConfig | None = None):
        self.config = config or DoubleConfig()
        self._rng = random.Random(self.config.random_seed)
        self._stats = DoubleStats()
        self._faults = 0
        self._five_xx = 0
        self._runner: web.AppRunner | None = None
        self._models_seen: list[str] = []
        self.base_url: str | None = None
        # What the last request to a provider endpoint carried, for tests:
        self.last_request: dict[str, Any] | None = None  # the last chat body the double could read
        self.last_headers: dict[str, str] | None = None  # its headers
        self.last_path: str | None = None  # its path with the query

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- control, also reachable over HTTP

    def configure(self, **changes: Any) -> DoubleConfig:
        """Change knobs while running; a new random_seed restarts the fault sequence."""
        self.config = dataclasses.replace(self.config, **changes)
        if "random_seed" in changes:
            self._rng = random.Random(self.config.random_seed)
        return self.config

    def stats(self) -> dict[str, Any]:
        return self._stats.as_json()

    def reset(self) -> None:
        in_flight = self._stats.in_flight  # requests still running decrement it later
        self._stats = DoubleStats(in_flight=in_flight, max_in_flight=in_flight)
        self._faults = 0
        self._five_xx = 0

    # -- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/stats", self._stats_handler)
        app.router.add_post("/reset", self._reset_handler)
        app.router.add_post("/control", self._control_handler)
        # handler_cancellation: a request whose client gave up (timeout) stops, as on real
        # servers; a short shutdown_timeout so hanging requests do not delay stop().
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers

    async def _models(self, request: web.Request) -> web.Response:
        """The known models, else the models asked for so far, else "llm-double"; in
        Anthropic's shape when the request carries anthropic-version."""
        self._record(request)
        dialect = ANTHROPIC if "anthropic-version" in request.headers else OPENAI
        refusal = self._gate(request, dialect)
        if refusal is not None:
            return _respond(refusal, self._echo(request))
        names = self.config.known_models
        if names is None:
            names = self._models_seen or ["llm-double"]
        if dialect == ANTHROPIC:
            data = [{"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"} for n in names]
            first, last = (names[0], names[-1]) if names else (None, None)
            return web.json_response({"data": data, "has_more": False, "first_id": first, "last_id": last})
        data = [{"id": n, "object": "model", "owned_by": "codeclm"} for n in names]
        return web.json_response({"object": "list", "data": data})

    async def _stats_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset_handler(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.stats())

    async def _control_handler(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("body is not an object")
            config = self.configure(**changes)
        except (ValueError, TypeError) as exc:  # bad JSON, unknown field, invalid knobs
            return _error(OPENAI, 400, f"bad control request: {exc}")
        return web.json_response(dataclasses.asdict(config))

    async def _chat(self, request: web.Request) -> web.Response:
        return await self._counted(request, OPENAI)

    async def _azure_chat(self, request: web.Request) -> web.Response:
        return await self._counted(request, AZURE)

    async def _messages(self, request: web.Request) -> web.Response:
        return await self._counted(request, ANTHROPIC)

    async def _counted(self, request: web.Request, dialect: str) -> web.Response:
        stats = self._stats
        stats.calls += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            response = await self._answer(request, dialect)
        finally:
            self._stats.in_flight -= 1
        self._stats.by_status[response.status] += 1
        return response

    async def _answer(self, request: web.Request, dialect: str) -> web.Response:
        self._record(request)
        echo = self._echo(request)
        if dialect == AZURE and "api-version" not in request.query:
            return _respond(azure_resource_not_found(), echo)
        try:
            body = orjson.loads(await request.read())  # orjson: the double shares the cores it benchmarks
            if dialect == ANTHROPIC:
                call = read_messages(body)
            else:
                call = read_chat(body, request.match_info.get("deployment"))
        except (ValueError, KeyError, TypeError) as exc:
            if dialect == ANTHROPIC:
                return _respond(anthropic_invalid(str(exc)), echo)
            return _error(dialect, 400, f"invalid request: {exc}", echo)
        self.last_request = body
        kind = classify(call.messages)
        self._stats.by_kind[kind] += 1
        refused = self._refused(request, call, body, dialect, echo)
        if refused is not None:
            return refused
        if call.model not in self._models_seen:
            self._models_seen.append(call.model)  # what /v1/models lists when any model answers
        return await self._reply(call, kind, dialect, echo)

    def _refused(
        self, request: web.Request, call: Call, body: dict[str, Any], dialect: str, echo: dict[str, str] | None
    ) -> web.Response | None:
        """The error for a request that is not answered, in the order the module docstring gives."""
        config = self.config
        refusal = self._gate(request, dialect)
        if refusal is None and dialect == ANTHROPIC and "anthropic-version" not in request.headers:
            refusal = anthropic_invalid("anthropic-version: header is required")
        if refusal is not None:
            return _respond(refusal, echo)
        if config.down:
            return _error(dialect, 503, "the double is down", echo)
        if config.force_status is not None:
            return _error(dialect, config.force_status, f"forced status {config.force_status}", echo)
        refusal = self._check(call, body, dialect)
        if refusal is not None:
            return _respond(refusal, echo)
        if config.max_concurrency is not None and self._stats.in_flight > config.max_concurrency:
            return _error(dialect, 429, "too many requests in flight", echo, retry_after=config.retry_after_s)
        return None

    async def _reply(self, call: Call, kind: str, dialect: str, echo: dict[str, str] | None) -> web.Response:
        """The answer, or the fault drawn for this request, in the endpoint's shape."""
        config = self.config
        fault = self._draw_fault()
        if fault == "429":
            return _error(dialect, 429, "rate limited", echo, retry_after=config.retry_after_s)
        await asyncio.sleep(self._latency_s())
        if fault == "5xx":
            cycle = ANTHROPIC_FIVE_XX_CYCLE if dialect == ANTHROPIC else FIVE_XX_CYCLE
            status = cycle[self._five_xx % len(cycle)]
            self._five_xx += 1
            return _error(dialect, status, "server error", echo)
        if fault == "timeout":
            await asyncio.sleep(config.hang_s)

        answer = answer_for(kind, call.messages, call.model, config.style)
        content: str | None = answer
        cut = False
        if fault == "malformed":
            content = MALFORMED_TEXT
        elif fault == "empty_choices":
            content = None
        elif fault == "length":
            content, cut = truncate_words(answer, count_tokens(answer) // 2), True
        elif call.token_limit is not None and count_tokens(answer) > call.token_limit:
            content, cut = truncate_words(answer, call.token_limit), True

        prompt_tokens = call.prompt_tokens
        if dialect == ANTHROPIC:
            reply = message_body(call.model, content, cut=cut, input_tokens=prompt_tokens)
        else:
            finish_reason = "length" if cut else "stop"
            reply = chat_body(call.model, content, finish_reason=finish_reason, prompt_tokens=prompt_tokens)
        self._stats.prompt_tokens += prompt_tokens
        self._stats.completion_tokens += count_tokens(content or "")
        if fault == "bad_json":
            return web.Response(text=json.dumps(reply)[:40], content_type="application/json")
        return web.Response(body=orjson.dumps(reply), content_type="application/json")

    # -- what a request must pass

    def _record(self, request: web.Request) -> None:
        self.last_headers = dict(request.headers)
        self.last_path = request.path_qs

    def _echo(self, request: web.Request) -> dict[str, str] | None:
        return dict(request.headers) if self.config.echo_headers else None

    def _gate(self, request: web.Request, dialect: str) -> Refusal | None:
        """The gateway's headers, then the key. On /v1/chat/completions the key is looked for
        where DoubleConfig.auth says, and refused in that provider's shape."""
        config = self.config
        style = _KEY_HEADERS.get(dialect, config.auth)
        shape = AUTH_STYLES[style] if dialect == OPENAI else dialect
        for name, value in config.require_headers.items():
            sent = request.headers.get(name)
            if sent != value:
                return header_refused(shape, name, missing=sent is None)
        if config.api_key is None:
            return None
        sent = request.headers.get("Authorization" if style == "bearer" else style)
        if sent is not None and style == "bearer":
            sent = sent.removeprefix("Bearer ")
        return None if sent == config.api_key else key_refused(shape, sent)

    def _check(self, call: Call, body: dict[str, Any], dialect: str) -> Refusal | None:
        """What the endpoint refuses in the request itself: the model, the token parameter,
        the temperature, the context length."""
        config = self.config
        if config.known_models is not None and call.model not in config.known_models:
            return model_not_found(dialect, call.model)
        if dialect != ANTHROPIC:
            if config.token_parameter == "max_completion_tokens" and "max_tokens" in body:
                return max_tokens_unsupported()
            if config.token_parameter == "max_tokens" and "max_completion_tokens" in body:
                return max_completion_tokens_unrecognized(body["max_completion_tokens"])
            temperature = body.get("temperature")
            if config.fixed_temperature and temperature is not None and temperature != 1:
                return temperature_unsupported(temperature)
        if config.context_tokens is not None and call.prompt_tokens > config.context_tokens:
            return context_exceeded(dialect, config.context_tokens, call.prompt_tokens)
        return None

    def _draw_fault(self) -> str | None:
        if self.config.max_faults is not None and self._faults >= self.config.max_faults:
            return None
        fault = draw_fault(self.config.fault_rates(), self._rng.random())
        if fault is not None:
            self._faults += 1
        return fault

    def _latency_s(self) -> float:
        c = self.config
        jitter = self._rng.uniform(-c.jitter_ms, c.jitter_ms) if c.jitter_ms else 0.0
        return max(0.0, c.latency_ms + jitter) / 1000


def _respond(refusal: Refusal, echo: dict[str, str] | None) -> web.Response:
    body = refusal.body if echo is None else with_echo(refusal.body, echo)
    return web.json_response(body, status=refusal.status, headers=refusal.headers)


def _error(
    dialect: str, status: int, message: str, echo: dict[str, str] | None = None, *, retry_after: float | None = None
) -> web.Response:
    """An error the double's own knobs cause, in the endpoint's shape."""
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return _respond(Refusal(status, fault_body(dialect, status, message), headers), echo)
