"""What each provider the double emulates says when it refuses a request: the exact error
bodies of OpenAI, Azure OpenAI, Anthropic, vLLM and a LiteLLM proxy, and the way OpenAI
redacts a key it refuses. Pure functions, no I/O.

A body is copied from what the real server sent, as quoted in public bug reports and docs;
the source of each is named beside it. Three dialects of error body: OPENAI (also what
vLLM, llama.cpp, Ollama and LiteLLM send on /v1/chat/completions, and what Azure passes
through for a parameter it refuses), AZURE (Azure's own 401 and 404) and ANTHROPIC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPENAI, AZURE, ANTHROPIC = "openai", "azure", "anthropic"

# token_parameter: which of the two token-limit parameters a /v1/chat/completions server takes.
TOKEN_PARAMETERS = ("any", "max_completion_tokens", "max_tokens")
# auth: where /v1/chat/completions looks for the key, and so whose 401 body it answers with.
AUTH_STYLES = {"bearer": OPENAI, "api-key": AZURE, "x-api-key": ANTHROPIC}
# The 5xx statuses the 5xx fault cycles through on Anthropic's endpoint: its api_error and
# its overloaded_error (https://docs.anthropic.com/claude/reference/errors-and-rate-limits).
ANTHROPIC_FIVE_XX_CYCLE = (500, 529)

# Anthropic's error type per status (same docs page); other 4xx are invalid_request_error.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
# What Anthropic says with the statuses the double's faults produce (bug reports quoting
# bodies: anthropics/claude-code#71670 for 429, #47464 for 500; docs.llmgateway.io's
# troubleshooting page for 529).
_ANTHROPIC_FAULT_MESSAGES = {
    429: "This request would exceed your account's rate limit. Please try again later.",
    500: "Internal server error",
    529: "Overloaded",
}


@dataclass(frozen=True)
class Refusal:
    """An error reply: status, JSON body, extra response headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None


def openai_error(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def azure_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    default = "invalid_request_error" if status < 500 else "api_error"
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, default), "message": message}}


def fault_body(dialect: str, status: int, message: str) -> dict[str, Any]:
    """The body of an error the double's own knobs cause (down, force_status, faults, a body it
    cannot read): Anthropic's shape on its endpoint, the double's own elsewhere (unchanged)."""
    if dialect == ANTHROPIC:
        return anthropic_error(status, _ANTHROPIC_FAULT_MESSAGES.get(status, message))
    return {"error": {"message": message, "type": "llm_double_error", "code": status}}


def with_echo(body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The body with the request headers echoed into its error object (echo_headers)."""
    if isinstance(body.get("error"), dict):
        return {**body, "error": {**body["error"], "request_headers": headers}}
    return {**body, "request_headers": headers}


# -- the token parameter and the temperature (OpenAI's reasoning and newer models; older servers)


def max_tokens_unsupported() -> Refusal:
    """OpenAI's answer to `max_tokens` from a model that takes only `max_completion_tokens`
    (quoted whole in griptape-ai/ComfyUI-Griptape#312 and ITSpecialist111/ai_automation_suggester#38)."""
    message = (
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
    )
    return Refusal(400, openai_error(message, param="max_tokens", code="unsupported_parameter"))


def max_completion_tokens_unrecognized(value: Any) -> Refusal:
    """vLLM before 0.6.4 (pydantic, extra fields forbidden) on `max_completion_tokens`; note the
    body has no "error" wrapper (quoted in vllm-project/vllm#10078 and voideditor/void#128)."""
    detail = [
        {
            "type": "extra_forbidden",
            "loc": ("body", "max_completion_tokens"),
            "msg": "Extra inputs are not permitted",
            "input": value,
        }
    ]
    body = {"object": "error", "message": str(detail), "type": "BadRequestError", "param": None, "code": 400}
    return Refusal(400, body)


def temperature_unsupported(value: Any) -> Refusal:
    """OpenAI's answer to a temperature other than 1 from a model that takes only the default,
    the number as sent (QwenLM/qwen-code#921, holoviz/lumen#1087, OpenHands/OpenHands#4131)."""
    message = f"Unsupported value: 'temperature' does not support {value} with this model. Only the default (1) value is supported."
    return Refusal(400, openai_error(message, param="temperature", code="unsupported_value"))


# -- the model, the context length


def model_not_found(dialect: str, model: str) -> Refusal:
    """OpenAI: shobrook/wut#14; Azure's unknown deployment: chatboxai/chatbox#646;
    Anthropic: anthropics/claude-code#5349."""
    if dialect == ANTHROPIC:
        return Refusal(404, anthropic_error(404, f"model: {model}"))
    if dialect == AZURE:
        message = (
            "The API deployment for this resource does not exist. "
            "If you created the deployment within the last 5 minutes, please wait a moment and try again."
        )
        return Refusal(404, azure_error("DeploymentNotFound", message))
    message = f"The model `{model}` does not exist or you do not have access to it."
    return Refusal(404, openai_error(message, code="model_not_found"))


def context_exceeded(dialect: str, limit: int, used: int) -> Refusal:
    """A prompt over the context length. OpenAI: ChatGPTNextWeb/NextChat#625; Anthropic:
    sojohnnysaid/project-guide#2."""
    if dialect == ANTHROPIC:
        return Refusal(400, anthropic_error(400, f"prompt is too long: {used} tokens > {limit} maximum"))
    message = (
        f"This model's maximum context length is {limit} tokens. However, your messages resulted in {used} tokens. "
        "Please reduce the length of the messages."
    )
    return Refusal(400, openai_error(message, param="messages", code="context_length_exceeded"))


# -- keys and headers


def redact_key(key: str) -> str:
    """A key as OpenAI shows it in its 401: the first 8 and last 4 characters, an asterisk for
    each one between ("sk-WRQsP***************************************xQBt" for a 51-character
    key, dKosarevsky/AI-Talks#32). A key of 12 characters or fewer is shown whole, as OpenAI
    showed "undefined" (jas3333/GPT-Helper#26)."""
    if len(key) <= 12:
        return key
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def key_refused(dialect: str, sent: str | None) -> Refusal:
    """The 401 for a missing (sent None) or wrong key. OpenAI: chatboxai/chatbox#98 (missing),
    popjane/free_chatgpt_api#3 (wrong); Azure: SciSharp/BotSharp#386; Anthropic:
    n8n-io/n8n#37930 (missing), eyaltoledano/claude-task-master#222 (wrong)."""
    if dialect == ANTHROPIC:
        return Refusal(
            401, anthropic_error(401, "x-api-key header is required" if sent is None else "invalid x-api-key")
        )
    if dialect == AZURE:
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
            "for an active subscription and use a correct regional API endpoint for your resource."
        )
        return Refusal(401, azure_error("401", message))
    if sent is None:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
            "auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're "
            "accessing the API from your browser and are prompted for a username and password. You can obtain an API "
            "key from https://platform.openai.com/account/api-keys."
        )
        return Refusal(401, openai_error(message))
    message = (
        f"Incorrect API key provided: {redact_key(sent)}. "
        "You can find your API key at https://platform.openai.com/account/api-keys."
    )
    return Refusal(401, openai_error(message, code="invalid_api_key"))


def header_refused(dialect: str, name: str, *, missing: bool) -> Refusal:
    """A header a gateway demands (require_headers) is missing (401) or carries another value
    (403); the value it wants is never shown. On OpenAI's dialect, in the shape of a LiteLLM
    proxy's auth errors (type "auth_error", param and code as strings: BerriAI/litellm#1576,
    AIPexStudio/AIPex#62)."""
    status = 401 if missing else 403
    what = "is missing" if missing else "does not carry the value this endpoint requires"
    message = f"Authentication Error, the header {name} {what}"
    if dialect == ANTHROPIC:
        return Refusal(status, anthropic_error(status, message))
    if dialect == AZURE:
        return Refusal(status, azure_error(str(status), message))
    return Refusal(status, openai_error(message, type_="auth_error", param="None", code=str(status)))


# -- Azure's and Anthropic's own


def azure_resource_not_found() -> Refusal:
    """Azure without the api-version query (MicrosoftDocs/azure-docs#114602; body as in
    BerriAI/litellm#8572)."""
    return Refusal(404, azure_error("404", "Resource not found"))


def anthropic_invalid(message: str) -> Refusal:
    """Anthropic's 400: "anthropic-version: header is required" (PipedreamHQ/pipedream#9697),
    "max_tokens: Field required" (tickernelz/opencode-mem#50), ..."""
    return Refusal(400, anthropic_error(400, message))
