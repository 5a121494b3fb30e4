"""Test harness: locates the ASan builds and runs one real Kafka broker per session.

The broker is a real single-node KRaft Apache Kafka on a free loopback port,
started by tools/kafka-broker with this process as its owner (so it dies with
a crashed run) and stopped when the session ends, pass or fail. The schema
registry (Apicurio Registry's Confluent-compatible API, tools/schema-registry)
is started the same way, once per session, by the first test that needs it.
A three-node KRaft cluster (tools/kafka-broker start --nodes 3) is started
the same way, once per test module that asks for `kafka_cluster`.
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



class Cluster(Broker):
    """A three-node cluster: bootstrap is the list of all three nodes
    (comma-separated); nodes are numbered 1 to 3 as in the brokers' node.id."""
    nodes = 3

    def kill_node(self, node):
        """SIGKILLs node `node`'s JVM."""
        subprocess.run([str(BROKER), "kill-node", str(self.data_dir), str(node)],
                       check=True, capture_output=True, timeout=60)

    def start_node(self, node):
        """Starts node `node` again on its data and ports; returns when it serves."""
        subprocess.run([str(BROKER), "start-node", str(self.data_dir), str(node)],
                       check=True, capture_output=True, timeout=300)

    def running(self):
        """{node: True if it runs} from tools/kafka-broker status."""
        out = subprocess.run([str(BROKER), "status", str(self.data_dir)],
                             capture_output=True, text=True, timeout=60).stdout
        return {int(line.split()[1]): line.split()[3] == "running"
                for line in out.splitlines() if line.startswith("node ")}


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("kafka-cluster")
    started = subprocess.run(
        [str(BROKER), "start", "--nodes", "3", "--dir", str(data_dir),
         "--owner-pid", str(os.getpid()), "--partitions", "3"],
        capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.fail("Kafka cluster did not start:\n" + started.stderr[-4000:])
    try:
        yield Cluster(data_dir, started.stdout.strip())
    finally:
        subprocess.run([str(BROKER), "stop", str(data_dir)], timeout=180)


class SchemaRegistry:
    def __init__(self, url, auth_url, tls_url, tls_ca):
        self.url = url            # base URL of the Confluent-compatible API
        self.auth_url = auth_url  # the same registry behind basic auth (registry_auth.py)
        self.tls_url = tls_url    # the same registry over https (registry_auth.py)
        self.tls_ca = tls_ca      # the self-signed certificate tls_url serves


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("registry")
    started = subprocess.run(
        [str(SCHEMA_REGISTRY), "start", "--dir", str(data_dir), "--owner-pid", str(os.getpid())],
        capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.fail("schema registry did not start:\n" + started.stderr[-4000:])
    url = started.stdout.strip()
    cert, key = data_dir / "tls-cert.pem", data_dir / "tls-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    gate = AuthGate(url)
    tls_gate = AuthGate(url, require_auth=False, tls=(str(cert), str(key)))
    try:
        yield SchemaRegistry(url, gate.url, tls_gate.url, str(cert))
    finally:
        gate.close()
        tls_gate.close()
        subprocess.run([str(SCHEMA_REGISTRY), "stop", str(data_dir)], timeout=120)
