"""streamrec and the schema registry, end to end, against the real broker and
the real registry (Apicurio's Confluent-compatible API) the harness starts.

- `streamrec produce --registry` registers UserEvent under "<topic>-value" and
  writes Confluent framing with that id; `streamrec tail --registry` reads it
  back by fetching the schema by id.
- An independent client, confluent-kafka's AvroDeserializer (its own registry
  client), reads what streamrec wrote; and streamrec reads what confluent-
  kafka's AvroSerializer wrote with an evolved writer schema, resolved against
  ours through the registry.
- An unreachable registry makes tail wait (the record is retried, never
  reported invalid).
"""
import itertools
import json
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from harness import BUILD, SCHEMAS

STREAMREC = BUILD / "streamrec"
pytestmark = pytest.mark.kafka
_topic_numbers = itertools.count()


def new_topic(broker, what):
    name = f"registry-{what}-{int(time.time())}-{next(_topic_numbers)}"
    broker.create_topics(f"{name}:1")
    return name


def produce(broker, registry_url, topic, count):
    result = subprocess.run(
        [STREAMREC, "produce", "--brokers", broker.bootstrap, "--topic", topic,
         "--registry", registry_url, "--count", str(count), "--rate", "0", "--seed", "7"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"schema registered under {topic}-value as id" in result.stderr, result.stderr
    return result


def tail(broker, registry_url, topic, count, timeout_ms=30000):
    return subprocess.run(
        [STREAMREC, "tail", "--brokers", broker.bootstrap, "--topic", topic, "--registry",
         registry_url, "--from-beginning", "--count", str(count), "--timeout-ms",
         str(timeout_ms)],
        capture_output=True, text=True, timeout=120)


def consume_all(broker, topic, count, deadline_s=60):
    consumer = Consumer({"bootstrap.servers": broker.bootstrap,
                         "group.id": f"ck-{topic}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages, deadline = [], time.monotonic() + deadline_s
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            messages.append(msg)
    finally:
        consumer.close()
    return messages


def test_streamrec_round_trip(kafka_broker, schema_registry):
    topic = new_topic(kafka_broker, "roundtrip")
    produce(kafka_broker, schema_registry.url, topic, 40)
    result = tail(kafka_broker, schema_registry.url, topic, 40)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 40, result.stdout + result.stderr
    assert not [line for line in lines if "INVALID" in line], result.stdout
    assert all(" user=user-" in line and " item=item-" in line for line in lines)
    assert "40 records read" in result.stderr and "0 invalid" in result.stderr


def test_confluent_kafka_reads_what_streamrec_wrote(kafka_broker, schema_registry):
    topic = new_topic(kafka_broker, "to-ck")
    produce(kafka_broker, schema_registry.url, topic, 25)
    # streamrec's own view of the same records, to compare field by field
    ours = tail(kafka_broker, schema_registry.url, topic, 25).stdout.splitlines()

    client = SchemaRegistryClient({"url": schema_registry.url})
    deserializer = AvroDeserializer(client)  # the writer schema, fetched by id
    messages = consume_all(kafka_broker, topic, 25)
    assert len(messages) == 25
    for msg, line in zip(messages, ours):
        assert msg.value()[0] == 0  # Confluent framing
        event = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE))
        assert msg.key().decode() == event["user_id"]
        assert f"user={event['user_id']} item={event['item_id']}" in line
        assert event["type"] in line
        ts = event["ts"]
        ts_ms = ts if isinstance(ts, int) else round(ts.timestamp() * 1000)
        assert f"ts={ts_ms}" in line


# A later writer schema than ours: a field we do not know, in the middle, and an
# enum symbol we do not know, at the front (so indexes differ from ours).
def evolved_schema():
    schema = json.loads((SCHEMAS / "user_event.avsc").read_text())
    schema["fields"].insert(1, {"name": "channel", "type": "string", "default": "web"})
    for field in schema["fields"]:
        if field["name"] == "type":
            field["type"]["symbols"].insert(0, "RETURN")
    return json.dumps(schema)


def test_streamrec_reads_what_confluent_kafka_wrote(kafka_broker, schema_registry):
    topic = new_topic(kafka_broker, "from-ck")
    client = SchemaRegistryClient({"url": schema_registry.url})
    serializer = AvroSerializer(client, evolved_schema(), conf={"auto.register.schemas": True})
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    sent = []
    for i, kind in enumerate(["VIEW", "CLICK", "PURCHASE", "FAVORITE", "ADD_TO_CART"]):
        event = {"event_id": f"ck-{i}", "channel": "app", "user_id": f"ck-user-{i}",
                 "item_id": f"ck-item-{i}", "type": kind, "ts": 1700000000000 + i,
                 "session_id": "s-1" if i % 2 else None,
                 "quantity": 2 if kind == "PURCHASE" else None,
                 "price": 9.5 if kind == "PURCHASE" else None}
        value = serializer(event, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=event["user_id"].encode(), value=value)
        sent.append(event)
    assert producer.flush(30) == 0

    result = tail(kafka_broker, schema_registry.url, topic, len(sent))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(sent), result.stdout + result.stderr
    for event, line in zip(sent, lines):
        assert "INVALID" not in line, line
        assert f" {event['type']} " in f" {line} "
        assert f"user={event['user_id']} item={event['item_id']} ts={event['ts']}" in line
        if event["quantity"]:
            assert "qty=2 price=9.50" in line
        if event["session_id"]:
            assert "session=s-1" in line


def test_unreachable_registry_makes_tail_wait(kafka_broker, schema_registry):
    topic = new_topic(kafka_broker, "unreachable")
    produce(kafka_broker, schema_registry.url, topic, 3)
    # nothing listens on port 1: every fetch fails; the record waits, it is not invalid
    result = tail(kafka_broker, "http://127.0.0.1:1/apis/ccompat/v7", topic, 3,
                  timeout_ms=4000)
    assert result.returncode == 0, result.stderr
    assert "INVALID" not in result.stdout, result.stdout
    assert " waits: schema id " in result.stderr, result.stderr
    assert "unreachable" in result.stderr
    assert "0 records read" in result.stderr or "0 invalid" in result.stderr


def test_tool_authenticates(kafka_broker, schema_registry):
    topic = new_topic(kafka_broker, "auth")
    refused = subprocess.run(
        [STREAMREC, "produce", "--brokers", kafka_broker.bootstrap, "--topic", topic,
         "--registry", schema_registry.auth_url, "--count", "1"],
        capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "authentication failed (HTTP 401" in refused.stderr, refused.stderr
    accepted = subprocess.run(
        [STREAMREC, "produce", "--brokers", kafka_broker.bootstrap, "--topic", topic,
         "--registry", schema_registry.auth_url, "--count", "2", "--rate", "0"],
        capture_output=True, text=True, timeout=60,
        env={"STREAMREC_REGISTRY_AUTH": "streamrec:s3cret", "PATH": "/usr/bin:/bin"})
    assert accepted.returncode == 0, accepted.stderr
    result = subprocess.run(
        [STREAMREC, "tail", "--brokers", kafka_broker.bootstrap, "--topic", topic,
         "--registry", schema_registry.auth_url, "--registry-auth", "streamrec:s3cret",
         "--from-beginning", "--count", "2", "--timeout-ms", "30000"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2, result.stderr


@pytest.mark.parametrize("name", ["user_event", "recommendation"])
def test_registry_takes_the_new_schemas_as_full_compatible_evolutions(schema_registry, name):
    """Under the registry's FULL compatibility (new readers read old data and
    old readers new data), version 1 (schemas/history) then the current schema
    register under one subject; a field added without a default, or one
    removed that version 1 requires, is refused."""
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    client = SchemaRegistryClient({"url": schema_registry.url})
    subject = f"evolution-{name}-{int(time.time())}-{next(_topic_numbers)}"
    v1 = (SCHEMAS / "history" / f"{name}.v1.avsc").read_text()
    current = (SCHEMAS / f"{name}.avsc").read_text()
    client.set_compatibility(subject_name=subject, level="FULL")
    first = client.register_schema(subject, Schema(v1, "AVRO"))
    assert client.test_compatibility(subject, Schema(current, "AVRO"))
    second = client.register_schema(subject, Schema(current, "AVRO"))
    assert second != first
    # the control: the registry does enforce the rule
    broken = json.loads(current)
    broken["fields"].append({"name": "no_default", "type": "string"})
    assert not client.test_compatibility(subject, Schema(json.dumps(broken), "AVRO"))
    with pytest.raises(SchemaRegistryError):
        client.register_schema(subject, Schema(json.dumps(broken), "AVRO"))
    # ... in both directions: old readers could not read data without a field they require
    shrunk = json.loads(current)
    shrunk["fields"] = shrunk["fields"][1:]
    assert not client.test_compatibility(subject, Schema(json.dumps(shrunk), "AVRO"))

