"""Test harness: locates the ASan builds and runs one real Kafka broker per session.

The broker is a real single-node KRaft Apache Kafka on a free loopback port,
started by tools/kafka-broker with this process as its owner (so it dies with
a crashed run) and stopped when the session ends, pass or fail.
"""
import os
import subprocess

import pytest

from harness import BROKER


class Broker:
    def __init__(self, data_dir, bootstrap):
        self.data_dir = data_dir
        self.bootstrap = bootstrap

    def create_topics(self, *specs):
        subprocess.run([str(BROKER), "topics", str(self.data_dir), *specs],
                       check=True, timeout=120)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("kafka")
    started = subprocess.run(
        [str(BROKER), "start", "--dir", str(data_dir), "--owner-pid", str(os.getpid()),
         "--partitions", "3"],
        capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.fail("Kafka broker did not start:\n" + started.stderr[-4000:])
    try:
        yield Broker(data_dir, started.stdout.strip())
    finally:
        subprocess.run([str(BROKER), "stop", str(data_dir)], timeout=120)

