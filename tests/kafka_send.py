"""Sends raw bytes to a topic with librdkafka through the streamrec CLI's
C tool: no Python Kafka client is needed (none is pinned)."""
import subprocess

from harness import BUILD


def send_raw(bootstrap, topic, payloads):
    lines = "".join((p.hex() if p else "-") + "\n" for p in payloads)
    subprocess.run([BUILD / "tests" / "kafka_send", bootstrap, topic], input=lines.encode(),
                   check=True, capture_output=True)


def send_records(bootstrap, topic, schema, keyed_records):
    """keyed_records: (key, record) pairs, each record written with the
    parsed Avro schema (raw framing); a record None sends a tombstone."""
    import fastavro, io
    lines = []
    for key, record in keyed_records:
        if record is None:
            lines.append(f"key={key.encode().hex()} -")
            continue
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, record)
        lines.append(f"key={key.encode().hex()} {buf.getvalue().hex()}")
    subprocess.run([BUILD / "tests" / "kafka_send", bootstrap, topic],
                   input="".join(line + "\n" for line in lines).encode(), check=True,
                   capture_output=True)


def send_item_events(bootstrap, topic, items):
    """items: (item_id, in_stock) or (item_id, in_stock, category) tuples;
    in_stock None sends a tombstone (retired)."""
    import fastavro, json
    from harness import SCHEMAS
    schema = fastavro.parse_schema(json.loads((SCHEMAS / "item_event.avsc").read_text()))
    send_records(bootstrap, topic, schema,
                 [(item_id, None if in_stock is None else
                   {"item_id": item_id, "category": category[0] if category else None,
                    "price": None, "in_stock": in_stock, "ts": 1700000000000})
                  for item_id, in_stock, *category in items])
