"""Settings: paper defaults, environment, CLI flags on top, and secrets kept out of sight."""

import pytest

from streams.cli import build_parser, settings_from_args
from streams.settings import Settings, settings_env


def test_defaults_are_the_papers_numbers():
    p = Settings().pipeline
    assert (p.max_skills, p.instructions_per_metadata, p.rubrics_per_metadata) == (3, 10, 4)
    assert (p.max_iterations, p.gap_threshold, p.judge_passes, p.generation_temperature) == (4, 3.0, 2, 0.7)


def test_environment_then_flags(monkeypatch):
    monkeypatch.setenv("CODECLM_PIPELINE__GAP_THRESHOLD", "2.5")
    monkeypatch.setenv("CODECLM_PIPELINE__MAX_ITERATIONS", "3")
    monkeypatch.setenv("CODECLM_STRONG__BASE_URL", "http://env/v1")
    args = build_parser().parse_args(
        ["worker", "--max-iterations", "6", "--target-url", "http://flag/v1", "--partitions", "8"]
    )
    settings = settings_from_args(args)
    assert settings.pipeline.gap_threshold == 2.5  # env
    assert settings.pipeline.max_iterations == 6  # flag beats env
    assert settings.strong.base_url == "http://env/v1"
    assert settings.target.base_url == "http://flag/v1"
    assert settings.kafka.partitions == 8


def test_judge_defaults_to_strong_and_a_judge_flag_starts_from_it(monkeypatch):
    monkeypatch.setenv("CODECLM_STRONG__MODEL", "big")
    assert Settings().judge_endpoint.model == "big"
    settings = settings_from_args(build_parser().parse_args(["worker", "--judge-model", "judge"]))
    assert settings.judge_endpoint.model == "judge"
    assert settings.judge_endpoint.base_url == settings.strong.base_url


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("CODECLM_PIPELINE__MAX_ITERATIONS", "0")
    with pytest.raises(ValueError, match="max_iterations"):
        Settings()


def test_keys_are_hidden_when_printed_but_travel_to_child_processes(monkeypatch):
    monkeypatch.setenv("CODECLM_STRONG__API_KEY", "sk-very-secret")
    settings = Settings()
    assert "sk-very-secret" not in repr(settings) and "sk-very-secret" not in str(settings)
    assert settings.strong.key() == "sk-very-secret"
    assert settings_env(settings)["CODECLM_STRONG__API_KEY"] == "sk-very-secret"


def test_settings_survive_the_trip_through_the_environment(monkeypatch):
    args = build_parser().parse_args(["worker", "--gap-threshold", "4", "--topic-prefix", "x."])
    settings = settings_from_args(args)
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    assert Settings() == settings


def test_api_key_file(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    monkeypatch.setenv("CODECLM_TARGET__API_KEY_FILE", str(key_file))
    assert Settings().target.key() == "sk-from-file"
