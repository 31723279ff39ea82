"""Kafka client options (security settings passed through) and topic creation.

Topics are created here with aiokafka's admin client, which negotiates protocol versions with
Kafka 4.x; faust's own topic declaration does not work against Kafka 4 (it logs and goes on).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import TOPICS
from streams.settings import KafkaSettings, Settings

log = logging.getLogger("codeclm.admin")


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if "SSL" not in kafka.security_protocol:
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile:
        context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None)
    return context


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client: bootstrap servers and security settings."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return options


def faust_credentials(kafka: KafkaSettings) -> Any:
    """The same security settings in faust's terms (None for PLAINTEXT)."""
    context = ssl_context(kafka)
    if kafka.sasl_mechanism:
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


async def topic_partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Partition count of each topic whose partitions all have a leader (others are left out)."""
    ready = {}
    for topic in await admin.describe_topics(topics):
        parts = topic["partitions"]
        if topic["error_code"] == 0 and parts and all(p["leader"] >= 0 for p in parts):
            ready[topic["topic"]] = len(parts)
    return ready


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the pipeline's topics that do not exist yet and wait until every partition has a
    leader (right after creation, produce requests would fail with NotLeaderForPartition).
    Returns the names created."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        created = await _create_missing(admin, settings)
        names = [settings.topic(t.name) for t in TOPICS]
        deadline = asyncio.get_running_loop().time() + timeout
        while len(counts := await topic_partitions(admin, names)) < len(names):
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topics {names} have no leader after {timeout:.0f}s")
            await asyncio.sleep(0.1)
        for t in TOPICS:
            if t.partitions is not None and counts[settings.topic(t.name)] != t.partitions:
                log.warning(
                    "topic %s has %d partitions where the pipeline expects %d (created by hand or by an older version?)",
                    settings.topic(t.name),
                    counts[settings.topic(t.name)],
                    t.partitions,
                )
        return created
    finally:
        await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, settings: Settings) -> list[str]:
    existing = set(await admin.list_topics())
    missing = [
        NewTopic(settings.topic(t.name), t.partitions or settings.kafka.partitions, settings.kafka.replication_factor)
        for t in TOPICS
        if settings.topic(t.name) not in existing
    ]
    if missing:
        response = await admin.create_topics(missing)
        # 36 = TOPIC_ALREADY_EXISTS: another worker created it first.
        errors = [(name, code, msg) for name, code, msg in response.topic_errors if code not in (0, 36)]
        if errors:
            raise RuntimeError(f"could not create topics: {errors}")
    return [t.name for t in missing]
