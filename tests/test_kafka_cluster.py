"""A three-node KRaft cluster on loopback (tools/kafka-broker start --nodes 3)
and streamrecd on it: the cluster forms with replicated topics, and one
daemon consuming a 12-partition topic carries on, learning every event
exactly once and publishing lists, while one node is killed under load and
after it has come back. Checked with an independent client (confluent-kafka)
and the daemon's stored offsets.
"""
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from harness import BUILD
from test_daemon_e2e import Daemon, settled

STREAMREC = BUILD / "streamrec"
pytestmark = pytest.mark.kafka


def admin(cluster):
    """An AdminClient of the cluster; keep it while a request of it is pending
    (its futures fail with _DESTROY once it is garbage)."""
    return AdminClient({"bootstrap.servers": cluster.bootstrap})


def topic_config(cluster, topic, name):
    client, resource = admin(cluster), ConfigResource(ConfigResource.Type.TOPIC, topic)
    return client.describe_configs([resource])[resource].result(timeout=30)[name].value


def group_coordinator(cluster, group):
    """The node id of the group's coordinator."""
    client = admin(cluster)
    return client.describe_consumer_groups([group])[group].result(timeout=30).coordinator.id


def partitions(cluster, topic):
    """{partition: PartitionMetadata} of topic, as the cluster's metadata has it now."""
    return admin(cluster).list_topics(topic, timeout=30).topics[topic].partitions


def end_offsets(cluster, topic, count):
    """The high watermark of each of the topic's count partitions."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "end-offsets"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(count)]
    finally:
        consumer.close()


def committed_offsets(cluster, group, topic, count):
    """The offsets group has committed to Kafka for the topic's count partitions."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    try:
        done = consumer.committed([TopicPartition(topic, p) for p in range(count)], timeout=30)
        return [tp.offset for tp in done]
    finally:
        consumer.close()


def stored_offsets(state_dir, tmp_path):
    """{(topic, partition): offset} the daemon's state holds, read from a
    `streamrec export` (offset/<topic>/<partition> keys of the meta family,
    8-byte big-endian values: the last event the state contains)."""
    path = tmp_path / "state.export"
    subprocess.run([STREAMREC, "export", "--state", state_dir, "--out", path], check=True,
                   capture_output=True)
    data = path.read_bytes()
    magic = b"streamrec-export 2\n"
    assert data.startswith(magic)
    at, offsets = len(magic), {}
    while data[at] != 0xff:  # the end record
        family, key_len = struct.unpack_from(">BI", data, at)
        key = data[at + 5:at + 5 + key_len]
        at += 5 + key_len
        (value_len,) = struct.unpack_from(">I", data, at)
        value = data[at + 4:at + 4 + value_len]
        at += 4 + value_len
        if family == 0 and key.startswith(b"offset/"):
            topic, partition = key[len(b"offset/"):].decode().rsplit("/", 1)
            offsets[(topic, int(partition))] = struct.unpack(">q", value)[0]
    return offsets


def test_the_cluster_forms_with_replicated_topics(kafka_cluster):
    """Three brokers in the metadata, each node of the bootstrap list one of
    them; a 12-partition events topic and a compacted topic get three
    replicas, all in sync, leaders spread over the nodes, and need two of
    them in sync for a write (min.insync.replicas=2)."""
    metadata = admin(kafka_cluster).list_topics(timeout=30)
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert sorted(f"{b.host}:{b.port}" for b in metadata.brokers.values()) == \
        sorted(kafka_cluster.bootstrap.split(","))
    assert kafka_cluster.running() == {1: True, 2: True, 3: True}

    stamp = int(time.time() * 1000)
    events, recs = f"cluster-events-{stamp}", f"cluster-recs-{stamp}"
    kafka_cluster.create_topics(f"{events}:12", f"{recs}:12:compact")
    for topic in (events, recs):
        parts = partitions(kafka_cluster, topic)
        assert sorted(parts) == list(range(12))
        assert all(sorted(p.replicas) == [1, 2, 3] and sorted(p.isrs) == [1, 2, 3]
                   for p in parts.values()), parts
        assert {p.leader for p in parts.values()} == {1, 2, 3}
        assert topic_config(kafka_cluster, topic, "min.insync.replicas") == "2"
    assert topic_config(kafka_cluster, recs, "cleanup.policy") == "compact"
    assert topic_config(kafka_cluster, events, "cleanup.policy") == "delete"
    internal = partitions(kafka_cluster, "__consumer_offsets")
    assert all(sorted(p.replicas) == [1, 2, 3] for p in internal.values())


def test_the_node_verbs_refuse_what_they_cannot_do(kafka_cluster):
    """kill-node and start-node name their node by number within the
    cluster; a running node is not started twice; status reports each node."""
    from harness import BROKER

    def broker(*args):
        return subprocess.run([BROKER, *map(str, args)], capture_output=True, text=True,
                              timeout=60)

    out = broker("kill-node", kafka_cluster.data_dir, 4)
    assert out.returncode == 2 and "node must be a number from 1 to 3, not '4'" in out.stderr
    out = broker("start-node", kafka_cluster.bootstrap, 2)
    assert out.returncode == 1 and "node 2 is already running" in out.stderr
    out = broker("status", kafka_cluster.bootstrap.split(",")[2])
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[0] == kafka_cluster.bootstrap
    assert [l.split()[:4] for l in lines[1:]] == [
        ["node", str(n), address, "running"]
        for n, address in enumerate(kafka_cluster.bootstrap.split(","), 1)]


EVENTS = 30000       # produced under load, at RATE events/s: 12 s of it
RATE = 2500
LATE_EVENTS = 2000   # produced after the killed node has rejoined


def test_one_daemon_carries_on_while_a_node_is_killed_under_load(kafka_cluster, tmp_path):
    """One streamrecd consumes a 12-partition RF-3 topic while an idempotent
    (acks=all) producer writes to it. The node that coordinates the daemon's
    group (and leads a third of the partitions) is SIGKILLed mid-stream: the
    daemon keeps learning and publishing with that node down, the producer
    loses nothing; the node starts again and rejoins every partition's ISR.
    In the end each event was learned exactly once: the daemon's learned count
    equals the events in the topic, its stored offset is the high watermark
    minus one on every partition (and its group commit the high watermark),
    and every list it counted as published is in the output topic."""
    daemon = Daemon(kafka_cluster, tmp_path, "cluster", partitions=12)
    group = "cluster"
    producer_log = open(tmp_path / "produce.log", "w")
    try:
        daemon.start()
        producer = subprocess.Popen(
            [STREAMREC, "produce", "--brokers", kafka_cluster.bootstrap, "--topic",
             daemon.events, "--count", str(EVENTS), "--rate", str(RATE), "--users", "2000",
             "--items", "500"], stdout=producer_log, stderr=producer_log)
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 3000, 60), \
            daemon.logtext()

        victim = group_coordinator(kafka_cluster, group)
        written = sum(end_offsets(kafka_cluster, daemon.events, 12))
        kafka_cluster.kill_node(victim)
        killed_at = time.time()
        listed = daemon.metric("streamrec_recommendations_total")
        assert written + 5000 < EVENTS, "the load was over before the node was killed"

        # The group carries on with the node down: it learns events written
        # after the kill (which needed the other nodes to take over: the killed
        # one was in every partition's ISR) and publishes more lists.
        assert daemon.wait_for(
            lambda: (daemon.metric("streamrec_updates_total") >= written + 5000
                     and daemon.metric("streamrec_recommendations_total") >= listed + 2000),
            timeout=90), daemon.logtext()
        carried_on_after = time.time() - killed_at
        assert kafka_cluster.running()[victim] is False
        assert daemon.process.poll() is None and daemon.ready(), daemon.logtext()
        assert producer.wait(timeout=180) == 0, (tmp_path / "produce.log").read_text()
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= EVENTS, 120)
        assert settled(daemon) == EVENTS, daemon.logtext()

        # the node comes back on its data and catches up: in sync on every partition again
        kafka_cluster.start_node(victim)
        assert kafka_cluster.running() == {1: True, 2: True, 3: True}
        deadline = time.time() + 120
        while any(sorted(p.isrs) != [1, 2, 3]
                  for p in partitions(kafka_cluster, daemon.events).values()):
            assert time.time() < deadline, partitions(kafka_cluster, daemon.events)
            time.sleep(0.5)
        daemon.produce(LATE_EVENTS, seed=2, users=2000, items=500)
        assert daemon.wait_for(
            lambda: daemon.metric("streamrec_updates_total") >= EVENTS + LATE_EVENTS, 120)
        assert settled(daemon) == EVENTS + LATE_EVENTS, daemon.logtext()
        published = daemon.metric("streamrec_recommendations_total")
        assert daemon.stop() == 0, daemon.logtext()

        ends = end_offsets(kafka_cluster, daemon.events, 12)
        assert sum(ends) == EVENTS + LATE_EVENTS  # the producer wrote each event once
        stored = stored_offsets(daemon.dir / "state", tmp_path)
        assert [stored.get((daemon.events, p)) for p in range(12)] == [e - 1 for e in ends]
        assert committed_offsets(kafka_cluster, group, daemon.events, 12) == ends
        assert sum(end_offsets(kafka_cluster, daemon.recs, 3)) == published
        assert "delivery failed" not in (daemon.dir / "streamrecd.log").read_text()
        print(f"node {victim} killed; the daemon carried on within {carried_on_after:.1f} s")
    finally:
        producer_log.close()
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
