"""Shared fixtures. The Kafka broker is the project's own embedded Apache Kafka (streams.kafka.broker),
started once per test session; if it cannot start, every test that needs it fails (never skips)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from streams.kafka.broker import EmbeddedBroker, free_port
from streams.settings import Settings, overlay, settings_env

ROOT = Path(__file__).resolve().parent.parent
_BROKER: dict[str, object] = {}


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedBroker:
    """A real single-node KRaft broker for the whole session."""
    instance = EmbeddedBroker(tmp_path_factory.mktemp("kafka"), partitions=4)
    state = instance.start(fresh=True, timeout=180)
    _BROKER.update(pid=state.pid, bootstrap=state.bootstrap, data_dir=str(instance.data_dir))
    yield instance
    instance.stop()


@pytest.fixture
def settings(broker: EmbeddedBroker) -> Settings:
    """Settings for one test: its own topic prefix and consumer groups on the session broker."""
    run = uuid.uuid4().hex[:8]
    return overlay(
        Settings(),
        {
            "kafka": {"bootstrap_servers": broker.bootstrap, "topic_prefix": f"t{run}.", "partitions": 4},
            "worker": {
                "app_id": f"codeclm-t{run}",
                "data_dir": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"codeclm-t{run}"),
            },
        },
    )


class Process:
    """A child process of a test, stopped (SIGTERM, then SIGKILL) at teardown; its output in a file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115
        self.popen = subprocess.Popen(
            cmd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            start_new_session=True,
        )

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def processes(tmp_path: Path):
    """Start child processes (`spawn(name, cmd, env)`) that are stopped when the test ends."""
    started: list[Process] = []

    def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> Process:
        process = Process(cmd, {**os.environ, **(env or {})}, tmp_path / f"{name}.log")
        started.append(process)
        return process

    yield spawn
    for process in reversed(started):
        process.stop()


@pytest.fixture
def llm_double(processes) -> str:
    """The LLM double (a test stand-in for an OpenAI-compatible server), in its own process."""
    port = free_port()
    processes("llm-double", [sys.executable, "-m", "llm.double", "--port", str(port)])
    from streams.demo import wait_for_http

    url = f"http://127.0.0.1:{port}/v1"
    wait_for_http(url + "/models", 30)
    return url


@pytest.fixture
def start_worker(processes):
    def start(settings: Settings, name: str = "worker") -> Process:
        env = {**settings_env(settings), "PYTHONUNBUFFERED": "1"}
        return processes(name, [sys.executable, "-m", "streams.cli", "worker"], env)

    return start


def pytest_terminal_summary(terminalreporter) -> None:
    if _BROKER:
        terminalreporter.write_line(
            f"integration tests ran against the embedded Apache Kafka broker the project started: "
            f"pid {_BROKER['pid']} on {_BROKER['bootstrap']} (data in {_BROKER['data_dir']})"
        )
