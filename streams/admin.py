"""Kafka client options (security settings passed through) and topic creation.

Topics are created here with aiokafka's admin client, which negotiates protocol versions with
Kafka 4.x; faust's own topic declaration does not work against Kafka 4 (it logs and goes on).
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.settings import KafkaSettings, Settings
from streams.topics import TOPICS


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if "SSL" not in kafka.security_protocol:
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile:
        context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None)
    return context


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client: bootstrap servers and security settings."""
    options: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap_servers, "security_protocol": kafka.security_protocol}
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


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the pipeline's topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(settings.topic(t.name), settings.kafka.partitions, settings.kafka.replication_factor)
            for t in TOPICS
            if settings.topic(t.name) not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            errors = [(name, code, msg) for name, code, msg in response.topic_errors if code not in (0, 36)]
            if errors:
                raise RuntimeError(f"could not create topics: {errors}")
        return [t.name for t in missing]
    finally:
        await admin.close()
