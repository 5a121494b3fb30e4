"""The lookup API (api.listen), the published lists kept in the state across
restarts, catch-up accounting of backlog events, and the state tools on a
running daemon's state: streamrecd against the real Kafka broker.
"""
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

from kafka_send import send_raw
from test_daemon_e2e import (STREAMREC, Daemon, daemon_name, engine, free_port,  # noqa: F401
                             latest_lists, settled, user_event)

pytestmark = pytest.mark.kafka

CLICK = 2  # UserEvent.type: IMPRESSION, VIEW, CLICK, ...


class ApiDaemon(Daemon):
    """A daemon with the lookup API on its own port."""

    def __init__(self, broker, tmp_path, name, api=""):
        super().__init__(broker, tmp_path, name)
        self.api_port = free_port()
        self.add_config(f"[api]\nlisten = 127.0.0.1:{self.api_port}\n{api}")

    def lookup(self, user, quote=True):
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=5)
        try:
            conn.request("GET", "/v1/recommendations/" +
                         (urllib.parse.quote(user, safe="") if quote else user))
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()


@pytest.fixture
def api_daemon(kafka_broker, tmp_path, request):
    made = []

    def make(api=""):
        d = ApiDaemon(kafka_broker, tmp_path, daemon_name(request.node.name), api)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.process is not None and d.process.poll() is None:
            d.process.kill()
            d.process.wait()


def closed_by_server(sock, timeout=5.0):
    """Whether the server closes sock (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_lookup_is_on_the_api_port_only_with_bounded_kept_alive_connections(api_daemon):
    """GET /v1/recommendations/{user} answers on api.listen (the newest list
    on the topic), not on the metrics port; a connection carries several
    requests; at api.max_connections a new connection closes the oldest idle
    one; an idle connection is closed after api.idle_timeout_ms."""
    daemon = api_daemon("max_connections = 4\nidle_timeout_ms = 1s\n")
    daemon.start()
    daemon.produce(2000, users=100, items=80)
    # an id with a slash and a plus: percent-encoded, it is one path segment
    send_raw(daemon.broker.bootstrap, daemon.events, [user_event("shop/a+b", "item-1", etype=CLICK)])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2001)
    settled(daemon)
    time.sleep(1)
    published = latest_lists(daemon)
    assert len(published) >= 50
    users = sorted(u for u in published if "/" not in u)[:10]
    # several requests on one kept-alive connection
    conn = http.client.HTTPConnection("127.0.0.1", daemon.api_port, timeout=5)
    for user in users:
        conn.request("GET", "/v1/recommendations/" + urllib.parse.quote(user, safe=""))
        response = conn.getresponse()
        doc = json.loads(response.read())
        assert response.status == 200 and response.getheader("Connection") == "keep-alive", (user, doc)
        variant, items = published[user]
        assert doc["user_id"] == user and doc["variant"] == variant
        assert [i["item_id"] for i in doc["items"]] == items
        scores = [i["score"] for i in doc["items"]]
        assert scores == sorted(scores, reverse=True)
        assert doc["generated_at"] >= doc["trigger_event_ts"] > 0
    conn.close()
    # not on the metrics port: it stays internal
    status, _ = daemon.get("/v1/recommendations/" + users[0])
    assert status == 404
    status, body = daemon.lookup("no-such-user")
    assert status == 404 and json.loads(body)["user"] == "no-such-user"
    status, _ = daemon.lookup("bad%zzescape", quote=False)
    assert status == 400
    assert daemon.wait_for(lambda: daemon.lookup("shop/a+b")[0] == 200, 30)
    assert json.loads(daemon.lookup("shop/a+b")[1])["user_id"] == "shop/a+b"
    status, _ = daemon.lookup("shop/a%2Bb", quote=False)  # a raw '/': a deeper path
    assert status == 400
    time.sleep(0.3)  # the server has seen those clients go

    # the bound: four idle connections, a fifth closes the oldest
    idle = [socket.create_connection(("127.0.0.1", daemon.api_port)) for _ in range(4)]
    time.sleep(0.2)
    fifth = socket.create_connection(("127.0.0.1", daemon.api_port))
    assert closed_by_server(idle[0], 0.8)
    fifth.sendall(b"GET /v1/recommendations/" + users[0].encode() + b" HTTP/1.1\r\n\r\n")
    fifth.settimeout(5)
    assert fifth.recv(4096).startswith(b"HTTP/1.1 200 OK")
    # the idle timeout closes the rest
    started = time.time()
    assert all(closed_by_server(s, 5) for s in idle[1:] + [fifth])
    assert time.time() - started < 3
    for s in idle + [fifth]:
        s.close()
    assert daemon.stop() == 0


def test_api_listen_errors_name_the_key_and_value(tmp_path):
    config = tmp_path / "bad.conf"
    config.write_text(f"[state]\ndir = {tmp_path / 'state'}\n[api]\nlisten = nowhere\n")
    out = subprocess.run([STREAMREC.parent / "streamrecd", "--config", config, "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert re.search(r"bad\.conf:4: api\.listen: .*nowhere", out.stderr), out.stderr
    config.write_text(f"[state]\ndir = {tmp_path / 'state'}\n[api]\nmax_connections = 0\n")
    out = subprocess.run([STREAMREC.parent / "streamrecd", "--config", config, "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "bad.conf:4: api.max_connections" in out.stderr and "0" in out.stderr, out.stderr
    # the metrics port's address again: refused by --check, not at the bind
    config.write_text(f"[state]\ndir = {tmp_path / 'state'}\n[http]\nlisten = 127.0.0.1:19470\n"
                      "[api]\nlisten = 127.0.0.1:19470\n[kafka]\nbootstrap.servers = x:9092\n")
    out = subprocess.run([STREAMREC.parent / "streamrecd", "--config", config, "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "bad.conf:6: api.listen: 127.0.0.1:19470 is http.listen's address too" in out.stderr, \
        out.stderr


def test_lists_survive_a_restart_for_lookups_and_hits(api_daemon):
    """The last published lists are kept in the state: after a restart, with
    no new event, the lookup answers the same lists, and a click on an item
    of a list published before the restart counts as a hit."""
    daemon = api_daemon()
    daemon.start()
    daemon.produce(2000, users=100, items=80)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2000)
    settled(daemon)
    time.sleep(1)
    users = sorted(latest_lists(daemon))[:20]
    before = {u: daemon.lookup(u) for u in users}
    assert all(status == 200 for status, _ in before.values())
    assert daemon.stop() == 0

    daemon.start()
    assert "restored" in daemon.logtext()
    after = {u: daemon.lookup(u) for u in users}
    assert after == before
    assert daemon.metric("streamrec_hits_total") == 0
    user = users[0]
    item = json.loads(before[user][1])["items"][0]["item_id"]
    send_raw(daemon.broker.bootstrap, daemon.events, [user_event(user, item, etype=CLICK)])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_hits_total") == 1, 30), \
        daemon.get("/metrics")[1][-2000:]
    # users served since the start: the restored lists were served by the run
    # before; the clicking user's new list counts (before, a user with a
    # restored list was never counted again)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_users_served_total") == 1, 30), \
        daemon.get("/metrics")[1][-2000:]
    assert daemon.stop() == 0


def test_backlog_events_count_as_catch_up_not_freshness(api_daemon):
    """Events already older than refresh.catch_up_threshold_ms when they
    arrive (a backfill) give lists whose age goes to streamrec_catch_up_seconds;
    the freshness histogram sees only lists of fresh events."""
    daemon = api_daemon()
    daemon.add_config("[refresh]\ncatch_up_threshold_ms = 1m\n")
    daemon.start()
    old = int(time.time() * 1000) - 3600 * 1000
    backlog = [user_event(f"old-{u}", f"item-{(u * 7 + k) % 30}", ts=old + u * 10 + k)
               for u in range(40) for k in range(5)]
    send_raw(daemon.broker.bootstrap, daemon.events, backlog)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_catch_up_seconds_count") >= 30, 60), \
        daemon.get("/metrics")[1][-3000:]
    settled(daemon)
    assert daemon.metric("streamrec_freshness_seconds_count") == 0
    # an hour old: beyond the last freshness bucket, inside the catch-up ones
    assert daemon.metric("streamrec_catch_up_seconds_sum") / \
        daemon.metric("streamrec_catch_up_seconds_count") > 3000
    status, body = daemon.lookup("old-1")
    assert status == 200 and json.loads(body)["trigger_event_ts"] < old + 1000
    # fresh events: freshness again, also for a user whose list was catch-up
    send_raw(daemon.broker.bootstrap, daemon.events,
             [user_event(f"new-{u}", f"item-{u % 30}") for u in range(20)] +
             [user_event("old-1", "item-3")])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_freshness_seconds_count") >= 15, 60)
    fresh = daemon.metric("streamrec_freshness_seconds_sum") / \
        daemon.metric("streamrec_freshness_seconds_count")
    assert fresh < 10, fresh
    # a backfilled event for a user whose last list was fresh: catch-up, not freshness
    settled(daemon)
    time.sleep(1)
    fresh_lists = daemon.metric("streamrec_freshness_seconds_count")
    catch_up_lists = daemon.metric("streamrec_catch_up_seconds_count")
    send_raw(daemon.broker.bootstrap, daemon.events, [user_event("new-1", "item-9", ts=old)])
    assert daemon.wait_for(
        lambda: daemon.metric("streamrec_catch_up_seconds_count") == catch_up_lists + 1, 30)
    assert daemon.metric("streamrec_freshness_seconds_count") == fresh_lists
    assert daemon.stop() == 0


def test_inspect_and_digest_work_on_a_running_daemons_state(api_daemon):
    """streamrec inspect and digest open the state read-only: they work while
    the daemon runs (which holds RocksDB's lock), and the daemon goes on."""
    daemon = api_daemon()
    daemon.start()
    daemon.produce(1500, users=50, items=40)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 1500)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") >= 2)
    time.sleep(1.5)  # a commit covering every event
    state = daemon.dir / "state"
    out = subprocess.run([STREAMREC, "inspect", "--state", state, "--user", "user-1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "user user-1" in out.stdout and "top 10" in out.stdout, out.stdout
    out = subprocess.run([STREAMREC, "inspect", "--state", state, "--item", "item-1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "item item-1" in out.stdout, out.stderr
    first = digest(state)
    # the daemon is unaffected: it learns and commits on; a digest taken while it
    # runs, after a commit covering every event, equals the one after it stopped
    daemon.produce(100, seed=2, users=50, items=40)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 1600)
    commits = daemon.metric("streamrec_commits_total")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") >= commits + 2)
    running = digest(state)
    assert running != first
    assert daemon.ready()
    assert daemon.stop() == 0
    assert digest(state) == running


def digest(state):
    out = subprocess.run([STREAMREC, "digest", "--state", state], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("digest "), out.stderr
    return out.stdout


def test_bootstrap_from_history_with_replay_config(api_daemon, tmp_path):
    """`streamrec replay --config` learns a history file into the state the
    daemon's configuration names, with its variants; the daemon then runs on
    it (state.on_empty = latest: only new events), and lists of new events
    count as freshness."""
    history = tmp_path / "history.csv"
    subprocess.run([STREAMREC, "gen", "--events", "3000", "--users", "200", "--items", "100",
                    "--out", history], check=True, capture_output=True)
    daemon = api_daemon()
    daemon.add_config("[variant.model]\nshare = 0.5\n"
                      "[variant.control]\nshare = 0.5\npolicy = popularity\n")
    # no commit while the test runs: the size gauges must be right from the start
    daemon.config.write_text(daemon.config.read_text().replace(
        "commit_interval_ms = 500ms\n", "commit_interval_ms = 10m\non_empty = latest\n"))
    out = subprocess.run([STREAMREC, "replay", "--config", daemon.config, history],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "events 0..2999 applied" in out.stderr, out.stderr
    learned = subprocess.run([STREAMREC, "digest", "--state", daemon.dir / "state", "--variant",
                              "model"], capture_output=True, text=True, timeout=120)
    assert learned.returncode == 0, learned.stderr
    daemon.start()
    # the history's items and users, before any commit (the gauges had read 0 until the first)
    assert daemon.metric("streamrec_items") >= 90
    assert daemon.metric("streamrec_users") >= 150
    # "latest" is resolved when the partitions are first fetched: send until some are learned
    for _ in range(10):
        send_raw(daemon.broker.bootstrap, daemon.events,
                 [user_event(f"u{u}", f"i{u}") for u in range(10)])
        if daemon.wait_for(lambda: daemon.metric("streamrec_freshness_seconds_count") >= 5, 6):
            break
    assert daemon.metric("streamrec_freshness_seconds_count") >= 5, daemon.logtext()
    assert daemon.metric("streamrec_catch_up_seconds_count") == 0
    assert daemon.metric("streamrec_items") >= 90  # the history's, not only the ten new events'
    status, body = daemon.lookup("u1")
    assert status == 200 and json.loads(body)["variant"] in ("model", "control")
    assert daemon.stop() == 0


def api_scheduling(pid):
    """(policy, rt_priority) of the daemon's API thread and of its other
    threads, from /proc/PID/task/*/stat (fields 41 and 40; 1 is SCHED_FIFO)."""
    api, others = [], []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        (api if name == "api" else others).append((int(fields[38]), int(fields[37])))
    assert len(api) == 1, api
    return api[0], set(others)


def set_priority(daemon, priority):
    """Rewrites api.realtime_priority and reloads; @returns the log's new part."""
    text = daemon.config.read_text()
    daemon.config.write_text(re.sub(r"realtime_priority = \d+", f"realtime_priority = {priority}",
                                    text))
    before = len((daemon.dir / "streamrecd.log").read_text())
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.wait_for(lambda: re.search(
        r"reloaded|reload refused", (daemon.dir / "streamrecd.log").read_text()[before:]), 20)
    return (daemon.dir / "streamrecd.log").read_text()[before:]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs CAP_SYS_NICE (root) and setpriv to run without it")
def test_api_realtime_priority_puts_the_api_thread_alone_on_sched_fifo(api_daemon):
    """api.realtime_priority = N runs the API's thread (only) on SCHED_FIFO at
    N; a reload changes it; where the process may not (no CAP_SYS_NICE, an
    RLIMIT_RTPRIO of 0) the daemon does not start and a reload is refused,
    each naming the key, and the running daemon keeps its scheduling."""
    daemon = api_daemon("realtime_priority = 7\n")
    daemon.start()
    daemon.produce(1000, users=50, items=40)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 1000)
    settled(daemon)
    api, others = api_scheduling(daemon.process.pid)
    assert api == (1, 7) and others == {(0, 0)}, (api, others)
    assert "SCHED_FIFO priority 7" in daemon.logtext()
    user = sorted(latest_lists(daemon))[0]
    status, body = daemon.lookup(user)
    assert status == 200 and json.loads(body)["user_id"] == user
    assert "reloaded" in set_priority(daemon, 0)
    assert api_scheduling(daemon.process.pid)[0] == (0, 0)
    assert "reloaded" in set_priority(daemon, 3)
    assert api_scheduling(daemon.process.pid)[0] == (1, 3)
    assert daemon.stop() == 0

    # no capabilities, RLIMIT_RTPRIO 0 (this process's): refused
    daemon.prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    daemon.config.write_text(re.sub(r"realtime_priority = \d+", "realtime_priority = 0",
                                    daemon.config.read_text()))
    daemon.start()
    log = set_priority(daemon, 5)
    assert "reload refused" in log and "api.realtime_priority = 5" in log, log
    assert "LimitRTPRIO=5" in log, log
    assert api_scheduling(daemon.process.pid)[0] == (0, 0)
    status, body = daemon.lookup(user)  # still serving, from the state
    assert status == 200 and json.loads(body)["user_id"] == user
    assert daemon.stop() == 0
    out = subprocess.run([*daemon.prefix, STREAMREC.parent / "streamrecd", "--config",
                          daemon.config], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "api.realtime_priority = 5" in out.stderr and "CAP_SYS_NICE" in out.stderr, out.stderr
