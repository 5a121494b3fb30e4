"""Test harness: locates the ASan builds and runs one real Kafka broker per session.

The broker is a real single-node KRaft Apache Kafka on a free loopback port,
started by tools/kafka-broker with this process as its owner (so it dies with
a crashed run) and stopped when the session ends, pass or fail. The schema
registry (Apicurio Registry's Confluent-compatible API, tools/schema-registry)
is started the same way, once per session, by the first test that needs it.
"""
import os
import subprocess

import pytest

from harness import BROKER, SCHEMA_REGISTRY
from registry_auth import AuthGate


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



class SchemaRegistry:
    def __init__(self, url, auth_url):
        self.url = url            # base URL of the Confluent-compatible API
        self.auth_url = auth_url  # the same registry behind basic auth (registry_auth.py)


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("registry")
    started = subprocess.run(
        [str(SCHEMA_REGISTRY), "start", "--dir", str(data_dir), "--owner-pid", str(os.getpid())],
        capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.fail("schema registry did not start:\n" + started.stderr[-4000:])
    url = started.stdout.strip()
    gate = AuthGate(url)
    try:
        yield SchemaRegistry(url, gate.url)
    finally:
        gate.close()
        subprocess.run([str(SCHEMA_REGISTRY), "stop", str(data_dir)], timeout=120)
