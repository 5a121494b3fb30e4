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
