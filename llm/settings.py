"""The settings of one LLM endpoint (a section of streams.settings.Settings: strong, target, judge)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

Provider = Literal["openai", "azure", "anthropic"]


class EndpointSettings(BaseModel):
    """One chat endpoint: OpenAI's chat completions (OpenAI itself and every server that speaks
    it: vLLM, Ollama, llama.cpp, a LiteLLM proxy), Azure OpenAI, or Anthropic's Messages API."""

    model_config = ConfigDict(frozen=True)

    base_url: str | None = Field(default=None, description="up to and including /v1")
    model: str | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = Field(default=None, description="a file holding the key (for secret mounts)")
    max_in_flight: int = Field(default=64, ge=1, description="requests in flight to this endpoint")
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    max_tokens_cap: int | None = Field(
        default=None, ge=1, description="never ask this endpoint for more completion tokens than this"
    )
    pause_when_down: bool = Field(
        default=True, description="when the endpoint stops answering, wait for it instead of dead-lettering"
    )
    send_seed: bool = Field(
        default=False, description="send the sample index as `seed` so sampling repeats (llama.cpp, vLLM, OpenAI)"
    )
    provider: Provider = Field(
        default="openai",
        description="openai: OpenAI's chat completions, as OpenAI, vLLM, Ollama, llama.cpp and LiteLLM serve them; "
        "azure: Azure OpenAI (base_url up to /openai/deployments/<deployment>, the api-key header); "
        "anthropic: Anthropic's Messages API (base_url https://api.anthropic.com/v1)",
    )
    api_version: str | None = Field(
        default=None, description="azure: the api-version query (default 2024-10-21); anthropic: anthropic-version"
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra headers on every request (a gateway's key, an organisation id)"
    )
    token_parameter: Literal["auto", "max_tokens", "max_completion_tokens"] = Field(
        default="auto",
        description="how to send the completion budget; auto: max_tokens until the endpoint says it wants "
        "max_completion_tokens (OpenAI's reasoning and newer models), then that",
    )
    prompt_price_per_million: float | None = Field(
        default=None, ge=0, description="US dollars per million prompt tokens, to show what the pipeline costs"
    )
    completion_price_per_million: float | None = Field(
        default=None, ge=0, description="US dollars per million completion tokens"
    )
    refused_probe_s: float = Field(
        default=60.0, gt=0, description="while the endpoint refuses the configuration, one call tries it this often"
    )

    def key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip()
        return None
