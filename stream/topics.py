"""The worker's Kafka topics, created at start if they do not exist yet."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .settings import StreamSettings

__all__ = ["ensure_topics", "worker_topics"]


def worker_topics(settings: StreamSettings) -> dict[str, int]:
    """Every topic the worker reads or writes, with its partition count."""
    s = settings
    names = (s.kafka_topic, s.windows_topic, s.alerts_topic, s.dead_letter_topic, s.undeliverable_topic)
    return dict.fromkeys(names, s.topic_partitions)


async def ensure_topics(bootstrap: str, topics: dict[str, int], replication_factor: int = 1) -> None:
    """Create those of ``topics`` (name -> partitions) that ``bootstrap`` does not have yet, each
    with ``replication_factor`` replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, replication_factor)
                   for name, partitions in topics.items() if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:  # another worker made them meanwhile
                pass
    finally:
        await admin.close()
