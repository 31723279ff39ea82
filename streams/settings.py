"""One Settings object with Kafka, LLM, pipeline and worker sections, built once and passed down.

Each section lives beside what it configures (`llm/settings.py`: an endpoint; `agents/settings.py`:
the pipeline and dedup); this module adds Kafka's and the worker's and composes them.

Every value comes from (highest first) CLI flags, `CODECLM_*` environment variables with `__`
between sections (`CODECLM_PIPELINE__GAP_THRESHOLD=2.5`, `CODECLM_STRONG__BASE_URL=...`), then
the defaults below, which are the paper's settings.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.settings import DedupSettings, PipelineSettings
from llm.settings import EndpointSettings


class KafkaSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "codeclm."
    partitions: int = Field(default=4, ge=1, description="partitions of each pipeline topic")
    replication_factor: int = Field(default=1, ge=1)
    security_protocol: str = Field(default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
    sasl_mechanism: str | None = Field(default=None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None


class WorkerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    app_id: str = "codeclm"
    in_flight_per_stage: int = Field(default=512, ge=1, description="records a stage works on at once")
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    data_dir: Path = Field(default=Path(".codeclm-worker"), description="faust's local state")
    log_level: str = "info"
    http_enabled: bool = Field(default=True, description="serve /healthz, /metrics and /lag")
    http_host: str = Field(default="127.0.0.1", description="any address but loopback needs http_token")
    http_port: int = Field(
        default=0, ge=0, le=65535, description="0 picks a free port (logged, and kept in <data_dir>/http-url)"
    )
    http_token: SecretStr | None = Field(default=None, description="bearer token for /metrics and /lag")
    llm_cache: bool = Field(
        default=True, description="keep LLM answers (SQLite in data_dir) so replays after a crash do not pay again"
    )
    session_timeout_s: float = Field(
        default=10.0,
        ge=6,
        description="Kafka group session timeout: a dead worker's partitions move after it (faust's 60 s default stalls a stage after every crash)",
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.lower()
        if v not in {"crit", "error", "warn", "info", "debug"}:
            raise ValueError("log_level is one of crit, error, warn, info, debug")
        return v

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WorkerSettings:
        # Metrics and lag name topics, groups and volumes: not for the whole network unasked.
        if self.http_enabled and not is_loopback(self.http_host) and not self.http_token:
            raise ValueError(
                f"http_host {self.http_host} is not loopback: set http_token (CODECLM_WORKER__HTTP_TOKEN; "
                "clients send `Authorization: Bearer <token>`) or bind 127.0.0.1"
            )
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name may resolve to anything


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CODECLM_", env_nested_delimiter="__", frozen=True, extra="ignore")

    kafka: KafkaSettings = KafkaSettings()
    strong: EndpointSettings = EndpointSettings()
    target: EndpointSettings = EndpointSettings()
    judge: EndpointSettings | None = Field(default=None, description="defaults to the strong endpoint")
    pipeline: PipelineSettings = PipelineSettings()
    dedup: DedupSettings = DedupSettings()
    worker: WorkerSettings = WorkerSettings()

    @property
    def judge_endpoint(self) -> EndpointSettings:
        return self.judge or self.strong

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}{name}"


def overlay(base: Settings, sections: dict[str, dict[str, Any]]) -> Settings:
    update: dict[str, BaseModel] = {}
    for section, values in sections.items():
        current = getattr(base, section)
        if section == "judge" and current is None:
            current = base.strong  # a judge flag starts from the strong endpoint
        model_type = type(current) if current is not None else EndpointSettings
        update[section] = model_type.model_validate({**current.model_dump(), **values})
    return base.model_copy(update=update)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as CODECLM_* environment variables, for a child process (secrets included:
    the environment is how they travel; it is never logged)."""
    env: dict[str, str] = {}
    for section in ("kafka", "strong", "target", "judge", "pipeline", "dedup", "worker"):
        model = getattr(settings, section)
        if model is None:
            continue
        for field, value in model.model_dump().items():
            if value is None:
                continue
            if hasattr(getattr(model, field), "get_secret_value"):
                value = getattr(model, field).get_secret_value()
            env[f"CODECLM_{section.upper()}__{field.upper()}"] = str(value)
    return env
