"""What a worker logs at start: every setting in effect, never a secret, and a warning when the
strong and the target are one model (every gap is then about 0 and nothing is accepted)."""

from __future__ import annotations

import logging

import pytest

from agents.settings import DedupSettings, PipelineSettings
from streams.runtime.worker import log_settings
from streams.settings import Settings, overlay

STRONG_KEY = "sk-strong-0123456789abcdef"
TARGET_KEY = "sk-target-in-a-file-9876"
SASL_PASSWORD = "kafka-pa55word"
HTTP_TOKEN = "metrics-t0ken"
URL_PASSWORD = "url-pa55"


def endpoints(strong: dict, target: dict, **sections) -> Settings:
    return overlay(Settings(), {"strong": strong, "target": target, **sections})


def logged(caplog: pytest.LogCaptureFixture, settings: Settings) -> list[logging.LogRecord]:
    with caplog.at_level(logging.INFO, logger="codeclm.worker"):
        log_settings(settings)
    return [r for r in caplog.records if r.name == "codeclm.worker"]


def test_every_endpoint_and_every_pipeline_and_dedup_setting_is_logged(caplog):
    settings = endpoints(
        {"base_url": "https://api.example.com/v1", "model": "big", "max_in_flight": 32, "timeout_s": 60},
        {"base_url": "http://127.0.0.1:8000/v1", "model": "small-7b", "max_retries": 2},
        judge={"base_url": "https://judge.example.com/v1", "model": "critic"},
        pipeline={"gap_threshold": 2.5},
    )
    text = "\n".join(r.getMessage() for r in logged(caplog, settings))
    assert "strong: model big at https://api.example.com/v1, no api key; max_in_flight=32, timeout_s=60.0" in text
    assert "target: model small-7b at http://127.0.0.1:8000/v1, no api key; max_in_flight=64" in text
    assert "max_retries=2" in text
    assert "judge: model critic at https://judge.example.com/v1" in text
    for name, value in PipelineSettings(gap_threshold=2.5).model_dump().items():
        assert f"{name}={value}" in text
    for name, value in DedupSettings().model_dump().items():
        assert f"{name}={value}" in text
    assert len(text.splitlines()) <= 8  # a few readable lines, one per section


def test_without_settings_of_its_own_the_judge_is_said_to_be_the_strong_endpoint(caplog):
    settings = endpoints({"base_url": "http://a/v1", "model": "big"}, {"base_url": "http://b/v1", "model": "small"})
    assert "endpoint judge: the strong endpoint" in [r.getMessage() for r in logged(caplog, settings)]


def test_no_secret_appears_in_the_logged_lines(caplog, tmp_path):
    key_file = tmp_path / "target.key"
    key_file.write_text(TARGET_KEY)
    settings = endpoints(
        {"base_url": f"https://user:{URL_PASSWORD}@api.example.com/v1", "model": "big", "api_key": STRONG_KEY},
        {"base_url": "http://127.0.0.1:8000/v1", "model": "small", "api_key_file": str(key_file)},
        kafka={"sasl_mechanism": "PLAIN", "sasl_username": "me", "sasl_password": SASL_PASSWORD},
        worker={"http_token": HTTP_TOKEN},
    )
    text = "\n".join(r.getMessage() for r in logged(caplog, settings))
    for secret in (STRONG_KEY, TARGET_KEY, SASL_PASSWORD, HTTP_TOKEN, URL_PASSWORD, str(key_file)):
        assert secret not in text
    assert "strong: model big at https://api.example.com/v1, api key set" in text
    assert "target: model small at http://127.0.0.1:8000/v1, api key set" in text
    assert "sasl_username=me" in text  # what is not secret is still there


@pytest.mark.parametrize("target_url", ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/"])
def test_one_model_as_strong_and_target_is_warned_about(caplog, target_url):
    settings = endpoints(
        {"base_url": "http://127.0.0.1:8000/v1", "model": "llama"}, {"base_url": target_url, "model": "llama"}
    )
    warnings = [r.getMessage() for r in logged(caplog, settings) if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("strong and target are the same model (llama at http://127.0.0.1:8000/v1")
    assert warnings[0].endswith(
        "every gap is about 0: nothing will be accepted; point the target at the model you want to align"
    )


@pytest.mark.parametrize(
    "target",
    [
        {"base_url": "http://127.0.0.1:8000/v1", "model": "llama-8b"},  # another model on the server
        {"base_url": "http://127.0.0.1:8001/v1", "model": "llama"},  # the same name on another server
    ],
)
def test_two_models_are_not_warned_about(caplog, target):
    settings = endpoints({"base_url": "http://127.0.0.1:8000/v1", "model": "llama"}, target)
    assert not [r for r in logged(caplog, settings) if r.levelno >= logging.WARNING]
