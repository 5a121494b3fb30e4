"""The development tooling creates topics the way the README says they are
set up: `recs` and `items` compacted (latest per key wins), the others with
the broker's delete policy. Checked on the real broker with an independent
client (confluent-kafka's AdminClient)."""
import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

pytestmark = pytest.mark.kafka


def cleanup_policy(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    return configs["cleanup.policy"].value


def test_topics_can_be_created_compacted(kafka_broker):
    stamp = int(time.time() * 1000)
    compacted, plain = f"tooling-recs-{stamp}", f"tooling-events-{stamp}"
    kafka_broker.create_topics(f"{compacted}:2:compact", f"{plain}:2")
    assert cleanup_policy(kafka_broker.bootstrap, compacted) == "compact"
    assert cleanup_policy(kafka_broker.bootstrap, plain) == "delete"


def test_a_bad_topic_spec_is_refused(kafka_broker):
    import subprocess
    from conftest import BROKER
    result = subprocess.run([str(BROKER), "topics", str(kafka_broker.data_dir), "x:2:squash"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "bad topic 'x:2:squash'" in result.stderr


def test_tail_until_end_stops_at_the_end_of_every_partition(kafka_broker):
    """`streamrec tail --until-end` prints what the topic holds and exits 0,
    also when some partitions are empty (every event keyed to one user lands
    in one of the four); a topic with no end in sight within --timeout-ms
    exits 1 and says how many partitions ended."""
    import subprocess
    from harness import BUILD
    STREAMREC = BUILD / "streamrec"
    stamp = int(time.time() * 1000)
    topic = f"tooling-tail-{stamp}"
    kafka_broker.create_topics(f"{topic}:4")
    subprocess.run([STREAMREC, "produce", "--brokers", kafka_broker.bootstrap, "--topic", topic,
                    "--count", "37", "--users", "1"], check=True, capture_output=True, timeout=120)
    out = subprocess.run([STREAMREC, "tail", "--brokers", kafka_broker.bootstrap, "--topic", topic,
                          "--from-beginning", "--until-end", "--timeout-ms", "120000"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert len([l for l in out.stdout.splitlines() if "user=" in l]) == 37, out.stdout
    # from the end, nothing is printed and the end is reached at once
    out = subprocess.run([STREAMREC, "tail", "--brokers", kafka_broker.bootstrap, "--topic", topic,
                          "--until-end", "--timeout-ms", "120000"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and out.stdout == "", out.stderr
    # a deadline too short to even join the group: the partitions never ended
    out = subprocess.run([STREAMREC, "tail", "--brokers", kafka_broker.bootstrap, "--topic", topic,
                          "--from-beginning", "--until-end", "--timeout-ms", "1"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 1 and "--until-end: 0 of 4 partitions of " + topic in out.stderr, \
        out.stderr


def test_produce_file_sends_the_files_events_as_they_are(kafka_broker, tmp_path):
    """`streamrec produce --file` sends each event of the file with its user,
    item, type and time, an id naming the file and the event's place (the
    same ids when the file is produced again), and no invented quantity or
    price (it added random ones to carts and purchases). Read back with an
    independent client (confluent-kafka, fastavro)."""
    import io
    import json
    import subprocess

    import fastavro
    from confluent_kafka import Consumer, TopicPartition
    from harness import BUILD, ROOT
    stamp = int(time.time() * 1000)
    topic = f"tooling-file-{stamp}"
    kafka_broker.create_topics(f"{topic}:1")
    events = tmp_path / "shop.csv"
    events.write_text("user_id,item_id,timestamp,event_type\n"
                      "u1,i1,1700000000,view\n"
                      "u1,i2,1700000001,addtocart\n"
                      "u2,i2,1700000002,transaction\n")
    for _ in range(2):
        subprocess.run([BUILD / "streamrec", "produce", "--brokers", kafka_broker.bootstrap,
                        "--topic", topic, "--file", events, "--rate", "0"], check=True,
                       capture_output=True, timeout=120)
    schema = fastavro.parse_schema(json.loads((ROOT / "schemas" / "user_event.avsc").read_text()))
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": topic,
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    records = []
    deadline = time.time() + 60
    while len(records) < 6 and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        r = fastavro.schemaless_reader(io.BytesIO(msg.value()), schema)
        records.append((r["event_id"], r["user_id"], r["item_id"], r["type"],
                        int(r["ts"].timestamp() * 1000),  # a timestamp-millis
                        r["quantity"], r["price"], msg.key().decode()))
    consumer.close()
    expected = [("shop.csv:0", "u1", "i1", "VIEW", 1700000000000, None, None, "u1"),
                ("shop.csv:1", "u1", "i2", "ADD_TO_CART", 1700000001000, None, None, "u1"),
                ("shop.csv:2", "u2", "i2", "PURCHASE", 1700000002000, None, None, "u2")]
    assert records == expected * 2, records


def test_produce_file_without_events_is_an_error(kafka_broker, tmp_path):
    """A file with a header and no events (or none that pass --min-rating)
    is an error naming the file. It was taken as "--count 0: until Ctrl-C"
    and read past the end of the empty stream."""
    import subprocess

    from harness import BUILD
    events = tmp_path / "empty.csv"
    events.write_text("user_id,item_id,timestamp,event_type\n")
    out = subprocess.run([BUILD / "streamrec", "produce", "--brokers", kafka_broker.bootstrap,
                          "--topic", f"tooling-empty-{int(time.time() * 1000)}", "--file",
                          events, "--rate", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert f"{events}: no events to send" in out.stderr
