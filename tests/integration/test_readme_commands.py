"""The README's commands, run as written in a shell through a `codeclm` on PATH: the broker's
`eval "$(codeclm broker start)"`, status and stop, `codeclm --help` and every subcommand's help.
(tests/unit/streams/cli/test_readme_commands.py parses every command the documents show.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli import build_parser
from streams.kafka.broker import EmbeddedBroker
from tests.paths import ROOT


@pytest.fixture
def shell_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose `codeclm` is this checkout's, and no CODECLM_* of the caller's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    codeclm = bin_dir / "codeclm"
    codeclm.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m streams.cli "$@"\n')
    codeclm.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECLM_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def sh(script: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.kafka
def test_eval_broker_start_exports_the_bootstrap_servers_then_status_and_stop(shell_env, tmp_path):
    data = tmp_path / "broker"
    try:
        # The README's line, with the data in a folder of this test's own.
        started = sh(
            f'eval "$(codeclm broker start --data-dir {data})" && echo "$CODECLM_KAFKA__BOOTSTRAP_SERVERS"',
            shell_env,
            tmp_path,
            timeout=180,
        )
        assert started.returncode == 0, started.stderr
        bootstrap = EmbeddedBroker(data).bootstrap
        assert started.stdout == f"{bootstrap}\n"
        assert "broker up (pid" in started.stderr  # the progress is on standard error, not lost

        # Standard output is the export line and nothing else, also when it is already running.
        again = sh(f"codeclm broker start --data-dir {data}", shell_env, tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout == f"export CODECLM_KAFKA__BOOTSTRAP_SERVERS={bootstrap}\n"
        assert "already running" in again.stderr

        status = sh(f"codeclm broker status --data-dir {data}", shell_env, tmp_path)
        assert status.returncode == 0 and "running (pid" in status.stdout and bootstrap in status.stdout

        stopped = sh(f"codeclm broker stop --data-dir {data}", shell_env, tmp_path)
        assert (stopped.returncode, stopped.stdout) == (0, "stopped\n")
        status = sh(f"codeclm broker status --data-dir {data}", shell_env, tmp_path)
        assert status.returncode == 3 and "not running" in status.stdout
    finally:
        EmbeddedBroker(data).stop()


def subcommands() -> list[str]:
    return sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_codeclm_help_and_every_subcommands_help(shell_env, tmp_path):
    top = sh("codeclm --help", shell_env, tmp_path)
    assert top.returncode == 0, top.stderr
    script = "; ".join(f'codeclm {name} --help > {name}.out || echo "{name} failed"' for name in subcommands())
    helps = sh(script, shell_env, tmp_path, timeout=300)
    assert helps.stdout == "" and helps.returncode == 0, helps.stdout + helps.stderr
    for name in subcommands():
        assert (tmp_path / f"{name}.out").read_text().startswith("usage:"), name
        assert name in top.stdout
    worker_help = (tmp_path / "worker.out").read_text()
    for flag in ("--config", "--strong-timeout-s", "--target-max-retries", "--judge-max-in-flight", "--rich-metadata"):
        assert flag in worker_help
