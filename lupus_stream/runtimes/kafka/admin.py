"""Create the topics described in `topics/`, idempotently."""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from lupus_stream.contracts.topics import TopicSpec
from lupus_stream.settings import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka connection options (bootstrap, SASL, SSL) from the settings."""
    import ssl

    kafka = settings.kafka
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_cafile)
        if kafka.ssl_certfile:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
        options["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password,
        )
    return options


async def create_topics(settings: Settings, specs: dict[str, TopicSpec]) -> dict[str, str]:
    """Create every topic that does not exist yet; returns topic -> 'created' | 'exists'."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        result: dict[str, str] = {}
        for spec in specs.values():
            name = settings.topic(spec.name)
            if name in existing:
                result[name] = "exists"
                continue
            partitions = spec.partitions
            if settings.kafka.partitions and spec.name != "lupus.deadletter":
                partitions = settings.kafka.partitions
            topic = NewTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=settings.kafka.replication_factor,
                topic_configs=spec.kafka_config(),
            )
            try:
                await admin.create_topics([topic])
                result[name] = "created"
            except TopicAlreadyExistsError:
                result[name] = "exists"
        return result
    finally:
        await admin.close()
