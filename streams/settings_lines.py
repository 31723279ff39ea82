"""The settings in effect as a few readable lines, one per section, never a secret: the worker
logs them at start and `codeclm check` prints them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

from llm.settings import EndpointSettings
from streams.settings import Settings


def settings_lines(settings: Settings) -> list[str]:
    judge = endpoint_line("judge", settings.judge) if settings.judge else "endpoint judge: the strong endpoint"
    return [
        f"kafka: {public_fields(settings.kafka)}",
        endpoint_line("strong", settings.strong),
        endpoint_line("target", settings.target),
        judge,
        f"pipeline: {public_fields(settings.pipeline)}",
        f"dedup: {public_fields(settings.dedup)}",
        f"worker: {public_fields(settings.worker)}",
    ]


def endpoint_line(role: str, endpoint: EndpointSettings) -> str:
    # Whether a key is set, never the key, nor the file it is in.
    key = "api key set" if endpoint.api_key is not None or endpoint.api_key_file is not None else "no api key"
    rest = public_fields(endpoint, leave_out=("base_url", "model", "api_key_file"))
    return f"endpoint {role}: model {endpoint.model} at {shown_url(endpoint.base_url)}, {key}; {rest}"


def public_fields(model: BaseModel, leave_out: tuple[str, ...] = ()) -> str:
    """`name=value, ...` of a section, without its secrets; a mapping (custom headers, which can
    carry a key) shows only how many entries it has."""
    shown = []
    for name, info in type(model).model_fields.items():
        value: Any = getattr(model, name)
        if name in leave_out or is_secret(info.annotation):
            continue
        if isinstance(value, dict):
            value = f"{len(value)} set"
        shown.append(f"{name}={value}")
    return ", ".join(shown)


def is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def shown_url(url: str | None) -> str | None:
    """The URL without a user and password in it (http://user:pass@host/v1 -> http://host/v1)."""
    if url is None or "@" not in url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def same_model(strong: EndpointSettings, target: EndpointSettings) -> bool:
    def where(e: EndpointSettings) -> str:
        return (e.base_url or "").rstrip("/")

    return strong.model == target.model and where(strong) == where(target)


def same_model_warning(settings: Settings) -> str | None:
    """Why settings whose strong and target are one model cannot produce a single pair, or None."""
    if not same_model(settings.strong, settings.target):
        return None
    return (
        f"strong and target are the same model ({settings.target.model} at {shown_url(settings.target.base_url)}): "
        "every gap is about 0: nothing will be accepted; point the target at the model you want to align"
    )
