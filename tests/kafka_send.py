"""Sends raw bytes to a topic with librdkafka through the streamrec CLI's
C tool: no Python Kafka client is needed (none is pinned)."""
import subprocess

from harness import BUILD


def send_raw(bootstrap, topic, payloads):
    lines = "".join((p.hex() if p else "-") + "\n" for p in payloads)
    subprocess.run([BUILD / "tests" / "kafka_send", bootstrap, topic], input=lines.encode(),
                   check=True, capture_output=True)
