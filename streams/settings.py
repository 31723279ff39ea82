"""One Settings object with Kafka, LLM, pipeline and worker sections, built once and passed down.

Each section lives beside what it configures (`llm/settings.py`: an endpoint; `agents/settings.py`:
the pipeline and dedup); this module adds Kafka's and the worker's and composes them.

Every value comes from (highest first) CLI flags, `CODECLM_*` environment variables with `__`
between sections (`CODECLM_PIPELINE__GAP_THRESHOLD=2.5`, `CODECLM_STRONG__BASE_URL=...`), a TOML
file (`--config`, or `CODECLM_CONFIG`) with the same names in sections (`[strong]`,
`base_url = ...`), then the defaults below, which are the paper's settings. No LLM endpoint has
a default: the worker refuses to start until the strong and target ones are set.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agents.cost import Price
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first: what the code passes, the environment, then the config file.
        return init_settings, env_settings, ConfigFileSource(settings_cls)

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

    def prices(self) -> dict[str, Price]:
        """Each role's price, where its endpoint has one (a missing half counts as free)."""
        out = {}
        for role, endpoint in (("strong", self.strong), ("target", self.target), ("judge", self.judge_endpoint)):
            prompt, completion = endpoint.prompt_price_per_million, endpoint.completion_price_per_million
            if prompt is not None or completion is not None:
                out[role] = Price(prompt or 0.0, completion or 0.0)
        return out

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}{name}"


# The sections of Settings and the model of each (the judge is an endpoint, None = the strong one).
SECTIONS: dict[str, type[BaseModel]] = {
    "kafka": KafkaSettings,
    "strong": EndpointSettings,
    "target": EndpointSettings,
    "judge": EndpointSettings,
    "pipeline": PipelineSettings,
    "dedup": DedupSettings,
    "worker": WorkerSettings,
}

# What an endpoint needs before anything can call it; neither has a default.
REQUIRED_ENDPOINT_FIELDS = ("base_url", "model")


def env_name(section: str, field: str) -> str:
    return f"CODECLM_{section.upper()}__{field.upper()}"


def unset_endpoint_fields(settings: Settings) -> list[tuple[str, str]]:
    """(role, field) of each endpoint value the pipeline needs and nobody set: base URL and model
    of the strong and the target, and of the judge when it has a section of its own (without
    one the judge is the strong endpoint)."""
    roles = {"strong": settings.strong, "target": settings.target}
    if settings.judge is not None:
        roles["judge"] = settings.judge
    return [
        (role, field)
        for role, endpoint in roles.items()
        for field in REQUIRED_ENDPOINT_FIELDS
        if getattr(endpoint, field) is None
    ]


def endpoint_url(endpoint: EndpointSettings) -> str:
    """The base URL of an endpoint that is checked to have one (the worker checks at start)."""
    if endpoint.base_url is None:
        raise ValueError("an LLM endpoint has no base_url (CODECLM_STRONG__BASE_URL, CODECLM_TARGET__BASE_URL)")
    return endpoint.base_url


# -- the configuration file -------------------------------------------------------------------

CONFIG_ENV = "CODECLM_CONFIG"
# The file given by --config while load_settings builds the settings (the source below has no
# other way in: pydantic-settings builds each source from the class, not from arguments).
_config_flag: ContextVar[Path | None] = ContextVar("codeclm_config_flag", default=None)


class ConfigFileError(ValueError):
    """A config file that is missing, is not TOML, or names a section or field that does not exist."""


def load_settings(config_file: Path | None = None) -> Settings:
    """Settings from the environment over `config_file` (else the file CODECLM_CONFIG names)."""
    token = _config_flag.set(config_file)
    try:
        return Settings()
    finally:
        _config_flag.reset(token)


def config_file_in_use() -> Path | None:
    flag = _config_flag.get()
    if flag is not None:
        return flag
    from_env = os.environ.get(CONFIG_ENV, "").strip()
    return Path(from_env) if from_env else None


class ConfigFileSource(PydanticBaseSettingsSource):
    """The TOML config file, below the environment and the flags."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the file whole

    def __call__(self) -> dict[str, Any]:
        path = config_file_in_use()
        return read_config_file(path) if path is not None else {}


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's sections, each checked against its model: an unknown name is an error, not
    ignored (a typo would otherwise leave the default silently in force). Relative paths in
    the file are relative to the file's folder."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: no such config file (from --config or {CONFIG_ENV})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"{path}: not a readable TOML file: {exc}") from None
    for section, values in data.items():
        if section not in SECTIONS or not isinstance(values, dict):
            raise ConfigFileError(
                f"{path}: unknown section or key {section!r}; settings go in the sections [{'], ['.join(SECTIONS)}]"
            )
        model = SECTIONS[section]
        unknown = sorted(set(values) - set(model.model_fields))
        if unknown:
            raise ConfigFileError(
                f"{path}: unknown key {unknown[0]!r} in [{section}]; its keys are {', '.join(model.model_fields)}"
            )
        for field, value in values.items():
            if isinstance(value, str) and is_path_field(model, field) and not Path(value).is_absolute():
                values[field] = str(path.parent / value)
    return data


def is_path_field(model: type[BaseModel], field: str) -> bool:
    annotation = model.model_fields[field].annotation
    return annotation is Path or Path in getattr(annotation, "__args__", ())


def overlay(base: Settings, sections: dict[str, dict[str, Any]]) -> Settings:
    update: dict[str, BaseModel] = {}
    # The judge last: a judge flag starts from the strong endpoint, flags included.
    for section in sorted(sections, key=lambda name: name == "judge"):
        values = sections[section]
        current = getattr(base, section)
        if section == "judge" and current is None:
            current = update.get("strong", base.strong)
        model_type = type(current) if current is not None else EndpointSettings
        update[section] = model_type.model_validate({**current.model_dump(), **values})
    return base.model_copy(update=update)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as CODECLM_* environment variables, for a child process (secrets included:
    the environment is how they travel; it is never logged)."""
    env: dict[str, str] = {}
    for section in SECTIONS:
        model = getattr(settings, section)
        if model is None:
            continue
        for field in type(model).model_fields:
            value = _revealed(getattr(model, field))
            if value is None:
                continue
            # JSON for a mapping (pydantic-settings reads it back so); the plain value otherwise
            env[env_name(section, field)] = json.dumps(value) if isinstance(value, dict) else str(value)
    return env


def _revealed(value: Any) -> Any:
    """A setting's value with its secrets as plain text (the environment is how they travel)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _revealed(v) for k, v in value.items()}
    return value
