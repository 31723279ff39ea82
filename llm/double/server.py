"""The double's HTTP face: LLMDouble, an aiohttp server speaking the OpenAI chat-completions
API, the OpenAI-shaped response body (`chat_body`, with words counted as tokens) and the error
bodies.

Endpoints: POST /v1/chat/completions, GET /v1/models, GET /stats, POST /reset, and
POST /control with a JSON object of DoubleConfig fields to change while running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
import uuid
from typing import Any, Self

import orjson
from aiohttp import web

from llm.double.faults import FIVE_XX_CYCLE, MALFORMED_TEXT, DoubleConfig, DoubleStats, draw_fault
from llm.double.prompts import classify
from llm.double.replies import answer_for


def count_tokens(text: str) -> int:
    """Words stand in for tokens: close enough for cost accounting in tests."""
    return len(text.split())


def chat_body(model: str, content: str | None, *, finish_reason: str, prompt_tokens: int) -> dict[str, Any]:
    """An OpenAI-shaped response body; content None gives an empty choices list."""
    choices = (
        []
        if content is None
        else [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}]
    )
    completion_tokens = count_tokens(content or "")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def truncate_words(text: str, limit: int) -> str:
    return " ".join(text.split(" ")[: max(1, limit)])


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
        self.base_url: str | None = None
        self.last_request: dict[str, Any] | None = None  # the last chat request body, for tests

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
        return web.json_response(
            {"object": "list", "data": [{"id": "llm-double", "object": "model", "owned_by": "codeclm"}]}
        )

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
        except (ValueError, TypeError) as exc:  # bad JSON, unknown field, invalid rates
            return _error(400, f"bad control request: {exc}")
        return web.json_response(dataclasses.asdict(config))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        stats = self._stats
        stats.calls += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            response = await self._answer(request)
        finally:
            self._stats.in_flight -= 1
        self._stats.by_status[response.status] += 1
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        config = self.config
        echo = dict(request.headers) if config.echo_headers else None
        try:
            body = orjson.loads(await request.read())  # orjson: the double shares the cores it benchmarks
            messages = body["messages"]
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise TypeError("messages is not a list of objects")
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"invalid request: {exc}", echo)
        self.last_request = body
        model = str(body.get("model") or "llm-double")
        max_tokens = body.get("max_tokens")
        kind = classify(messages)
        self._stats.by_kind[kind] += 1

        if config.api_key is not None and request.headers.get("Authorization") != f"Bearer {config.api_key}":
            return _error(401, "invalid api key", echo)
        if config.down:
            return _error(503, "the double is down", echo)
        if config.force_status is not None:
            return _error(config.force_status, f"forced status {config.force_status}", echo)
        if config.max_concurrency is not None and self._stats.in_flight > config.max_concurrency:
            return _error(429, "too many requests in flight", echo, retry_after=config.retry_after_s)

        fault = self._draw_fault()
        if fault == "429":
            return _error(429, "rate limited", echo, retry_after=config.retry_after_s)
        await asyncio.sleep(self._latency_s())
        if fault == "5xx":
            status = FIVE_XX_CYCLE[self._five_xx % len(FIVE_XX_CYCLE)]
            self._five_xx += 1
            return _error(status, "server error", echo)
        if fault == "timeout":
            await asyncio.sleep(config.hang_s)

        answer = answer_for(kind, messages, model, config.style)
        content: str | None = answer
        finish_reason = "stop"
        if fault == "malformed":
            content = MALFORMED_TEXT
        elif fault == "empty_choices":
            content = None
        elif fault == "length":
            content, finish_reason = truncate_words(answer, count_tokens(answer) // 2), "length"
        elif isinstance(max_tokens, int) and count_tokens(answer) > max_tokens:
            content, finish_reason = truncate_words(answer, max_tokens), "length"

        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in messages)
        reply = chat_body(model, content, finish_reason=finish_reason, prompt_tokens=prompt_tokens)
        self._stats.prompt_tokens += prompt_tokens
        self._stats.completion_tokens += reply["usage"]["completion_tokens"]
        if fault == "bad_json":
            return web.Response(text=json.dumps(reply)[:40], content_type="application/json")
        return web.Response(body=orjson.dumps(reply), content_type="application/json")

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


def _error(
    status: int, message: str, echo: dict[str, str] | None = None, *, retry_after: float | None = None
) -> web.Response:
    error: dict[str, Any] = {"message": message, "type": "llm_double_error", "code": status}
    if echo is not None:
        error["request_headers"] = echo
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return web.json_response({"error": error}, status=status, headers=headers)
