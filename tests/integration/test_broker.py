"""The embedded broker: start, stop, restart with its data, and clear errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka.broker import BrokerError, EmbeddedBroker, broker_answers

pytestmark = pytest.mark.kafka


async def produce(bootstrap: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("persisted", value)
    finally:
        await producer.stop()


async def consume_all(bootstrap: str) -> list[bytes]:
    consumer = AIOKafkaConsumer("persisted", bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        return [m.value for messages in batch.values() for m in messages]
    finally:
        await consumer.stop()


def test_cli_start_status_stop_and_data_survives_a_restart(tmp_path):
    data = tmp_path / "broker"
    cli = [sys.executable, "-m", "streams.cli", "broker"]
    started = subprocess.run([*cli, "start", "--data-dir", str(data)], capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    broker = EmbeddedBroker(data)
    try:
        bootstrap = broker.bootstrap
        assert f"CODECLM_KAFKA__BOOTSTRAP_SERVERS={bootstrap}" in started.stdout
        status = subprocess.run([*cli, "status", "--data-dir", str(data)], capture_output=True, text=True)
        assert status.returncode == 0 and "running" in status.stdout
        asyncio.run(produce(bootstrap, b"kept"))

        assert (
            subprocess.run([*cli, "stop", "--data-dir", str(data)], capture_output=True, text=True).stdout.strip()
            == "stopped"
        )
        assert not asyncio.run(broker_answers(bootstrap))
        status = subprocess.run([*cli, "status", "--data-dir", str(data)], capture_output=True, text=True)
        assert status.returncode == 3 and "not running" in status.stdout

        state = broker.start()
        assert state.bootstrap == bootstrap  # same ports: the controller's is in the metadata
        assert asyncio.run(consume_all(bootstrap)) == [b"kept"]

        broker.start(fresh=True)
        assert asyncio.run(consume_all(broker.bootstrap)) == []
    finally:
        broker.stop()


def test_missing_java_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match=r"java.*Install a Java 17"):
        EmbeddedBroker(tmp_path / "b").start()


def test_missing_maven_is_a_clear_error(tmp_path, monkeypatch):
    import shutil

    java = shutil.which("java")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "java").symlink_to(java)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("CODECLM_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(BrokerError, match=r"mvn.*Install Apache Maven"):
        EmbeddedBroker(tmp_path / "b").start()
