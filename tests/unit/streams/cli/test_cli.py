"""The `codeclm` command line: flags made from the settings' fields, boolean values, the LLM
double's own flags passed through, and the worker refusing to start without its endpoints."""

from __future__ import annotations

import os

import pytest

from llm.settings import EndpointSettings
from streams.cli import build_parser, main, settings_from_args
from streams.settings import PipelineSettings

ENDPOINT_VARIABLES = (
    "CODECLM_STRONG__BASE_URL",
    "CODECLM_STRONG__MODEL",
    "CODECLM_TARGET__BASE_URL",
    "CODECLM_TARGET__MODEL",
)


@pytest.fixture(autouse=True)
def no_codeclm_environment(monkeypatch):
    """What the caller's shell has set must not decide these tests."""
    for name in list(os.environ):
        if name.startswith("CODECLM_"):
            monkeypatch.delenv(name)


def parse(*argv: str):
    return settings_from_args(build_parser().parse_args(["worker", *argv]))


# -- boolean flags -------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["true", "True", "YES", "on", "1"])
def test_a_boolean_flag_takes_the_usual_words_for_true(word):
    assert parse("--rich-metadata", word).pipeline.rich_metadata is True


@pytest.mark.parametrize("word", ["false", "FALSE", "no", "Off", "0"])
def test_a_boolean_flag_takes_the_usual_words_for_false(word):
    # `type=bool` made "false" True: any non-empty text is truthy.
    assert parse("--rich-metadata", word).pipeline.rich_metadata is False
    assert parse("--strong-pause-when-down", word).strong.pause_when_down is False


@pytest.mark.parametrize("word", ["maybe", "", "2", "tru"])
def test_a_boolean_flag_refuses_anything_else(word, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["worker", "--rich-metadata", word])
    assert exit_.value.code == 2
    assert "--rich-metadata: expected true/false, yes/no, on/off or 1/0" in capsys.readouterr().err


# -- endpoint flags, made from EndpointSettings' fields -------------------------------------------


def worker_flags() -> set[str]:
    parser = build_parser()
    worker = parser._subparsers._group_actions[0].choices["worker"]  # type: ignore[union-attr]
    return {flag for action in worker._actions for flag in action.option_strings}


def test_every_endpoint_field_but_the_key_has_a_flag_per_role():
    flags = worker_flags()
    for role in ("strong", "target", "judge"):
        assert {f"--{role}-url", f"--{role}-model", f"--{role}-api-key-file"} <= flags
        for field in ("max_in_flight", "timeout_s", "max_retries", "max_tokens_cap", "pause_when_down", "send_seed"):
            assert f"--{role}-{field.replace('_', '-')}" in flags
        # A flag shows in `ps` and in shell history: keys come from elsewhere.
        assert f"--{role}-api-key" not in flags
    for field in PipelineSettings.model_fields:
        assert f"--{field.replace('_', '-')}" in flags


def test_endpoint_flags_set_their_role_only():
    settings = parse("--strong-timeout-s", "5", "--target-max-retries", "1", "--target-max-tokens-cap", "24")
    assert settings.strong.timeout_s == 5.0 and settings.target.timeout_s == EndpointSettings().timeout_s
    assert settings.target.max_retries == 1 and settings.target.max_tokens_cap == 24
    assert settings.judge is None  # no judge flag: the judge is the strong endpoint


def test_a_judge_flag_makes_a_judge_from_the_strong_endpoint():
    settings = parse("--strong-url", "http://s/v1", "--strong-model", "big", "--judge-max-in-flight", "3")
    assert settings.judge is not None
    assert (settings.judge.base_url, settings.judge.model, settings.judge.max_in_flight) == ("http://s/v1", "big", 3)


def test_commands_that_run_no_stage_have_no_endpoint_flags():
    parser = build_parser()
    feed = parser._subparsers._group_actions[0].choices["feed"]  # type: ignore[union-attr]
    flags = {flag for action in feed._actions for flag in action.option_strings}
    assert "--config" in flags and "--bootstrap" in flags
    assert "--strong-url" not in flags and "--gap-threshold" not in flags


# -- the LLM double's flags ------------------------------------------------------------------------


def test_llm_double_passes_every_argument_to_the_double():
    args = build_parser().parse_args(["llm-double", "--port", "0", "--latency-ms", "5", "--style", "chat"])
    assert args.double_args == ["--port", "0", "--latency-ms", "5", "--style", "chat"]


def test_llm_double_help_is_the_doubles_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["llm-double", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--latency-ms" in out and "--rate-429" in out


def test_llm_double_refuses_a_flag_the_double_does_not_have(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["llm-double", "--no-such-flag"])
    assert exit_.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


# -- no silent defaults: the worker needs its endpoints ---------------------------------------------


def test_the_worker_refuses_to_start_without_endpoints_and_names_what_to_set(capsys):
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    for variable in ENDPOINT_VARIABLES:
        assert variable in err
    for flag in ("--strong-url", "--strong-model", "--target-url", "--target-model"):
        assert flag in err
    assert "CODECLM_JUDGE" not in err  # without settings of its own the judge is the strong endpoint


def test_the_worker_names_only_what_is_missing(monkeypatch, capsys):
    monkeypatch.setenv("CODECLM_STRONG__BASE_URL", "http://strong/v1")
    monkeypatch.setenv("CODECLM_STRONG__MODEL", "big")
    assert main(["worker", "--target-url", "http://target/v1"]) == 2
    err = capsys.readouterr().err
    assert "CODECLM_TARGET__MODEL" in err and "--target-model" in err
    assert "CODECLM_STRONG__" not in err and "CODECLM_TARGET__BASE_URL" not in err


def test_a_judge_with_settings_of_its_own_needs_its_url_and_model(monkeypatch, capsys):
    for variable in ENDPOINT_VARIABLES:
        monkeypatch.setenv(variable, "http://x/v1" if variable.endswith("URL") else "m")
    monkeypatch.setenv("CODECLM_JUDGE__MODEL", "critic")
    assert main(["worker"]) == 2
    assert "CODECLM_JUDGE__BASE_URL (--judge-url" in capsys.readouterr().err


def test_the_demo_with_some_of_your_endpoints_refuses_before_starting_anything(capsys):
    assert main(["demo", "--strong-url", "http://strong/v1", "--strong-model", "big"]) == 2
    err = capsys.readouterr().err
    assert "CODECLM_TARGET__BASE_URL" in err and "CODECLM_TARGET__MODEL" in err
