"""Running `codeclm` commands as a user does, against a test's settings."""

from __future__ import annotations

import os
import subprocess
import sys

from streams.settings import Settings, settings_env
from tests.paths import ROOT


def codeclm(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`codeclm ARGS` in a child process with `settings` in its environment; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**os.environ, **settings_env(settings)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
