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
