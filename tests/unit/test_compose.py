"""docker-compose.yml, deploy/prometheus.yml and the Dockerfile, checked without a Docker engine:
images, listeners, ports, health checks, start order, and that every CODECLM_* variable the
compose file sets is a real setting and that together they make valid Settings."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from streams.kafka.broker import KAFKA_VERSION
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])((?:[^{}]|\$\{[^}]*\})*))?\}")


def interpolate(value: object, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, nested defaults included."""

    def one(match: re.Match) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3) or ""
        if name in env:
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {rest}")
        return interpolate(rest, env)

    text = str(value)
    while VARIABLE.search(text):
        text = VARIABLE.sub(one, text)
    return text


def listeners(value: str) -> dict[str, str]:
    """ "PLAINTEXT://kafka:9092,HOST://localhost:9094" -> {"PLAINTEXT": "kafka:9092", ...}"""
    return dict(item.split("://", 1) for item in value.split(","))


def test_kafka_is_the_official_image_in_kraft_single_node_mode_with_a_health_check():
    kafka = SERVICES["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"  # the version the embedded broker runs
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == f"{node}@kafka:{listeners(env['KAFKA_LISTENERS'])['CONTROLLER'].split(':')[-1]}"
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners(env["KAFKA_LISTENERS"])) <= set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    assert advertised["PLAINTEXT"] == "kafka:9092"  # what the other containers bootstrap from
    # The host listener is published on the same port it advertises.
    host_port = advertised["HOST"].split(":")[-1]
    assert f"{host_port}:{host_port}" in kafka["ports"]
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
    ):
        assert env[key] == 1, key  # one node: internal topics cannot have more replicas
    # Data on the image's own data volume (owned by its user), named so it survives a restart.
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"] and "kafka-data" in COMPOSE["volumes"]
    check = kafka["healthcheck"]
    assert "kafka-broker-api-versions.sh --bootstrap-server localhost:9092" in " ".join(check["test"])
    assert check["retries"] >= 10


def test_topics_are_set_up_once_before_any_worker():
    topics = SERVICES["topics"]
    assert topics["command"] == ["topics"] and topics["restart"] == "no"
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    worker = SERVICES["worker"]
    assert worker["depends_on"]["topics"] == {"condition": "service_completed_successfully"}
    assert worker["depends_on"]["kafka"] == {"condition": "service_healthy"}
    assert topics["build"] == worker["build"] == "."
    assert topics["environment"]["CODECLM_KAFKA__PARTITIONS"] == worker["environment"]["CODECLM_KAFKA__PARTITIONS"]
    assert (ROOT / "streams" / "cli" / "commands" / "topics.py").exists()


def test_the_worker_scales_and_reaches_kafka_and_its_llm_endpoints():
    worker = SERVICES["worker"]
    # `--scale worker=N` fails on a fixed container name or a published host port.
    assert "container_name" not in worker and "ports" not in worker
    env = worker["environment"]
    assert (
        env["CODECLM_KAFKA__BOOTSTRAP_SERVERS"]
        == listeners(SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"])["PLAINTEXT"]
    )
    for role in ("STRONG", "TARGET"):
        assert env[f"CODECLM_{role}__BASE_URL"].startswith(f"${{{role}_URL:?")  # from the environment, required
        assert env[f"CODECLM_{role}__MODEL"].startswith(f"${{{role}_MODEL:?")
    with pytest.raises(KeyError, match="STRONG_URL"):
        interpolate(env["CODECLM_STRONG__BASE_URL"], {})
    assert interpolate(env["CODECLM_STRONG__API_KEY"], {"OPENAI_API_KEY": "k"}) == "k"
    assert interpolate(env["CODECLM_STRONG__API_KEY"], {"STRONG_API_KEY": "s", "OPENAI_API_KEY": "k"}) == "s"


def test_the_worker_endpoint_is_open_to_the_network_only_with_a_token_and_health_checked():
    worker = SERVICES["worker"]
    env = worker["environment"]
    port = str(env["CODECLM_WORKER__HTTP_PORT"])
    assert env["CODECLM_WORKER__HTTP_HOST"] == "0.0.0.0"
    assert env["CODECLM_WORKER__HTTP_TOKEN"].startswith("${METRICS_TOKEN:?")  # refuse to start without one
    assert port in [str(p) for p in worker["expose"]]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(worker["healthcheck"]["test"])
    assert worker["stop_grace_period"]  # time to drain in-flight records on SIGTERM


def test_every_codeclm_variable_is_a_setting_and_the_whole_makes_valid_settings(monkeypatch):
    user_env = {
        "STRONG_URL": "https://api.example/v1",
        "STRONG_MODEL": "big",
        "TARGET_URL": "http://vllm:8000/v1",
        "TARGET_MODEL": "small",
        "METRICS_TOKEN": "t0ken",
    }
    for name in ("topics", "worker"):  # the worker's last: its settings are checked below
        env = SERVICES[name]["environment"]
        for key in env:
            assert key.startswith("CODECLM_"), key
            section, _, field = key.removeprefix("CODECLM_").lower().partition("__")
            assert section in Settings.model_fields, key
            model = Settings.model_fields[section].annotation
            assert field in model.model_fields, key  # a typo here would be silently ignored
        for key in list(os.environ):
            if key.startswith("CODECLM_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, interpolate(value, user_env))
        settings = Settings()
        assert settings.kafka.bootstrap_servers == "kafka:9092" and settings.kafka.partitions == 4
    assert settings.worker.http_token.get_secret_value() == "t0ken"
    assert settings.strong.base_url == "https://api.example/v1" and settings.target.model == "small"


def test_prometheus_is_optional_and_scrapes_every_worker_replica_with_the_token():
    prometheus = SERVICES["prometheus"]
    assert prometheus["profiles"] == ["metrics"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert prometheus["depends_on"] == {"worker": {"condition": "service_healthy"}}
    mount = next(v for v in prometheus["volumes"] if "prometheus.yml" in v)
    host_path, container_path = mount.split(":")[:2]
    assert f"--config.file={container_path}" in prometheus["command"]
    config = yaml.safe_load((ROOT / host_path).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and str(sd["port"]) == str(
        SERVICES["worker"]["environment"]["CODECLM_WORKER__HTTP_PORT"]
    )
    # The bearer token reaches Prometheus as a compose secret made from the same variable.
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    assert prometheus["secrets"] == ["metrics_token"]
    assert COMPOSE["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    assert "METRICS_TOKEN" in SERVICES["worker"]["environment"]["CODECLM_WORKER__HTTP_TOKEN"]


def test_the_image_installs_every_package_and_runs_the_cli():
    dockerfile = (ROOT / "Dockerfile").read_text()
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.removesuffix("*") for p in patterns]
    assert packages == [p for p in packages if (ROOT / p / "__init__.py").is_file()]
    for package in packages:
        assert re.search(rf"^COPY {package} {package}$", dockerfile, re.M), package
    assert 'ENTRYPOINT ["codeclm"]' in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)  # not root
    assert "EXPOSE " + str(SERVICES["worker"]["environment"]["CODECLM_WORKER__HTTP_PORT"]) in dockerfile
