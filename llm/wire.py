"""How each provider's API wants a chat request, gives its answer, and says what went wrong.

- `OpenAIWire`: OpenAI's chat completions, as OpenAI itself, vLLM, Ollama, llama.cpp and a
  LiteLLM proxy serve them (`Authorization: Bearer`). OpenAI's reasoning and newer models refuse
  `max_tokens` (they take `max_completion_tokens`) and some take no temperature but 1; the wire
  learns both from the endpoint's first 400 and keeps to them.
- `AzureWire`: the same body on Azure OpenAI's deployment URL, with `api-version` and the
  `api-key` header.
- `AnthropicWire`: Anthropic's Messages API (`/messages`, `x-api-key`, `anthropic-version`,
  the system prompt apart, content blocks and `input_tokens`/`output_tokens` back).

Pure apart from the state a wire learns: no I/O here (llm/client.py sends).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from llm.base import Completion, Message
from llm.settings import EndpointSettings

AZURE_API_VERSION = "2024-10-21"
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_MAX_TEMPERATURE = 1.0  # its range is 0-1, OpenAI's 0-2

# What a 400 says when the request's own content is at fault (too long, filtered): that record
# is dead-lettered; any other call may well succeed.
_RECORD_FAULT = re.compile(
    r"context.length|maximum context|prompt is too long|too many tokens|reduce the length|input is too long"
    r"|string too long|content.?filter|content management policy|invalid_prompt|safety system",
    re.I,
)
_UNSUPPORTED_TEMPERATURE = re.compile(r"temperature.*(?:unsupported|not supported|only the default)", re.I | re.S)


class MalformedResponseError(ValueError):
    """A 200 response whose body holds no usable answer (not JSON, no choices, no content).
    Servers under load emit these now and then, so the client retries them."""


@dataclass(frozen=True)
class ErrorBody:
    """What an error response said, in any provider's shape."""

    message: str
    type: str | None = None
    param: str | None = None
    code: str | None = None

    @property
    def text(self) -> str:
        return " ".join(part for part in (self.message, self.type, self.param, self.code) if part)


def error_body(raw: bytes) -> ErrorBody:
    """OpenAI's {"error": {message, type, param, code}}, Anthropic's {"type": "error", "error":
    {type, message}}, a bare {"error": "..."} or {"detail": ...}, or plain text."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ErrorBody(raw.decode("utf-8", "replace").strip())
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        fields = {k: error.get(k) for k in ("message", "type", "param", "code")}
        message = fields.pop("message") or error.get("detail") or ""
        return ErrorBody(str(message), *(str(v) if v is not None else None for v in fields.values()))
    return ErrorBody(str(error))


def is_record_fault(status: int | None, error: ErrorBody) -> bool:
    """A refusal that belongs to one request (its prompt is over the context length, a content
    filter caught it), not to the configuration."""
    return status in (400, 413, 422) and bool(_RECORD_FAULT.search(error.text))


@dataclass(frozen=True)
class Lesson:
    """What an endpoint's 400 taught a wire; `new` when it changed how requests are sent."""

    what: str
    new: bool = True


class Wire(Protocol):
    url: str
    headers: dict[str, str]
    models_url: str

    def body(self, messages: list[Message], *, temperature: float, max_tokens: int, sample: int) -> bytes: ...

    def completion(self, body: Any, *, latency_s: float, attempts: int) -> Completion: ...

    def learn(self, status: int | None, error: ErrorBody) -> Lesson | None: ...

    @property
    def token_parameter(self) -> str: ...

    @property
    def sends_temperature(self) -> bool: ...


class OpenAIWire:
    """OpenAI's chat completions. `learn` adapts to an endpoint that refuses the token
    parameter or a temperature, from its 400; once per endpoint, then the wire keeps to it."""

    def __init__(self, endpoint: EndpointSettings, key: str | None):
        self.endpoint = endpoint
        base = (endpoint.base_url or "").rstrip("/")
        self.url = f"{base}/chat/completions"
        self.models_url = f"{base}/models"
        self.headers = {"Content-Type": "application/json", **_custom(endpoint), **self._auth(key)}
        self._token_parameter: str = "max_tokens" if endpoint.token_parameter == "auto" else endpoint.token_parameter
        self._learned_tokens = endpoint.token_parameter != "auto"
        self._sends_temperature = True

    @property
    def token_parameter(self) -> str:
        return self._token_parameter

    @property
    def sends_temperature(self) -> bool:
        return self._sends_temperature

    def _auth(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def body(self, messages: list[Message], *, temperature: float, max_tokens: int, sample: int) -> bytes:
        payload: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": messages,
            self._token_parameter: max_tokens,
        }
        if self._sends_temperature:
            payload["temperature"] = temperature
        if self.endpoint.send_seed:
            payload["seed"] = sample  # a rerun draws the same answers (llama.cpp, vLLM, OpenAI)
        return orjson.dumps(payload)  # once per request, for every attempt: a few times cheaper than json

    def completion(self, body: Any, *, latency_s: float, attempts: int) -> Completion:
        return parse_chat_response(
            body, latency_s=latency_s, attempts=attempts, fallback_model=self.endpoint.model or ""
        )

    def learn(self, status: int | None, error: ErrorBody) -> Lesson | None:
        """What the endpoint's 400 says about how it wants requests, or None when it is about
        something else. A request sent before the wire learned gets `Lesson(new=False)`: send
        it again as the endpoint wants it, nothing more to say."""
        if status != 400:
            return None
        text = error.text
        tokens = ("max_tokens", "max_completion_tokens")
        refused = next((t for t in tokens if error.param == t or f"'{t}'" in text or f"`{t}`" in text), None)
        if refused is not None and refused != self._token_parameter and self._learned_tokens:
            return Lesson("", new=False)  # sent before the wire learned: send it again
        if refused == self._token_parameter and not self._learned_tokens:
            other = tokens[1 - tokens.index(refused)]
            self._token_parameter, self._learned_tokens = other, True
            return Lesson(f"it takes {other}, not {refused}")
        if error.param == "temperature" or _UNSUPPORTED_TEMPERATURE.search(text):
            if not self._sends_temperature:
                return Lesson("", new=False)
            self._sends_temperature = False
            return Lesson("it takes no temperature but its default: the temperature is left out")
        return None


class AzureWire(OpenAIWire):
    """OpenAI's body on Azure OpenAI: the deployment's URL, `api-version`, the `api-key` header."""

    def __init__(self, endpoint: EndpointSettings, key: str | None):
        super().__init__(endpoint, key)
        version = endpoint.api_version or AZURE_API_VERSION
        self.url = f"{self.url}?api-version={version}"
        self.models_url = f"{self.models_url}?api-version={version}"

    def _auth(self, key: str | None) -> dict[str, str]:
        return {"api-key": key} if key else {}


class AnthropicWire:
    """Anthropic's Messages API. The system prompt goes apart; its temperature range is 0-1."""

    token_parameter = "max_tokens"
    sends_temperature = True

    def __init__(self, endpoint: EndpointSettings, key: str | None):
        self.endpoint = endpoint
        base = (endpoint.base_url or "").rstrip("/")
        self.url = f"{base}/messages"
        self.models_url = f"{base}/models"
        version = endpoint.api_version or ANTHROPIC_VERSION
        auth = {"x-api-key": key} if key else {}
        self.headers = {"Content-Type": "application/json", "anthropic-version": version, **_custom(endpoint), **auth}

    def body(self, messages: list[Message], *, temperature: float, max_tokens: int, sample: int) -> bytes:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        payload: dict[str, Any] = {
            "model": self.endpoint.model,
            "max_tokens": max_tokens,
            "messages": turns,
            "temperature": min(temperature, ANTHROPIC_MAX_TEMPERATURE),
        }
        if system:
            payload["system"] = system
        return orjson.dumps(payload)

    def completion(self, body: Any, *, latency_s: float, attempts: int) -> Completion:
        if not isinstance(body, dict):
            raise MalformedResponseError(f"body is a {type(body).__name__}, not an object")
        blocks = body.get("content")
        if not isinstance(blocks, list) or not blocks:
            raise MalformedResponseError("body has no content blocks")
        texts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise MalformedResponseError("no text content block")
        raw_usage = body.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        model = body.get("model")
        return Completion(
            text="".join(texts),  # type: ignore[arg-type]
            model=model if isinstance(model, str) and model else self.endpoint.model or "",
            prompt_tokens=_int(usage.get("input_tokens")),
            completion_tokens=_int(usage.get("output_tokens")),
            latency_s=latency_s,
            finish_reason="length" if body.get("stop_reason") == "max_tokens" else body.get("stop_reason"),
            attempts=attempts,
        )

    def learn(self, status: int | None, error: ErrorBody) -> Lesson | None:
        return None


def wire_for(endpoint: EndpointSettings, key: str | None) -> Wire:
    wires: dict[str, type[OpenAIWire] | type[AnthropicWire]] = {
        "openai": OpenAIWire,
        "azure": AzureWire,
        "anthropic": AnthropicWire,
    }
    return wires[endpoint.provider](endpoint, key)


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


def _custom(endpoint: EndpointSettings) -> dict[str, str]:
    return {name: value.get_secret_value() for name, value in endpoint.headers.items()}
