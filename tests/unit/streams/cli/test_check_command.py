"""`codeclm check`'s command line: --seed is the seed's text (the tailoring actions' random seed
keeps its variable), and settings left unset are named on the last line."""

from __future__ import annotations

import os

import pytest

from streams.cli import build_parser, main, settings_from_args
from streams.kafka.broker import free_port


@pytest.fixture(autouse=True)
def no_codeclm_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CODECLM_"):
            monkeypatch.delenv(name)


def test_seed_is_the_text_of_a_seed_and_leaves_the_pipeline_seed_alone(monkeypatch):
    monkeypatch.setenv("CODECLM_PIPELINE__SEED", "7")
    args = build_parser().parse_args(
        ["check", "--seed", "Write a haiku", "--instructions", "3", "--gap-threshold", "2"]
    )
    assert (args.seed_text, args.instructions) == ("Write a haiku", 3)
    settings = settings_from_args(args)
    assert settings.pipeline.seed == 7 and settings.pipeline.gap_threshold == 2
    # the worker keeps its --seed flag for the pipeline setting
    assert settings_from_args(build_parser().parse_args(["worker", "--seed", "5"])).pipeline.seed == 5


def test_unset_endpoints_are_named_and_the_check_fails(capsys):
    code = main(["check", "--bootstrap", f"127.0.0.1:{free_port()}", "--timeout", "2", "--strong-model", "big"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert "endpoint strong: not checked: CODECLM_STRONG__BASE_URL not set" in out
    assert "  CODECLM_TARGET__MODEL (--target-model, or model in [target] of a --config file)" in out
    assert out[-1].startswith("check failed: fix broker: nothing answers at 127.0.0.1:")
    assert out[-1].endswith("settings: set CODECLM_STRONG__BASE_URL, CODECLM_TARGET__BASE_URL, CODECLM_TARGET__MODEL")


def test_instructions_is_at_least_one(capsys):
    assert main(["check", "--instructions", "0"]) == 2
    assert "--instructions is at least 1" in capsys.readouterr().err
