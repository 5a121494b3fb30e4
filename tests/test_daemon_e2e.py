"""streamrecd end to end, against the real Kafka broker and real RocksDB.

Each test makes its own topics and state directory and runs the release
daemon as a child process on loopback.
"""
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from kafka_send import send_raw

import pytest

from harness import BUILD, SCHEMAS

STREAMREC = BUILD / "streamrec"
STREAMRECD = BUILD / "streamrecd"
pytestmark = pytest.mark.kafka


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_name(test_name, limit=40):
    """A name for a test's topics and directory: the test's name in word
    characters, cut to `limit`; a longer one keeps a hash of the whole, so
    two tests whose names share their first `limit` characters do not share
    topics on the session's broker."""
    name = re.sub(r"\W", "", test_name)
    if len(name) <= limit:
        return name
    return f"{name[:limit - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


# The ranking engine a Daemon's lists come from (model.retrieval): this
# module, and each module that imports the `engine` fixture below, runs every
# test once with each; the other modules run with the default, exact.
ENGINES = ("exact", "index")


class Daemon:
    engine = "exact"

    def __init__(self, broker, tmp_path, name, partitions=3):
        if self.engine != "exact":
            name = f"{name}-{self.engine}"  # a session's broker holds both runs' topics
        self.broker, self.dir = broker, tmp_path / name
        self.dir.mkdir()
        self.events, self.recs, self.dlq = f"{name}.events", f"{name}.recs", f"{name}.dlq"
        self.items = f"{name}.items"
        broker.create_topics(f"{self.events}:{partitions}", f"{self.recs}:3:compact",
                             f"{self.dlq}:1", f"{self.items}:1:compact")
        self.port = free_port()
        self.config = self.dir / "streamrecd.conf"
        self.config.write_text(f"""
[input]
topic = {self.events}
items_topic = {self.items}
dead_letter_topic = {self.dlq}
group_id = {name}
[output]
topic = {self.recs}
[state]
dir = {self.dir / 'state'}
commit_interval_ms = 500ms
[http]
listen = 127.0.0.1:{self.port}
[kafka]
bootstrap.servers = {broker.bootstrap}
""" + self.engine_section())
        self.process = None
        self.prefix = []  # a command the daemon runs under (setpriv, ...)

    def engine_section(self):
        return "[model]\nretrieval = index\n" if self.engine == "index" else ""

    def add_config(self, sections):
        """Adds configuration sections (text) to the daemon's file; sections
        that choose the engine themselves take the place of the module's."""
        text = self.config.read_text()
        chosen = re.search(r"^retrieval\s*=\s*(\w+)", sections, re.M)
        if chosen:
            text = text.replace(self.engine_section(), "")
            self.engine = chosen.group(1)
        self.config.write_text(text.replace("[http]", sections + "[http]"))

    def start(self):
        self.log = open(self.dir / "streamrecd.log", "a")
        self.process = subprocess.Popen([*self.prefix, STREAMRECD, "--config", self.config],
                                        stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.ready():
                return
            assert self.process.poll() is None, self.logtext()
            time.sleep(0.2)
        pytest.fail("streamrecd never became ready:\n" + self.logtext())

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    def ready(self):
        return self.get("/readyz")[0] == 200

    def metric(self, name):
        _, body = self.get("/metrics")
        return sum(float(line.split()[-1]) for line in body.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.engine == "index" and self.process.poll() is None:
            # the lists the test saw came from the index (cold users' trending
            # lists and a popularity arm's do not)
            published = self.metric("streamrec_recommendations_total")
            searched = self.metric("streamrec_index_lists_total")
            assert searched > 0 or published == 0, \
                f"retrieval = index, {published:.0f} lists published, none from the index"
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.log.close()
        return code

    def logtext(self):
        return (self.dir / "streamrecd.log").read_text()[-4000:]

    def produce(self, count, seed=1, rate=0, users=500, items=300, framing="raw"):
        subprocess.run([STREAMREC, "produce", "--brokers", self.broker.bootstrap, "--topic",
                        self.events, "--count", str(count), "--seed", str(seed), "--rate",
                        str(rate), "--users", str(users), "--items", str(items), "--framing",
                        framing], check=True, capture_output=True)

    def series(self, name):
        """{labels text: value} of every sample of one metric family."""
        _, body = self.get("/metrics")
        return {line.split()[0][len(name):]: float(line.split()[-1])
                for line in body.splitlines() if line.startswith(name + "{")}

    def wait_for(self, predicate, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return True
            time.sleep(0.2)
        return False


# an A/B pair: the model against the popularity control, half the users each
AB_VARIANTS = "[variant.model]\nshare = 0.5\n[variant.control]\nshare = 0.5\npolicy = popularity\n"


@pytest.fixture(params=ENGINES, autouse=True)
def engine(request):
    """Every test here, once with each ranking engine (issue 12: with the
    index engine, every test of the daemon's suite that holds for the exact
    engine still holds)."""
    Daemon.engine = request.param
    yield request.param
    Daemon.engine = "exact"


@pytest.fixture
def daemon(kafka_broker, tmp_path, request):
    d = Daemon(kafka_broker, tmp_path, daemon_name(request.node.name))
    yield d
    if d.process is not None and d.process.poll() is None:
        d.process.kill()
        d.process.wait()


def test_long_test_names_keep_their_own_topics():
    """The harness: two tests whose names share their first 40 characters
    get daemons of different names, so they never read each other's topics."""
    a = daemon_name("test_hits_are_counted_exactly_once_per_list[exact]")
    b = daemon_name("test_hits_are_counted_exactly_once_per_list[index]")
    assert a != b and len(a) <= 40 and len(b) <= 40
    assert daemon_name("test_short[exact]") == "test_shortexact"


def test_events_become_fresh_recommendations(daemon):
    daemon.start()
    daemon.produce(3000, rate=3000)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 3000), daemon.logtext()
    out = subprocess.run([STREAMREC, "tail", "--brokers", daemon.broker.bootstrap, "--kind", "recs",
                          "--topic", daemon.recs, "--from-beginning", "--count", "200",
                          "--timeout-ms", "30000"], capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith("user=")]
    assert len(lines) == 200, out.stderr
    assert all("variant=model" in l and "items=item-" in l for l in lines)
    # every published list carries the trigger event time: freshness is measured by the daemon
    count = daemon.metric("streamrec_freshness_seconds_count")
    total = daemon.metric("streamrec_freshness_seconds_sum")
    assert count > 0 and total / count < 10, (count, total)
    assert daemon.stop() == 0


def avro_long(n):
    n = (n << 1) ^ (n >> 63)
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([b])
        out += bytes([b | 0x80])


def avro_string(text):
    data = text.encode()
    return avro_long(len(data)) + data


def user_event(user, item="item-1", etype=1, ts=None):
    """A raw Avro UserEvent body, written by hand so it can be bent out of shape."""
    ts = int(time.time() * 1000) if ts is None else ts
    return (avro_string("ev-" + user) + avro_string(user) + avro_string(item) + avro_long(etype)
            + avro_long(ts) + avro_long(0) + avro_long(0) + avro_long(0))


def test_bad_input_goes_to_the_dead_letter_topic(daemon):
    """Each kind of bad message lands in the dead-letter topic, byte for byte,
    with headers naming its reason and where it came from; every good event
    around them is applied."""
    good = user_event("u-good")
    bad = {
        "empty": b"",
        "malformed": b"\x01garbage",  # not Confluent's magic 0, and not Avro either
        "unknown_schema_id": b"\x00" + (999).to_bytes(4, "big") + good,
        "truncated": good[:-4],
        "invalid_enum": user_event("u-enum", etype=9),
        "id_too_long": user_event("u" * 300),
        "future_timestamp": user_event("u-future", ts=int(time.time() * 1000) + 3 * 86400000),
        # good is version 1's encoding; two null branches (list_id, search) make it
        # the current version's, so three bytes leave one over
        "trailing_bytes": good + b"\x00\x00\x00",
    }
    daemon.start()
    daemon.produce(500)
    send_raw(daemon.broker.bootstrap, daemon.events, list(bad.values()))
    daemon.produce(500, seed=2)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 1000), \
        daemon.logtext()
    assert daemon.wait_for(lambda: daemon.metric("streamrec_dlq_messages_total") >= len(bad))
    out = subprocess.run([BUILD / "tests" / "kafka_read", daemon.broker.bootstrap, daemon.dlq,
                          str(len(bad)), "20000"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    letters = {}
    for line in out.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split())
        letters[fields["header.streamrec.reason"]] = fields
    assert sorted(letters) == sorted(bad), letters.keys()
    for reason, message in bad.items():
        letter = letters[reason]
        assert letter["value"] == (message.hex() or "-"), reason
        assert letter["header.streamrec.source.topic"] == daemon.events
        assert int(letter["header.streamrec.source.offset"]) >= 0
        assert letter["header.streamrec.source.partition"] in ("0", "1", "2")
    for reason in bad:
        assert daemon.metric(f'streamrec_invalid_events_total{{reason="{reason}"}}') == 1, reason
    assert daemon.metric("streamrec_updates_total") == 1000  # good ones all applied, once
    assert daemon.stop() == 0


def test_a_full_producer_queue_makes_bad_input_wait_not_stop_the_daemon(daemon):
    """A dead letter the producer's queue cannot take now (a slow broker; here a
    queue of one message) is not a refusal: the message is read again shortly
    and every bad message reaches the dead-letter topic once. The daemon
    stopped at the first ("dead-letter send failed: queue full")."""
    daemon.add_config("[kafka.producer]\nqueue.buffering.max.messages = 1\n")
    daemon.start()
    send_raw(daemon.broker.bootstrap, daemon.events, [b"\x01bad-%d" % k for k in range(30)])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_dlq_messages_total") == 30), \
        daemon.logtext()
    assert daemon.process.poll() is None
    assert daemon.metric("streamrec_dead_letter_waits_total") > 0, "the queue never filled"
    out = subprocess.run([BUILD / "tests" / "kafka_read", daemon.broker.bootstrap, daemon.dlq,
                          "30", "20000"], capture_output=True, text=True)
    values = sorted(dict(f.split("=", 1) for f in line.split())["value"]
                    for line in out.stdout.splitlines())
    assert values == sorted((b"\x01bad-%d" % k).hex() for k in range(30))
    assert daemon.stop() == 0


def test_a_list_the_full_producer_queue_did_not_take_is_sent_later(daemon):
    """A list the producer's queue cannot take (a slow broker; here a queue of
    one message) makes its user due again, and a later round sends it: every
    user who had events gets a list. It was dropped with a log line, and the
    user kept no list until its next event."""
    daemon.add_config("[kafka.producer]\nqueue.buffering.max.messages = 1\n")
    daemon.start()
    daemon.produce(2000, users=200, items=50)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2000)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_users_served_total") >= 200), \
        (daemon.metric("streamrec_users_served_total"), daemon.logtext()[-3000:])
    assert daemon.metric("streamrec_publish_retries_total") > 0, "the queue never filled"
    assert len(latest_lists(daemon)) == 200
    assert daemon.stop() == 0


def test_a_bad_catalogue_record_is_dead_lettered_once_across_restarts(daemon):
    """The items topic is re-read from its start on every start: a record it
    refused in an earlier run is counted and logged again, but the
    dead-letter topic gets it once; a new bad record after the restart is
    sent as usual."""
    daemon.start()
    send_raw(daemon.broker.bootstrap, daemon.items, [b"\x01garbage"])
    daemon.produce(200)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_dlq_messages_total") >= 1), \
        daemon.logtext()
    commits = daemon.metric("streamrec_commits_total")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") > commits)
    assert daemon.stop() == 0
    for run in range(2):
        daemon.start()
        send_raw(daemon.broker.bootstrap, daemon.items, [b"\x01again" + bytes([run])])
        # the old record(s) read again and the new one: all refused in this run
        assert daemon.wait_for(lambda: daemon.metric(
            'streamrec_invalid_events_total{reason="malformed"}') >= 2 + run), daemon.logtext()
        assert daemon.wait_for(lambda: daemon.metric("streamrec_dlq_messages_total") >= 1)
        commits = daemon.metric("streamrec_commits_total")
        assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") > commits)
        assert daemon.metric("streamrec_dlq_messages_total") == 1
        assert "dead-lettered by an earlier run" in daemon.logtext()
        assert daemon.stop() == 0
    out = subprocess.run([BUILD / "tests" / "kafka_read", daemon.broker.bootstrap, daemon.dlq,
                          "4", "8000"], capture_output=True, text=True)
    values = sorted(dict(f.split("=", 1) for f in line.split())["value"]
                    for line in out.stdout.splitlines())
    assert values == sorted([b"\x01garbage".hex(), (b"\x01again" + b"\x00").hex(),
                             (b"\x01again" + b"\x01").hex()]), values


def test_a_bad_catalogue_record_stays_sent_once_when_the_re_read_spans_a_commit(daemon):
    """The catalogue's re-read at a start takes several commit intervals when
    it is large: a commit in the middle must not move the stored read
    position back below the earlier run's, or a refused record after that
    point is sent to the dead-letter topic again (it was, at every start)."""
    from kafka_send import send_item_events
    count = 300000
    send_item_events(daemon.broker.bootstrap, daemon.items,
                     [(f"shelf-{k}", True) for k in range(count)])
    send_raw(daemon.broker.bootstrap, daemon.items, [b"\x01garbage"])
    text = daemon.config.read_text()
    daemon.config.write_text(text.replace("commit_interval_ms = 500ms", "commit_interval_ms = 100ms"))
    daemon.start()
    assert daemon.wait_for(lambda: daemon.metric("streamrec_dlq_messages_total") >= 1,
                           timeout=120), daemon.logtext()
    commits = daemon.metric("streamrec_commits_total")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") > commits)
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.wait_for(lambda: daemon.metric(
        'streamrec_invalid_events_total{reason="malformed"}') >= 1, timeout=120), \
        daemon.logtext()
    commits = daemon.metric("streamrec_commits_total")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") > commits)
    assert daemon.metric("streamrec_commits_total") >= 3, "the re-read spanned no commit"
    assert daemon.metric("streamrec_dlq_messages_total") == 0, daemon.logtext()
    assert "dead-lettered by an earlier run" in daemon.logtext()
    assert daemon.stop() == 0


def latest_lists(daemon, timeout_ms=60000):
    """user -> (variant, [item ids]) of the newest list on the recommendations topic."""
    out = subprocess.run([STREAMREC, "tail", "--brokers", daemon.broker.bootstrap, "--kind",
                          "recs", "--topic", daemon.recs, "--from-beginning", "--until-end",
                          "--timeout-ms", str(timeout_ms)], capture_output=True, text=True)
    lists = {}
    for line in out.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "user" in fields and "items" in fields:
            lists[fields["user"]] = (fields["variant"], [i.rsplit(":", 1)[0] for i in
                                                         fields["items"].split(",") if i])
    return lists


def test_hits_are_counted_exactly_per_variant_type_and_rank(daemon):
    """A scripted stream against lists known in advance: every click,
    add-to-cart and purchase of a listed item counts once, for the list's
    variant, by type and rank; views and unlisted items do not."""
    daemon.add_config("[refresh]\nmin_interval_ms = 1h\n" + AB_VARIANTS)
    daemon.start()
    daemon.produce(3000, users=60, items=40)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2 * 3000)
    lists = {}
    assert daemon.wait_for(lambda: len(lists.update(latest_lists(daemon)) or lists) == 60, 30)
    assert {variant for variant, _ in lists.values()} == {"model", "control"}
    # each list's variant is the one the README's formula gives
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "formula", pathlib.Path(__file__).parent / "interop" / "test_assignment_formula.py")
    formula = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(formula)
    shares = [("model", 0.5), ("control", 0.5)]
    for user, (variant, _) in lists.items():
        assert shares[formula.assign("streamrec", user, shares)][0] == variant, user

    def counters():
        return {name: daemon.metric(name) for name in
                [f'streamrec_hits_total{{variant="{v}",type="{t}"}}'
                 for v in ("model", "control") for t in ("click", "add_to_cart", "purchase")]
                + [f'streamrec_hits_by_rank_total{{variant="{v}",rank="{r}"}}'
                   for v in ("model", "control")
                   for r in ("1", "2", "3", "4-5", "6-10", "11-20", "21+")]}

    before = counters()
    expected = dict.fromkeys(before, 0)
    script = []
    CLICK, ADD_TO_CART, VIEW, PURCHASE = 2, 3, 1, 6
    for user, (variant, items) in sorted(lists.items()):
        assert len(items) == 20
        for etype, rank in ((CLICK, 1), (ADD_TO_CART, 5), (PURCHASE, 11), (VIEW, 2)):
            script.append(user_event(user, items[rank - 1], etype))
        script.append(user_event(user, "item-unlisted", CLICK))
        for key, rank in (("click", "1"), ("add_to_cart", "4-5"), ("purchase", "11-20")):
            expected[f'streamrec_hits_total{{variant="{variant}",type="{key}"}}'] += 1
            expected[f'streamrec_hits_by_rank_total{{variant="{variant}",rank="{rank}"}}'] += 1
    send_raw(daemon.broker.bootstrap, daemon.events, script)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total")
                           >= 2 * (3000 + len(script)))
    after = counters()
    assert {k: after[k] - before[k] for k in after} == expected
    served = daemon.metric("streamrec_users_served_total")
    assert served == 60
    assert daemon.stop() == 0


def test_status_json_and_page_show_live_figures_per_variant(daemon):
    import json
    daemon.add_config(AB_VARIANTS)
    daemon.start()
    daemon.produce(3000, users=200, items=50, rate=1500)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2 * 3000)
    status, body = daemon.get("/status.json")
    assert status == 200
    s = json.loads(body)
    assert s["events_total"] == 3000 and s["ready"] is True
    assert 0 < s["window_s"] <= 61 and s["events_per_s"] > 0
    assert [v["name"] for v in s["variants"]] == ["model", "control"]
    for v in s["variants"]:
        assert v["lists"] > 0 and v["updates_per_s"] > 0
        assert 0 <= v["p50_ms"] <= v["p95_ms"] <= v["p99_ms"]
        assert v["hit_rate"] is not None and 0 <= v["hit_rate"] <= 1
        assert 0 <= v["deferred_share"] <= 1
    status, page = daemon.get("/status")
    assert status == 200 and "status.json" in page and "<table" in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//|@import|url\(", page), \
        "the page must be self-contained"
    assert daemon.stop() == 0


def test_variants_come_and_go_by_name_across_restarts(daemon):
    """Restarting with other variants: a surviving variant keeps its state, a
    new one starts cold or as a copy of a named one, a removed one stays on
    disk unused, and a reshaped one is refused with a message."""
    base = daemon.config.read_text()

    def configure(variants):
        daemon.config.write_text(base.replace("[http]", variants + "[http]"))

    def digest(variant):
        out = subprocess.run([STREAMREC, "digest", "--state", daemon.dir / "state",
                              "--variant", variant], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()[1]

    configure("[variant.a]\nshare = 0.5\n[variant.b]\nshare = 0.5\nlearning_rate = 0.05\n")
    daemon.start()
    daemon.produce(2000, users=100, items=50)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2 * 2000)
    assert daemon.stop() == 0
    a, b = digest("a"), digest("b")
    assert a != b

    # b leaves, c arrives as a copy of a, d arrives cold
    configure("[variant.a]\nshare = 0.4\n[variant.c]\nshare = 0.3\nstart_from = a\n"
              "[variant.d]\nshare = 0.3\n")
    daemon.start()
    assert daemon.stop() == 0
    log = daemon.logtext()
    assert "variant 'c' is new: starts from 'a'" in log
    assert "variant 'd' is new: starts cold" in log
    assert "variant 'b' is in the state but not in the configuration" in log
    assert digest("a") == a and digest("c") == a and digest("b") == b
    assert digest("d") not in (a, b)

    # learning goes on in each variant separately after the copy
    daemon.start()
    daemon.produce(500, users=100, items=50, seed=9)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 3 * 500)
    assert daemon.stop() == 0
    assert digest("a") != a and digest("c") != a and digest("b") == b

    # a change of layout in place is refused, naming the variant
    configure("[variant.a]\nshare = 0.4\ndim = 64\n[variant.c]\nshare = 0.3\n"
              "[variant.d]\nshare = 0.3\n")
    out = subprocess.run([STREAMRECD, "--config", daemon.config, "--check"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "variant 'a' was stored with dim 32" in out.stderr and "new name" in out.stderr
    configure("[variant.a]\nshare = 0.5\n[variant.e]\nshare = 0.5\nstart_from = zz\n")
    out = subprocess.run([STREAMRECD, "--config", daemon.config, "--check"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "starts from 'zz', which the state does not hold" in out.stderr


def test_sigterm_writes_state_and_restart_resumes(daemon):
    daemon.start()
    daemon.produce(2000, rate=4000)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2000)
    assert daemon.stop(signal.SIGTERM, timeout=60) == 0, daemon.logtext()
    # a clean stop writes the memtables, so the next start replays no log
    assert re.search(r"wrote [0-9.]+ MiB of memtables in [0-9.]+ s", daemon.logtext()), \
        daemon.logtext()
    wal = sum(p.stat().st_size for p in (daemon.dir / "state").glob("*.log"))
    assert wal == 0, sorted((p.name, p.stat().st_size) for p in (daemon.dir / "state").glob("*"))
    daemon.start()
    daemon.produce(700, seed=9)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 700)
    time.sleep(2)
    # the restarted daemon learned the 700 new events and none of the first 2000 again
    assert daemon.metric("streamrec_updates_total") == 700
    assert daemon.stop() == 0


def settled(daemon, seconds=3):
    """Waits until the daemon's learned-event count stops moving. A stream is
    finite, so a count that keeps moving ends; the deadline only catches a
    daemon that never gets there, and is generous: under ASan a restarted
    daemon that embeds hundreds of search texts on one thread took over two
    minutes to catch up on a loaded machine."""
    last, since = -1, time.time()
    deadline = time.time() + 600
    while time.time() < deadline:
        now = daemon.metric("streamrec_updates_total")
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= seconds:
            return now
        time.sleep(0.3)
    pytest.fail("the daemon never settled:\n" + daemon.logtext())


def test_sigkill_under_load_loses_and_repeats_nothing(kafka_broker, tmp_path):
    """Two daemons read the same single-partition topic, each with its own
    group and state: one is killed with SIGKILL while events flow and
    restarted, the other runs undisturbed. Their final models are
    bit-identical: every event applied exactly once."""
    steady = Daemon(kafka_broker, tmp_path, "steady", partitions=1)
    crashy = Daemon(kafka_broker, tmp_path, "crashy", partitions=1)
    crashy.config.write_text(crashy.config.read_text().replace(f"topic = {crashy.events}",
                                                               f"topic = {steady.events}"))
    try:
        steady.start()
        crashy.start()
        producer = subprocess.Popen([STREAMREC, "produce", "--brokers", kafka_broker.bootstrap,
                                     "--topic", steady.events, "--count", "20000", "--rate",
                                     "8000", "--users", "500", "--items", "300"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.2)
        crashy.process.kill()  # SIGKILL mid-stream
        crashy.process.wait()
        crashy.log.close()
        crashy.start()
        assert producer.wait(timeout=120) == 0
        assert steady.wait_for(lambda: steady.metric("streamrec_updates_total") >= 20000, 120)
        settled(crashy)
        assert steady.stop() == 0
        assert crashy.stop() == 0
        digests = [subprocess.run([STREAMREC, "digest", "--state", d.dir / "state"],
                                  check=True, capture_output=True, text=True).stdout
                   for d in (steady, crashy)]
        assert digests[0] == digests[1], digests
    finally:
        for d in (steady, crashy):
            if d.process is not None and d.process.poll() is None:
                d.process.kill()


def test_broker_outage_keeps_the_daemon_up_and_it_resumes(tmp_path):
    """Stop the broker under load: the daemon stays up and /readyz fails;
    start it again: the daemon resumes alone and loses nothing."""
    from conftest import Broker
    from harness import BROKER

    data = tmp_path / "own-broker"
    started = subprocess.run([BROKER, "start", "--dir", data, "--owner-pid", str(os.getpid())],
                             capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    broker = Broker(data, started.stdout.strip())
    daemon = Daemon(broker, tmp_path, "outage")
    try:
        daemon.start()
        daemon.produce(1000)
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 1000)
        subprocess.run([BROKER, "stop", data], check=True, capture_output=True, timeout=120)
        assert daemon.wait_for(lambda: daemon.get("/readyz")[0] == 503, timeout=90), \
            daemon.logtext()
        assert daemon.process.poll() is None, "the daemon died with the broker"
        again = subprocess.run([BROKER, "start", "--dir", data, "--owner-pid", str(os.getpid())],
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        broker.bootstrap = again.stdout.strip()
        assert broker.bootstrap in daemon.config.read_text(), "the broker moved to another port"
        assert daemon.wait_for(daemon.ready, timeout=120), daemon.logtext()
        daemon.produce(500, seed=5)
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 1500, 120), \
            daemon.logtext()
        assert settled(daemon) == 1500  # every event once: none lost, none repeated
        assert daemon.stop() == 0
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
        subprocess.run([BROKER, "stop", data], capture_output=True, timeout=120)


def test_sighup_reloads_what_can_change_and_refuses_the_rest(daemon):
    daemon.start()
    text = daemon.config.read_text()
    daemon.config.write_text(text.replace("commit_interval_ms = 500ms", "commit_interval_ms = 2s"))
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.wait_for(lambda: "reloaded" in daemon.logtext(), 20), daemon.logtext()
    assert "state.commit_interval_ms" in daemon.logtext()
    daemon.config.write_text(text.replace(f"topic = {daemon.recs}", "topic = elsewhere"))
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.wait_for(lambda: "reload refused" in daemon.logtext(), 20), daemon.logtext()
    assert "output.topic" in daemon.logtext()
    assert daemon.process.poll() is None and daemon.ready()
    daemon.produce(300)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 300)
    assert daemon.stop() == 0


def test_a_commit_after_the_stream_stops_is_written_without_waiting_for_the_next(daemon):
    """A commit owes its item vector rows and the events after it pay them
    (state.h, state_commit_async). When no event comes after it, the loop
    pays them itself within a tick: the next commit finds the write done
    and is not put off. Before, the rows waited for the next commit, which
    was postponed (streamrec_commits_postponed_total) until they were paid
    and written."""
    daemon.config.write_text(daemon.config.read_text().replace(
        "commit_interval_ms = 500ms", "commit_interval_ms = 2s"))
    daemon.start()
    for burst in range(3):
        daemon.produce(400, seed=burst + 1)
        assert daemon.wait_for(
            lambda: daemon.metric("streamrec_updates_total") >= 400 * (burst + 1), 60)
        commits = daemon.metric("streamrec_commits_total")
        # the commit after the burst, then the one after it with no events between
        assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") >= commits + 2, 30)
    assert daemon.metric("streamrec_commits_postponed_total") == 0, daemon.logtext()
    assert daemon.stop() == 0


def test_lists_learn_the_planted_taste(daemon, tmp_path):
    """A planted synthetic stream in: the published lists hold items of each
    user's own taste cluster clearly more often than the popularity list."""
    events = tmp_path / "planted.csv"
    subprocess.run([STREAMREC, "gen", "--events", "60000", "--users", "600", "--items", "800",
                    "--clusters", "8", "--seed", "11", "--out", events], check=True,
                   capture_output=True)
    rows = [line.split(",") for line in events.read_text().splitlines()[1:]]
    category = {item: cat for _, _, item, _, cat in rows}
    taste, counts = {}, {}
    for _, user, item, kind, cat in rows:
        if kind != "IMPRESSION":
            taste.setdefault(user, {}).setdefault(cat, 0)
            taste[user][cat] += 1
            counts[item] = counts.get(item, 0) + 1
    main = {u: max(c, key=c.get) for u, c in taste.items()}
    popular = sorted(counts, key=counts.get, reverse=True)[:20]

    daemon.start()
    subprocess.run([STREAMREC, "produce", "--brokers", daemon.broker.bootstrap, "--topic",
                    daemon.events, "--file", events, "--rate", "0"], check=True,
                   capture_output=True)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 60000, 120)
    settled(daemon)
    latest = {user: items for user, (_, items) in latest_lists(daemon, 15000).items()}
    users = [u for u in latest if u in main]
    assert len(users) > 300, f"lists for only {len(users)} users"

    def match(lists):
        hits = sum(sum(category.get(i) == main[u] for i in items) for u, items in lists)
        return hits / sum(len(items) for _, items in lists)

    ours = match([(u, latest[u]) for u in users])
    baseline = match([(u, popular) for u in users])
    print(f"share of listed items in the user's taste cluster: {ours:.3f} vs popularity {baseline:.3f}")
    assert ours > 1.5 * baseline and ours > 0.3, (ours, baseline)
    assert daemon.stop() == 0


def test_out_of_stock_and_retired_items_never_appear(daemon):
    """The catalogue (compacted items topic): an item out of stock, or
    retired by a tombstone, leaves every list at the next refresh."""
    daemon.start()
    daemon.produce(4000, users=200, items=50)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 4000)

    def lists():
        return {user: items for user, (_, items) in latest_lists(daemon).items()}

    before = lists()
    assert any("item-0" in items for items in before.values())
    # item-0 (the most popular) out of stock; item-1 retired
    from kafka_send import send_item_events
    send_item_events(daemon.broker.bootstrap, daemon.items, [("item-0", False), ("item-1", None)])
    time.sleep(2)
    daemon.produce(2000, users=200, items=50, seed=4)  # every user refreshed again
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 6000)
    time.sleep(2)
    after = lists()
    refreshed = [u for u in after if after[u] != before.get(u)]
    assert len(refreshed) > 100
    for user in refreshed:
        assert "item-0" not in after[user] and "item-1" not in after[user], after[user]
    assert daemon.stop() == 0


def item_lists(daemon):
    """user -> [item ids] of the newest list on the recommendations topic."""
    return {user: items for user, (_, items) in latest_lists(daemon).items()}


def refreshed_lists_naming(daemon, before, item):
    """The users whose newest list changed since `before` (more than 100 of
    them must have) and still names item."""
    after = item_lists(daemon)
    refreshed = [u for u in after if after[u] != before.get(u)]
    assert len(refreshed) > 100
    return [u for u in refreshed if item in after[u]]


def test_the_catalogue_is_re_read_whatever_the_consumer_offset_reset(daemon):
    """The catalogue is read from its start at every start, whatever
    kafka.consumer.auto.offset.reset says (the [kafka.consumer] keys apply to
    the catalogue's consumer too). With "latest" the restarted daemon read
    none of it, and an out-of-stock item came back into the lists."""
    daemon.add_config("[kafka.consumer]\nauto.offset.reset = latest\n")
    daemon.start()
    daemon.produce(3000, users=200, items=50)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 3000)
    from kafka_send import send_item_events
    send_item_events(daemon.broker.bootstrap, daemon.items, [("item-0", False)])
    time.sleep(2)
    assert daemon.stop() == 0

    before = item_lists(daemon)
    assert any("item-0" in items for items in before.values())
    daemon.start()
    assert daemon.wait_for(lambda: daemon.metric("streamrec_catalogue_records_total") >= 1), \
        daemon.logtext()
    daemon.produce(3000, users=200, items=50, seed=4)  # every user refreshed again
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 3000)
    time.sleep(3)
    holding = refreshed_lists_naming(daemon, before, "item-0")
    assert holding == [], f"{len(holding)} refreshed lists name the out-of-stock item-0"
    assert daemon.stop() == 0


def test_lists_wait_at_the_start_for_the_catalogue_to_be_read(daemon):
    """After a restart the catalogue is read again from its start; until it
    was read to its end no list is made, so an item an earlier run saw go out
    of stock is never listed by the events that arrive first. Lists were
    made at once, and named it until the catalogue caught up."""
    daemon.start()
    daemon.produce(3000, users=200, items=50)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 3000)
    from kafka_send import send_item_events
    send_item_events(daemon.broker.bootstrap, daemon.items,
                     [(f"filler-{k}", True) for k in range(20000)] + [("item-0", False)])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_catalogue_records_total") >= 20001)
    assert daemon.stop() == 0

    before = item_lists(daemon)
    assert any("item-0" in items for items in before.values()), daemon.logtext()
    daemon.start()
    daemon.produce(3000, users=200, items=50, seed=4)  # at once: every user due again
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 3000)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_catalogue_loading") == 0)
    time.sleep(3)
    assert "catalogue read to its end: 20001 records" in daemon.logtext(), daemon.logtext()
    holding = refreshed_lists_naming(daemon, before, "item-0")
    assert holding == [], f"{len(holding)} refreshed lists name the out-of-stock item-0"
    assert daemon.stop() == 0


def test_lists_do_not_wait_for_a_catalogue_topic_that_does_not_exist(daemon):
    """input.items_topic defaults to "items": where that topic does not exist
    there is no catalogue to wait for, and lists are made at once (the kafka
    warning names the topic), not after the wait's 60 s bound."""
    text = daemon.config.read_text()
    daemon.config.write_text(text.replace(f"items_topic = {daemon.items}",
                                          f"items_topic = {daemon.items}.absent"))
    daemon.start()
    daemon.produce(300, users=50)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_catalogue_loading") == 0, 20), \
        daemon.logtext()
    assert daemon.wait_for(lambda: len(latest_lists(daemon, 3000)) >= 40, 20)
    assert f"Subscribed topic not available: {daemon.items}.absent" in daemon.logtext()
    assert "catalogue read to its end: 0 records" in daemon.logtext()
    assert daemon.stop() == 0


def test_new_items_start_at_their_category_mean(daemon):
    """An item the catalogue names in a known category, before anyone has
    touched it, starts from the mean vector of that category's learned items."""
    daemon.start()
    daemon.produce(4000, users=200, items=50)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 4000)
    from kafka_send import send_item_events
    shoes = [f"item-{i}" for i in range(10)]
    send_item_events(daemon.broker.bootstrap, daemon.items,
                     [(i, True, "shoes") for i in shoes] + [("item-new", True, "shoes"),
                                                            ("item-lone", True, "hats")])
    time.sleep(3)
    assert daemon.stop() == 0

    def vector(item):
        out = subprocess.run([STREAMREC, "inspect", "--state", daemon.dir / "state", "--item",
                              item], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        count = int(re.search(r"count (\d+)", out.stdout).group(1))
        q = [float(x) for x in out.stdout.split("q =")[1].split()]
        return count, q

    learned = [vector(i) for i in shoes]
    assert all(count > 0 for count, _ in learned)
    mean = [sum(q[k] for _, q in learned) / len(learned) for k in range(len(learned[0][1]))]
    count, fresh = vector("item-new")
    assert count == 0
    assert max(abs(a - b) for a, b in zip(fresh, mean)) < 0.002, (fresh, mean)
    # a category with nothing learned in it leaves the random start: far from that mean
    _, lone = vector("item-lone")
    assert max(abs(a - b) for a, b in zip(lone, mean)) > 0.01


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
def test_metrics_are_valid_prometheus_exposition(daemon):
    """/metrics, with every kind of series filled in (an A/B experiment's too),
    passes promtool's parser and linter."""
    daemon.add_config(AB_VARIANTS)
    daemon.start()
    daemon.produce(2000, users=100, items=50)
    send_raw(daemon.broker.bootstrap, daemon.events, [b"garbage", b"\x00\x00\x00\x00\x07xx"])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2000
                           and daemon.metric("streamrec_dlq_messages_total") >= 2)
    assert daemon.wait_for(
        lambda: "streamrec_experiment_conversion_rate{" in daemon.get("/metrics")[1])
    status, body = daemon.get("/metrics")
    assert status == 200
    for family in ("streamrec_freshness_seconds_bucket", "streamrec_consumer_lag",
                   "streamrec_invalid_events_total", "streamrec_experiment_conversion_rate{",
                   "streamrec_experiment_conversion_rate_upper{",
                   "# TYPE streamrec_experiment_uplift gauge",
                   "streamrec_experiment_control{", "streamrec_experiment_alpha "):
        assert family in body, family
    out = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip() == "" and out.stderr.strip() == "", \
        out.stdout + out.stderr
    # promtool can fail: a broken exposition is refused
    broken = subprocess.run(["promtool", "check", "metrics"], input=body.replace(" ", "", 20),
                            capture_output=True, text=True)
    assert broken.returncode != 0
    assert daemon.stop() == 0


def test_sigusr1_takes_a_checkpoint_while_running(daemon):
    daemon.start()
    daemon.produce(1500)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 1500)
    daemon.process.send_signal(signal.SIGUSR1)
    checkpoints = daemon.dir / "state.checkpoints"
    assert daemon.wait_for(lambda: "checkpoint written" in daemon.logtext(), 30), daemon.logtext()
    assert daemon.ready()
    [copy] = list(checkpoints.iterdir())
    # the copy opens as a state of its own, with the model learned so far
    out = subprocess.run([STREAMREC, "digest", "--state", copy], capture_output=True, text=True)
    assert out.returncode == 0 and "digest" in out.stdout, out.stderr
    assert daemon.stop() == 0


def test_items_need_min_item_events_before_they_are_listed(daemon):
    daemon.add_config("[refresh]\nmin_item_events = 40\n")
    daemon.start()
    daemon.produce(3000, users=100, items=400)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 3000)
    counts = {}
    events = subprocess.run([STREAMREC, "tail", "--brokers", daemon.broker.bootstrap, "--topic",
                             daemon.events, "--from-beginning", "--until-end", "--timeout-ms",
                             "60000"], capture_output=True, text=True)
    assert events.returncode == 0, events.stderr  # the whole topic was read
    for line in events.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "item" in fields and not line.split()[1].startswith("IMPRESSION"):
            counts[fields["item"]] = counts.get(fields["item"], 0) + 1
    # the lists catch up with the events: read until one names an item
    listed = set()
    assert daemon.wait_for(lambda: listed.update(
        item for _, items in all_lists(daemon) for item, _ in items) or listed, 60)
    # an item listed at any time had reached 40 positive events by then: at the end, surely
    assert all(counts.get(item, 0) >= 40 for item in listed), \
        sorted((counts.get(i, 0), i) for i in listed)[:5]
    assert daemon.stop() == 0


def test_users_metric_counts_the_distinct_users(daemon):
    """streamrec_users is the number of users the state knows: 7 users, 3 events each."""
    users = [f"u-count-{i}" for i in range(7)]
    daemon.start()
    send_raw(daemon.broker.bootstrap, daemon.events,
             [user_event(u, item=f"item-{k}") for k in range(3) for u in users])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 21), \
        daemon.logtext()
    assert daemon.wait_for(lambda: daemon.metric("streamrec_users") == 7, timeout=15), \
        daemon.metric("streamrec_users")
    # what the commits wrote, by store family: each user's and item's row at least once
    assert daemon.wait_for(lambda: daemon.series("streamrec_state_written_rows_total").get(
        '{family="user"}', 0) >= 7 and daemon.series("streamrec_state_written_rows_total").get(
        '{family="item"}', 0) >= 3, timeout=15), daemon.get("/metrics")[1][-3000:]
    written = daemon.series("streamrec_state_written_bytes_total")
    rows = daemon.series("streamrec_state_written_rows_total")
    assert set(written) == set(rows) and '{family="meta"}' in rows
    # a user row holds at least its vector (dim floats) beside its 5-byte key
    assert written['{family="user"}'] >= rows['{family="user"}'] * (5 + 4 * 8)
    assert daemon.stop() == 0


def test_idle_http_clients_neither_blind_metrics_nor_stay_open(daemon):
    """300 idle connections (more than the limit of 256): /metrics and /readyz
    still answer; an idle connection is closed after http.idle_timeout_ms."""
    daemon.config.write_text(daemon.config.read_text().replace(
        "[http]\n", "[http]\nidle_timeout_ms = 1s\n"))
    daemon.start()
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=5))
        status, body = daemon.get("/metrics")
        assert status == 200 and "streamrec_ready 1" in body
        assert daemon.get("/readyz")[0] == 200
        # far below the default of 10 s: the configured timeout closes it
        late = socket.create_connection(("127.0.0.1", daemon.port), timeout=6)
        idle.append(late)
        assert late.recv(16) == b""
    finally:
        for s in idle:
            s.close()
    assert daemon.stop() == 0


def test_dead_letter_log_lines_are_rate_limited_and_summarised(daemon):
    """2,000 bad messages: the metric counts each, the log has one line for the
    reason and a summary naming how many more were suppressed."""
    daemon.start()
    send_raw(daemon.broker.bootstrap, daemon.events, [b"\x01garbage"] * 2000)
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_invalid_events_total{reason="malformed"}') == 2000), \
        daemon.logtext()
    log = daemon.dir / "streamrecd.log"
    summary = re.compile(r"(\d+) more malformed suppressed")
    assert daemon.wait_for(lambda: summary.search(log.read_text()), timeout=30), daemon.logtext()
    lines = [l for l in log.read_text().splitlines() if "malformed" in l]
    assert len(lines) <= 6, lines[:10]
    suppressed = sum(int(m.group(1)) for l in lines for m in [summary.search(l)] if m)
    assert suppressed + sum(1 for l in lines if not summary.search(l)) == 2000, lines
    assert daemon.stop() == 0


def test_librdkafka_log_lines_carry_the_syslog_prefix(kafka_broker, tmp_path):
    """With no broker at the bootstrap address, librdkafka complains; each of
    its lines reaches stderr through the daemon's logger, with a <N> prefix."""
    port = free_port()
    config = tmp_path / "streamrecd.conf"
    config.write_text(f"""
[state]
dir = {tmp_path / 'state'}
[http]
listen = 127.0.0.1:{free_port()}
[kafka]
bootstrap.servers = 127.0.0.1:{port}
""")
    with open(tmp_path / "stderr", "w") as err:
        process = subprocess.Popen([STREAMRECD, "--config", config], stdout=subprocess.DEVNULL,
                                   stderr=err)
        try:
            time.sleep(4)
        finally:
            process.kill()
            process.wait()
    lines = [l for l in (tmp_path / "stderr").read_text().splitlines() if l.strip()]
    assert any(f"127.0.0.1:{port}" in l for l in lines), lines  # librdkafka did speak
    assert all(re.match(r"<[0-7]>", l) for l in lines), \
        [l for l in lines if not re.match(r"<[0-7]>", l)][:5]


def test_status_marks_freshness_beyond_the_last_bucket_as_clipped(daemon, tmp_path):
    """Events two minutes old give lists staler than the histogram's 60 s top
    bound: /status.json reports null and clipped, live and in the history; the
    page shows "> 60 s" in the table and a marker on the p99 chart's top edge,
    never a number. Screenshot: build/artifacts/status-clipped.png."""
    import json
    from test_dashboards import chromium
    # two minutes old would be catch-up (refresh.catch_up_threshold_ms), not freshness
    daemon.add_config("[refresh]\ncatch_up_threshold_ms = 0\n")
    daemon.start()
    old = int(time.time() * 1000) - 120000
    send_raw(daemon.broker.bootstrap, daemon.events,
             [user_event(f"u-old-{i}", item=f"item-{i % 3}", ts=old) for i in range(20)])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_freshness_seconds_count") >= 1), \
        daemon.logtext()
    # the status page's figures follow the metrics at their own step: wait for them
    assert daemon.wait_for(
        lambda: json.loads(daemon.get("/status.json")[1])["variants"][0]["lists"] > 0), \
        daemon.get("/status.json")[1]
    status, body = daemon.get("/status.json")
    v = json.loads(body)["variants"][0]
    assert v["p99_ms"] is None and v["p99_clipped"] is True, v
    # the history's step under way is clipped too: null, never the bound
    points = [p["variants"][0] for p in json.loads(body)["history"]["points"]
              if p["variants"][0]["lists"] > 0]
    assert points and all(p["p99_ms"] is None and p["p99_clipped"] for p in points), points
    url = f"http://127.0.0.1:{daemon.port}/status"
    dom = chromium(tmp_path, url, "--dump-dom")
    row = re.search(r'<tr[^>]*data-variant="model"[^>]*>(.*?)</tr>', dom, re.S)
    assert row, dom[-2000:]
    assert re.search(r'class="p99"[^>]*>&gt; 60 s<', row.group(1)), row.group(1)
    # the p99 chart marks the point on its top edge, labelled "> 60 s", and draws no value
    chart = re.search(r'<svg[^>]*data-key="p99"[^>]*>(.*?)</svg>', dom, re.S)
    assert chart, dom[-3000:]
    assert re.search(r'<path[^>]*class="clipped"', chart.group(1)), chart.group(1)
    assert not re.search(r'<circle[^>]*class="point"', chart.group(1)), chart.group(1)
    assert re.search(r'class="clip-label"[^>]*>\u25b2 &gt; 60 s<', chart.group(1)), chart.group(1)
    assert not re.search(r"60000|>\s*60(\.0)? s<", chart.group(1)), chart.group(1)
    # one variant: no experiment, its section stays hidden
    assert re.search(r'<section id="experiment"[^>]*hidden', dom), dom[-3000:]
    from test_dashboards import ARTIFACTS
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "status-clipped.png"
    screenshot.unlink(missing_ok=True)
    chromium(tmp_path, url, f"--screenshot={screenshot}", "--window-size=1400,1100")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert daemon.stop() == 0
def wipe_and_restart(daemon, on_empty=None):
    """Learns 600 events, stops, wipes the state and starts again (optionally
    with state.on_empty set): @returns the events the new state learned."""
    daemon.start()
    daemon.produce(600)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 600)
    assert daemon.stop() == 0, daemon.logtext()  # offsets are committed to the group too
    shutil.rmtree(daemon.dir / "state")
    if on_empty is not None:
        daemon.config.write_text(daemon.config.read_text().replace(
            "commit_interval_ms = 500ms", f"commit_interval_ms = 500ms\non_empty = {on_empty}"))
    daemon.start()
    learned = settled(daemon)
    assert daemon.stop() == 0, daemon.logtext()
    return learned


def test_a_wiped_state_relearns_the_retained_topic_by_default(daemon):
    """An empty state holds no offset: by default (state.on_empty = earliest)
    it replays the topic from its start, not from the group's commit."""
    assert wipe_and_restart(daemon) == 600


def test_a_wiped_state_may_resume_at_the_group_commit(daemon):
    assert wipe_and_restart(daemon, "committed") == 0
def test_lag_of_a_caught_up_daemon_is_zero_between_commits(daemon):
    """Issue 11, defect 5: streamrec_consumer_lag is measured from the
    consumer's position, so a daemon that has learned everything reads 0 on
    every partition even while its last Kafka commit is far behind; how far
    behind the commit is shows as streamrec_consumer_committed_lag."""
    daemon.start()
    daemon.produce(600)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_events_total") >= 600)
    time.sleep(1.5)  # a few 500 ms commits: the group has a committed offset now
    daemon.config.write_text(daemon.config.read_text().replace("commit_interval_ms = 500ms",
                                                               "commit_interval_ms = 10m"))
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.wait_for(lambda: "state.commit_interval_ms" in daemon.logtext())
    daemon.produce(1500, seed=2)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_events_total") >= 2100)
    events = f'{{topic="{daemon.events}",'

    def lags(name):
        return {k: v for k, v in daemon.series(name).items() if k.startswith(events)}

    # caught up: nothing between the position and the high watermark, while the
    # second batch is learned but not committed to Kafka (the next commit is 10 minutes off)
    def caught_up_between_commits():
        position = lags("streamrec_consumer_lag")
        committed = lags("streamrec_consumer_committed_lag")
        return (len(position) == 3 and all(v == 0 for v in position.values())
                and len(committed) == 3 and sum(committed.values()) == 1500)
    assert daemon.wait_for(caught_up_between_commits, timeout=15), \
        (lags("streamrec_consumer_lag"), lags("streamrec_consumer_committed_lag"))
    assert daemon.stop() == 0


def test_confluent_framed_events_are_learned(daemon):
    """Issue 11, defect 7: events framed the Confluent way by `streamrec
    produce --framing confluent` (schema id 1) are learned by default, not
    dead-lettered as unknown_schema_id."""
    daemon.start()
    daemon.produce(1000, framing="confluent")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 1000,
                           timeout=30), daemon.logtext()
    assert daemon.metric("streamrec_dlq_messages_total") == 0
    # lists follow once the catalogue is read (the start's wait for it)
    assert daemon.wait_for(lambda: latest_lists(daemon, 3000))
    assert daemon.stop() == 0


def test_confluent_framed_output_reads_back(daemon, tmp_path):
    """output.framing = confluent writes magic byte 0, the 4-byte big-endian
    output.schema_id and the Avro body; `streamrec tail` reads it back with
    the Recommendation schema registered under that id; input.schema_dir
    registers writer schemas by <id>.avsc."""
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    shutil.copy(pathlib.Path(__file__).parent.parent / "schemas" / "user_event.avsc",
                schemas / "42.avsc")
    shutil.copy(pathlib.Path(__file__).parent.parent / "schemas" / "recommendation.avsc",
                schemas / "5.avsc")
    daemon.config.write_text(daemon.config.read_text().replace(
        f"[output]\ntopic = {daemon.recs}\n",
        f"[output]\ntopic = {daemon.recs}\nframing = confluent\nschema_id = 5\n").replace(
        "[input]\n", f"[input]\nschema_dir = {schemas}\n"))
    daemon.start()
    subprocess.run([STREAMREC, "produce", "--brokers", daemon.broker.bootstrap, "--topic",
                    daemon.events, "--count", "500", "--users", "100", "--framing",
                    "confluent", "--schema-id", "42"], check=True, capture_output=True)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 500,
                           timeout=30), daemon.logtext()
    out = subprocess.run([BUILD / "tests" / "kafka_read", daemon.broker.bootstrap, daemon.recs,
                          "20", "20000"], capture_output=True, text=True)
    values = [dict(f.split("=", 1) for f in line.split())["value"]
              for line in out.stdout.splitlines()]
    assert len(values) == 20, out.stderr
    assert all(v.startswith("00" + (5).to_bytes(4, "big").hex()) for v in values), values[:3]
    out = subprocess.run([STREAMREC, "tail", "--brokers", daemon.broker.bootstrap, "--kind",
                          "recs", "--topic", daemon.recs, "--from-beginning", "--count", "20",
                          "--schema-dir", schemas, "--timeout-ms", "20000"],
                         capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 20 and all(l.startswith("user=") and "items=item-" in l
                                    for l in lines), out.stdout + out.stderr
    assert daemon.stop() == 0


def test_log_level_filters_lines_and_reloads(daemon):
    """log.level drops less severe lines, and SIGHUP changes it at once (it was
    documented as reloadable and read by nothing)."""
    daemon.add_config("[log]\nlevel = warning\n")
    daemon.start()
    daemon.produce(200)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 200)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") >= 2)
    text = daemon.logtext()
    assert "<6>" not in text and "<7>" not in text, text
    daemon.config.write_text(daemon.config.read_text().replace("level = warning", "level = debug"))
    daemon.process.send_signal(signal.SIGHUP)
    # the reload notice itself is written at the new level, then the commits' debug lines
    assert daemon.wait_for(lambda: "<7>streamrecd: commit" in daemon.logtext(), 30), \
        daemon.logtext()
    assert "log.level: warning -> debug" in daemon.logtext()
    assert daemon.stop() == 0
def topic_config(broker, topic, *settings):
    """Sets a topic's configuration (e.g. max.message.bytes=64)."""
    subprocess.run([BUILD / "tests" / "kafka_topic_config", broker.bootstrap, topic, *settings],
                   check=True, capture_output=True, timeout=60)


def read_topic(broker, topic, count, timeout_ms=30000):
    """The messages of a topic as dicts of kafka_read's fields (hex key/value, headers)."""
    out = subprocess.run([BUILD / "tests" / "kafka_read", broker.bootstrap, topic, str(count),
                          str(timeout_ms)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [dict(f.split("=", 1) for f in line.split()) for line in out.stdout.splitlines()]


def test_oversized_bad_input_is_kept_truncated_in_the_dead_letter_topic(daemon):
    """A malformed event above the producer's message.max.bytes (1.2 MB) and
    one just under it (990 kB) both reach the dead-letter topic: cut to fit
    where needed, with headers saying so, the original size and where it came
    from. The good events around them are applied exactly once."""
    topic_config(daemon.broker, daemon.events, "max.message.bytes=4000000")
    big = b"\x01" + os.urandom(1_200_000)
    near = b"\x01" + os.urandom(990_000)
    daemon.start()
    daemon.produce(500)
    send_raw(daemon.broker.bootstrap, daemon.events, [big, near])
    daemon.produce(500, seed=2)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 1000), \
        daemon.logtext()
    letters = read_topic(daemon.broker, daemon.dlq, 2)
    by_size = {int(l.get("header.streamrec.original.size", len(l["value"]) // 2)): l
               for l in letters}
    assert sorted(by_size) == sorted([len(big), len(near)]), by_size.keys()
    for original in (big, near):
        letter = by_size[len(original)]
        kept = bytes.fromhex(letter["value"])
        assert letter["header.streamrec.reason"] == "malformed"
        assert letter["header.streamrec.source.topic"] == daemon.events
        assert letter["header.streamrec.source.partition"] in ("0", "1", "2")
        assert int(letter["header.streamrec.source.offset"]) >= 0
        assert original.startswith(kept) and len(kept) > 0
        if len(kept) < len(original):
            assert letter["header.streamrec.truncated"] == "true"
            assert letter["header.streamrec.original.size"] == str(len(original))
    assert len(bytes.fromhex(by_size[len(big)]["value"])) < 1_000_000
    assert daemon.metric("streamrec_dlq_messages_total") == 2
    assert daemon.metric('streamrec_invalid_events_total{reason="malformed"}') == 2
    assert settled(daemon) == 1000  # good ones all applied, once
    assert daemon.stop() == 0


def test_a_refused_dead_letter_stops_the_daemon_before_its_offset_moves(kafka_broker,
                                                                        tmp_path):
    """When the dead-letter topic refuses every message, the daemon stops with
    a clear error and a non-zero exit, and never stores an offset past the bad
    message: restarted once the topic takes it, it dead-letters the message,
    and its model equals that of a daemon that never had trouble (every good
    event applied exactly once)."""
    steady = Daemon(kafka_broker, tmp_path, "dlqsteady", partitions=1)
    stuck = Daemon(kafka_broker, tmp_path, "dlqstuck", partitions=1)
    stuck.config.write_text(stuck.config.read_text().replace(f"topic = {stuck.events}",
                                                             f"topic = {steady.events}"))
    topic_config(kafka_broker, stuck.dlq, "max.message.bytes=64")
    try:
        steady.start()
        stuck.start()
        steady.produce(300)
        send_raw(kafka_broker.bootstrap, steady.events, [b"\x01garbage"])
        steady.produce(300, seed=2)
        code = stuck.process.wait(timeout=120)
        stuck.log.close()
        log = stuck.logtext()
        assert code > 0, (code, log)
        assert re.search(re.escape(steady.events) +
                         r"\[0\]@300: dead.letter (not delivered|send failed)", log), log
        topic_config(kafka_broker, stuck.dlq, "max.message.bytes=1000000")
        stuck.start()
        letters = read_topic(kafka_broker, stuck.dlq, 1)
        assert letters[0]["value"] == b"\x01garbage".hex()
        assert letters[0]["header.streamrec.source.offset"] == "300"
        assert steady.wait_for(lambda: steady.metric("streamrec_updates_total") >= 600)
        settled(stuck)
        assert steady.stop() == 0
        assert stuck.stop() == 0
        digests = [subprocess.run([STREAMREC, "digest", "--state", d.dir / "state"],
                                  check=True, capture_output=True, text=True).stdout
                   for d in (steady, stuck)]
        assert digests[0] == digests[1], digests
    finally:
        for d in (steady, stuck):
            if d.process is not None and d.process.poll() is None:
                d.process.kill()


# Runs streamrecd with its state on a small tmpfs filled to about 1.5 MiB free
# (in a private mount namespace), then copies the state out, whatever the
# exit, and prints the daemon's return code (negative: killed by that signal).
FULL_DISK_RUNNER = """
import os, shutil, subprocess, sys
mount_point, daemon, config, log, copy = sys.argv[1:6]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mount_point], check=True)
vfs = os.statvfs(mount_point)
with open(os.path.join(mount_point, "ballast"), "wb") as ballast:
    ballast.write(bytes(vfs.f_bavail * vfs.f_frsize - (3 << 20) // 2))
with open(log, "a") as out:
    code = subprocess.run([daemon, "--config", config], stdout=out, stderr=out).returncode
shutil.copytree(os.path.join(mount_point, "state"), copy)
print(code)
"""


def test_a_full_disk_with_the_rocksdb_log_on_it_exits_cleanly(kafka_broker, tmp_path):
    """The state directory, RocksDB's info LOG included (no state.log_dir),
    fills up while events flow: the daemon exits non-zero by itself, not by
    a signal (RocksDB 7.8.3 asserts on a LOG write after a failed one), and
    names the write failure; restarted on a disk with room, it resumes with
    every event applied exactly once (its model equals an undisturbed one's)."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no private mount namespace here: cannot make a full disk")
    steady = Daemon(kafka_broker, tmp_path, "fullsteady", partitions=1)
    full = Daemon(kafka_broker, tmp_path, "fulldisk", partitions=1)
    mount_point = tmp_path / "fulldisk-tmpfs"
    mount_point.mkdir()
    text = full.config.read_text().replace(f"topic = {full.events}", f"topic = {steady.events}")
    full.config.write_text(text.replace(str(full.dir / "state"), str(mount_point / "state")))
    try:
        steady.start()
        runner = subprocess.Popen(
            ["unshare", "-rm", sys.executable, "-c", FULL_DISK_RUNNER, mount_point, STREAMRECD,
             full.config, full.dir / "streamrecd.log", full.dir / "state"],
            stdout=subprocess.PIPE, text=True)
        producer = subprocess.Popen([STREAMREC, "produce", "--brokers", kafka_broker.bootstrap,
                                     "--topic", steady.events, "--count", "40000", "--rate",
                                     "4000", "--users", "2000", "--items", "1000"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out, _ = runner.communicate(timeout=300)
        assert runner.returncode == 0, out
        code = int(out.split()[-1])
        log = full.logtext()
        assert code > 0, (code, log)  # an exit, not a signal
        assert re.search(r"No space left on device", log), log
        # restart with the state on the real disk, where there is room
        full.config.write_text(text)
        full.start()
        assert producer.wait(timeout=120) == 0
        assert steady.wait_for(lambda: steady.metric("streamrec_updates_total") >= 40000, 120)
        settled(full)
        assert steady.stop() == 0
        assert full.stop() == 0
        digests = [subprocess.run([STREAMREC, "digest", "--state", d.dir / "state"],
                                  check=True, capture_output=True, text=True).stdout
                   for d in (steady, full)]
        assert digests[0] == digests[1], digests
    finally:
        for d in (steady, full):
            if d.process is not None and d.process.poll() is None:
                d.process.kill()
def all_lists(daemon, timeout_ms=60000):
    """Every list on the recommendations topic: (user, [(item id, score text)])."""
    out = subprocess.run([STREAMREC, "tail", "--brokers", daemon.broker.bootstrap, "--kind",
                          "recs", "--topic", daemon.recs, "--from-beginning", "--until-end",
                          "--timeout-ms", str(timeout_ms)], capture_output=True, text=True)
    lists = []
    for line in out.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "user" in fields and "items" in fields:
            lists.append((fields["user"], [tuple(i.rsplit(":", 1)) for i in
                                           fields["items"].split(",") if i]))
    return lists


@pytest.mark.parametrize("cache", ["[state]\nuser_cache_users = 16\n",
                                   "[state]\nuser_cache_bytes = 4kb\n"],
                         ids=["16", "4kb"])
def test_cache_never_lists_other_users(daemon, cache):
    """Issue 11: with a user cache smaller than a refresh batch, a batch's
    users must stay in memory while their lists are computed. 300 users
    each buy 4 items of their own; once everything is learned and
    refreshed, no user's newest list holds an item that user bought, and
    users with different histories never get the same list."""
    daemon.add_config(f"{cache}[refresh]\nbatch = 256\nshadow_share = 1\n"
                      "shadow_budget = 1\n")
    users = [f"user-{u}" for u in range(300)]
    bought = {user: {f"item-{(u * p + p * p) % 40}" for p in (1, 3, 7, 11)}
              for u, user in enumerate(users)}
    start = int(time.time() * 1000) - 60000

    def purchase(user, item, event_id, ts):
        body = (avro_string(event_id) + avro_string(user) + avro_string(item) + avro_long(6)
                + avro_long(ts) + avro_long(0) + avro_long(0) + avro_long(0))
        return f"key={user.encode().hex()} {body.hex()}"

    lines = [purchase(user, sorted(bought[user])[round_ % len(bought[user])],
                      f"ev-{user}-{round_}", start + round_)
             for round_ in range(4) for user in users]
    daemon.start()
    # in two waves, the second once lists are out: rows then move after the
    # index engine built its index over them (sent at once, a loaded machine
    # learned every event before the first round, and no row moved after)
    half = len(lines) // 2
    for wave in (lines[:half], lines[half:]):
        subprocess.run([BUILD / "tests" / "kafka_send", daemon.broker.bootstrap, daemon.events],
                       input="".join(l + "\n" for l in wave).encode(), check=True,
                       capture_output=True)
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= half), \
            daemon.logtext()
        assert daemon.wait_for(lambda: daemon.metric("streamrec_recommendations_total") > 0), \
            daemon.logtext()
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= len(lines)), \
        daemon.logtext()
    # then a trickle, each part learned and refreshed before the next is sent:
    # rows moved by a step or two since the index last placed them, so some
    # keep their cell unscored however far the waves above moved them
    sent = len(lines)
    for part in range(4):
        trickle = [purchase(user, sorted(bought[user])[0], f"ev-{user}-trickle", start + 4) + "\n"
                   for user in users[part * 10:part * 10 + 10]]
        published = daemon.metric("streamrec_recommendations_total")
        subprocess.run([BUILD / "tests" / "kafka_send", daemon.broker.bootstrap, daemon.events],
                       input="".join(trickle).encode(), check=True, capture_output=True)
        sent += len(trickle)
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= sent), \
            daemon.logtext()
        assert daemon.wait_for(
            lambda: daemon.metric("streamrec_recommendations_total") >= published + 10), \
            daemon.logtext()
    # every queued user refreshed: the published count stops moving
    last, since, deadline = -1, time.time(), time.time() + 60
    while time.time() - since < 3 and time.time() < deadline:
        now = daemon.metric("streamrec_recommendations_total")
        if now != last:
            last, since = now, time.time()
        time.sleep(0.3)
    latest = {}
    for user, items in all_lists(daemon):
        latest[user] = items
    assert sorted(latest) == sorted(users), daemon.logtext()
    leaks = {user: sorted(bought[user] & {i for i, _ in items}) for user, items in latest.items()
             if bought[user] & {i for i, _ in items}}
    assert not leaks, f"{len(leaks)} users were listed items they bought, e.g. " \
                      f"{sorted(leaks.items())[:3]}"
    copies = {}
    for user, items in latest.items():
        copies.setdefault(tuple(items), []).append(user)
    shared = [group for group in copies.values()
              if len({frozenset(bought[u]) for u in group}) > 1]
    assert not shared, f"{len(shared)} lists were published to users with different " \
                       f"histories, e.g. {shared[:2]}"
    if daemon.engine == "index":
        # the index engine: its recall against the exact engine is measured and shown
        import json
        recall = daemon.metric("streamrec_index_recall")
        assert 0.5 <= recall <= 1.0, recall
        assert daemon.metric("streamrec_index_shadow_lists_total") >= 300
        # the worker time of the searches and of the shadow is counted
        assert daemon.metric("streamrec_index_search_seconds_total") > 0
        assert daemon.metric("streamrec_index_shadow_seconds_total") > 0
        # the cells probed a list: where the measured recall put them, 1 to 64
        nprobe = daemon.metric("streamrec_index_nprobe")
        assert 1 <= nprobe <= 64 and nprobe == int(nprobe), nprobe
        shown = json.loads(daemon.get("/status.json")[1])["variants"][0]["index_recall"]
        assert shown is not None and 0.5 <= shown <= 1.0
        assert daemon.metric("streamrec_index_trainings_total") >= 1
        # learning moved rows and the index placed them again, many without a scoring
        updates = daemon.metric("streamrec_index_row_updates_total")
        kept = daemon.metric("streamrec_index_rows_kept_total")
        assert updates >= 20 and 0 < kept < updates, (updates, kept)
        # at rest every moved row is placed: none left waiting (only overload defers them)
        assert daemon.metric("streamrec_index_rows_pending") == 0
        # what a list costs: the items the index scored for its lists, and those lists
        lists = daemon.metric("streamrec_index_lists_total")
        scored = daemon.metric("streamrec_index_candidates_total")
        assert lists >= 1 and lists <= daemon.metric("streamrec_recommendations_total")
        assert lists <= scored, (lists, scored)
    assert daemon.stop() == 0
    if daemon.engine == "index":
        # restarted, it builds the index before it is ready, not in its first round's time
        daemon.start()
        assert daemon.metric("streamrec_index_trainings_total") == 1, daemon.logtext()
        assert daemon.metric("streamrec_recommendations_total") == 0
        restart = daemon.logtext().rsplit("item index over", 1)
        assert len(restart) == 2 and "running:" in restart[1], daemon.logtext()
        assert re.match(r" \d+ items built in [0-9.]+ s: \d+ cells, the largest of \d+ items",
                        restart[1]), restart[1][:200]
        assert daemon.stop() == 0


def test_rounds_grow_while_learning_is_behind(daemon):
    """refresh.batch_behind: with a backlog waiting at the start, learning is
    behind its input and a round takes up to batch_behind users; once it keeps
    up, rounds take refresh.batch again (streamrec_refresh_round_limit)."""
    # backlog_ms 0: rounds grow only while learning is behind (what this test checks)
    daemon.add_config("[refresh]\nbatch = 8\nbatch_behind = 512\nbacklog_ms = 0\n")
    daemon.produce(200000, users=50000, items=2000)
    daemon.start()
    limits, deadline = set(), time.time() + 180
    while time.time() < deadline and daemon.metric("streamrec_updates_total") < 200000:
        limits.add(daemon.metric("streamrec_refresh_round_limit"))
        time.sleep(0.05)
    assert daemon.metric("streamrec_updates_total") >= 200000, daemon.logtext()
    assert 512 in limits, (limits, daemon.logtext())
    # caught up: a trickle of new users' events, each part once the last was listed
    for part in range(3):
        published = daemon.metric("streamrec_recommendations_total")
        send_raw(daemon.broker.bootstrap, daemon.events,
                 [user_event(f"late-{part}-{u}", f"item-{u}") for u in range(5)])
        assert daemon.wait_for(
            lambda: daemon.metric("streamrec_recommendations_total") >= published + 5), \
            daemon.logtext()
    assert daemon.metric("streamrec_refresh_round_limit") == 8
    assert daemon.stop() == 0


def test_the_default_variant_is_called_model_and_an_old_one_is_adopted(daemon):
    """With no [variant.*] the one variant serves the model and is called
    "model" (it was "control"); a state whose one variant was stored under
    another name ("control", as older versions named it) keeps being served
    under that name, with its rows, instead of starting cold."""
    daemon.start()
    daemon.produce(300, users=50)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 300)
    assert daemon.wait_for(lambda: len(latest_lists(daemon, 3000)) >= 40)
    assert {v for v, _ in latest_lists(daemon).values()} == {"model"}
    assert 'variant="model"' in daemon.get("/metrics")[1]
    assert daemon.stop() == 0

    # an old state: its one variant stored as "control"
    shutil.rmtree(daemon.dir / "state")
    (daemon.dir / "streamrecd.log").write_text("")
    text = daemon.config.read_text()
    daemon.add_config("[variant.control]\nshare = 1\n")
    daemon.start()
    daemon.produce(300, users=50, seed=2)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 300)
    assert daemon.stop() == 0

    (daemon.dir / "streamrecd.log").write_text("")
    daemon.config.write_text(text)  # no [variant.*] any more
    daemon.start()
    daemon.produce(50, users=50, seed=3)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 50)
    assert daemon.wait_for(lambda: 'variant="control"' in daemon.get("/metrics")[1])
    assert 'variant="model"' not in daemon.get("/metrics")[1]
    # a reload keeps the adopted name (it renamed the lists to "model")
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.wait_for(lambda: "reloaded" in daemon.logtext())
    published = len(latest_lists(daemon))
    daemon.produce(200, users=50, seed=4)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 250)
    time.sleep(2)
    lists = latest_lists(daemon)
    assert published > 0 and {v for v, _ in lists.values()} == {"control"}, lists
    assert daemon.stop() == 0
    log = daemon.logtext()
    assert "is new" not in log and "not in the configuration" not in log, log


def confluent_framed_events(daemon, registry_url, count, users=40):
    subprocess.run([STREAMREC, "produce", "--brokers", daemon.broker.bootstrap, "--topic",
                    daemon.events, "--count", str(count), "--users", str(users),
                    "--framing", "confluent", "--registry", registry_url],
                   check=True, capture_output=True, timeout=120)


def test_the_daemon_reads_and_writes_through_the_schema_registry(daemon, schema_registry):
    """registry.url: framed input is decoded with the writer schema its id names,
    fetched from a real registry; framed output registers Recommendation under
    <topic>-value, and an independent client (confluent-kafka's
    AvroDeserializer with its own registry client) reads the lists."""
    from confluent_kafka import Consumer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    daemon.config.write_text(daemon.config.read_text().replace(
        f"topic = {daemon.recs}\n", f"topic = {daemon.recs}\nframing = confluent\n"))
    daemon.add_config(f"[registry]\nurl = {schema_registry.url}\n")
    daemon.start()
    confluent_framed_events(daemon, schema_registry.url, 500)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 500), \
        daemon.logtext()
    assert daemon.metric("streamrec_dlq_messages_total") == 0

    deserialize = AvroDeserializer(SchemaRegistryClient({"url": schema_registry.url}))
    consumer = Consumer({"bootstrap.servers": daemon.broker.bootstrap, "group.id": "indep",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([daemon.recs])
    lists, deadline = [], time.time() + 60
    while len(lists) < 20 and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None or m.error():
            continue
        lists.append(deserialize(m.value(), SerializationContext(daemon.recs,
                                                                 MessageField.VALUE)))
    consumer.close()
    assert len(lists) >= 20
    assert all(r["user_id"] and r["variant"] == "model" for r in lists)
    assert all(len(r["items"]) > 0 and "item_id" in r["items"][0] for r in lists)
    assert daemon.stop() == 0


def test_events_wait_while_the_registry_is_away(daemon, schema_registry):
    """A framed event whose writer schema cannot be fetched (registry down) is
    neither dead-lettered nor skipped: its partition waits and reads it again,
    and once the registry is back every event is learned exactly once."""
    from registry_auth import AuthGate

    gate = AuthGate(schema_registry.url, require_auth=False)
    port, url = gate.server.server_address[1], gate.url
    gate.close()  # the registry is away when the daemon starts
    daemon.add_config(f"[registry]\nurl = {url}\nretry_ms = 300ms\n")
    daemon.start()
    confluent_framed_events(daemon, schema_registry.url, 300)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_schema_waits_total") >= 3), \
        daemon.logtext()
    time.sleep(2)
    assert daemon.metric("streamrec_updates_total") == 0
    assert daemon.metric("streamrec_dlq_messages_total") == 0
    assert daemon.process.poll() is None
    gate = AuthGate(schema_registry.url, require_auth=False, port=port)
    try:
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 300), \
            daemon.logtext()
        assert settled(daemon) == 300  # each event once: none skipped, none twice
        assert daemon.metric("streamrec_dlq_messages_total") == 0
        assert daemon.stop() == 0
    finally:
        gate.close()


def test_catalogue_records_wait_while_the_registry_is_away(daemon, schema_registry):
    """A framed catalogue record whose writer schema cannot be fetched waits
    as an event does: neither dead-lettered nor skipped, and applied once the
    registry is back. Before, it went to the dead-letter topic as
    schema_unavailable and was lost until the next start."""
    import fastavro
    import io
    from registry_auth import AuthGate

    text = (SCHEMAS / "item_event.avsc").read_text()
    request = urllib.request.Request(
        f"{schema_registry.url}/subjects/{daemon.items}-value/versions",
        data=json.dumps({"schema": text}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        schema_id = json.loads(answer.read())["id"]
    schema = fastavro.parse_schema(json.loads(text))

    def framed(item_id):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, {"item_id": item_id, "category": None,
                                                 "price": None, "in_stock": True,
                                                 "ts": int(time.time() * 1000)})
        return b"\x00" + schema_id.to_bytes(4, "big") + buf.getvalue()

    gate = AuthGate(schema_registry.url, require_auth=False)
    port, url = gate.server.server_address[1], gate.url
    gate.close()  # the registry is away when the daemon starts
    daemon.add_config(f"[registry]\nurl = {url}\nretry_ms = 300ms\n")
    daemon.start()
    send_raw(daemon.broker.bootstrap, daemon.items, [framed(f"shelf-{k}") for k in range(3)])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_schema_waits_total") >= 3), \
        daemon.logtext()
    assert daemon.metric("streamrec_items") == 0
    assert daemon.metric("streamrec_dlq_messages_total") == 0
    gate = AuthGate(schema_registry.url, require_auth=False, port=port)
    try:
        assert daemon.wait_for(lambda: daemon.metric("streamrec_items") == 3), daemon.logtext()
        assert daemon.metric("streamrec_dlq_messages_total") == 0
        assert daemon.stop() == 0
    finally:
        gate.close()


def test_a_schema_id_that_is_not_avro_is_asked_of_the_registry_once(daemon, schema_registry):
    """Framed events whose schema id names a JSON schema are refused as a
    schema mismatch, and the registry is asked about that id once: an id's
    schema never changes. Before, every such message made another blocking
    request on the event loop."""
    from registry_auth import AuthGate

    body = {"schemaType": "JSON",
            "schema": json.dumps({"type": "object",
                                  "properties": {"user_id": {"type": "string"}}})}
    request = urllib.request.Request(
        f"{schema_registry.url}/subjects/{daemon.events}-json-value/versions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        schema_id = json.loads(answer.read())["id"]
    gate = AuthGate(schema_registry.url, require_auth=False)
    try:
        daemon.add_config(f"[registry]\nurl = {gate.url}\n")
        daemon.start()
        frame = b"\x00" + schema_id.to_bytes(4, "big") + b'{"user_id": "u1"}'
        send_raw(daemon.broker.bootstrap, daemon.events, [frame] * 20)
        assert daemon.wait_for(lambda: daemon.metric("streamrec_dlq_messages_total") == 20), \
            daemon.logtext()
        assert daemon.metric('streamrec_invalid_events_total{reason="schema_mismatch"}') == 20
        asked = [path for _, path in gate.requests if path.endswith(f"/schemas/ids/{schema_id}")]
        assert len(asked) == 1, gate.requests
        assert "JSON schema, not Avro" in daemon.logtext()
        assert daemon.stop() == 0
    finally:
        gate.close()


def test_a_tombstone_with_a_bad_key_is_refused_for_its_reason(daemon):
    """A catalogue tombstone names its item by its key: a key longer than 256
    bytes, or not UTF-8, is refused with the reason the README's table gives
    for such an id (both were counted as empty_id)."""
    daemon.start()
    keys = [b"x" * 300, b"bad-" + bytes([0xff])]
    lines = [f"key={key.hex()} -\n" for key in keys]
    subprocess.run([BUILD / "tests" / "kafka_send", daemon.broker.bootstrap, daemon.items],
                   input="".join(lines).encode(), check=True, capture_output=True)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_dlq_messages_total") == 2), \
        daemon.logtext()
    assert daemon.metric('streamrec_invalid_events_total{reason="id_too_long"}') == 1
    assert daemon.metric('streamrec_invalid_events_total{reason="id_not_utf8"}') == 1
    assert daemon.metric('streamrec_invalid_events_total{reason="empty_id"}') == 0
    assert daemon.stop() == 0


def test_covis_neighbours_may_grow_on_a_stored_state_but_not_shrink(daemon):
    """A state written with a co-visitation bound of 32 (the old default) opens
    under the new default (1024): lists grow as pairs arrive, so a larger
    bound reads them; a smaller bound is refused by name."""
    text = daemon.config.read_text()
    daemon.add_config("[model]\ncovis_neighbours = 32\n")
    daemon.start()
    daemon.produce(300, users=40)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 300)
    assert daemon.stop() == 0
    daemon.config.write_text(text)
    daemon.start()
    daemon.produce(100, users=40, seed=5)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 100)
    assert daemon.stop() == 0
    daemon.add_config("[model]\ncovis_neighbours = 16\n")
    out = subprocess.run([STREAMRECD, "--config", daemon.config, "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "covis_neighbours 1024" in out.stderr and "can only grow" in out.stderr, out.stderr


def test_the_experiment_counts_exposures_and_hits_and_keeps_them(daemon):
    """Two arms: /experiment.json gives each variant's exposed and converted
    users against the control arm (the popularity one) with the statistics of
    daemon/experiment.h; the counters persist in the state across a restart."""
    import json
    daemon.add_config(AB_VARIANTS)
    daemon.start()
    daemon.produce(3000, users=300, items=100)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 3000)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_experiment_exposed_users") >= 250,
                           60), daemon.get("/metrics")[1][-3000:]
    status, body = daemon.get("/experiment.json")
    assert status == 200, body
    doc = json.loads(body)
    variants = {v["name"]: v for v in doc["variants"]}
    assert set(variants) == {"model", "control"}
    assert variants["control"]["control"] is True and variants["model"]["control"] is False
    exposed = {name: v["exposed"] for name, v in variants.items()}
    assert all(n > 50 for n in exposed.values()), exposed
    served = daemon.metric("streamrec_users_served_total")
    assert sum(exposed.values()) == served
    assert "srm_p" in json.dumps(doc) and "msprt_p" in json.dumps(doc)
    # CUPED runs on the daemon's own covariate: each user's events before its exposure
    assert all(v["cuped"] is True for v in variants.values()), variants
    assert doc["cuped_theta"] is not None, doc
    hits = daemon.metric("streamrec_hits_total")
    converted = sum(v["converted"] for v in variants.values())
    assert converted <= sum(exposed.values()) and (hits == 0) == (converted == 0)
    assert daemon.stop() == 0

    daemon.start()
    status, body = daemon.get("/experiment.json")
    after = {v["name"]: v["exposed"] for v in json.loads(body)["variants"]}
    assert after == exposed
    assert daemon.stop() == 0


def test_an_arm_that_learns_from_its_own_users_only(daemon):
    """variant.NAME.learns_from = own: the arm's model learns only its users'
    events (about its share of them), while an arm learning from all users
    learns every event."""
    daemon.add_config("[variant.own]\nshare = 0.5\nlearns_from = own\n"
                      "[variant.all]\nshare = 0.5\n")
    daemon.start()
    daemon.produce(4000, users=400, items=200)
    assert daemon.wait_for(lambda: daemon.series("streamrec_updates_total").get(
        '{variant="all"}', 0) >= 4000), daemon.logtext()
    time.sleep(1)
    updates = daemon.series("streamrec_updates_total")
    own, every = updates['{variant="own"}'], updates['{variant="all"}']
    assert every == 4000
    assert 0.3 * every < own < 0.7 * every, updates
    assert daemon.stop() == 0


def thread_priorities(pid):
    """{thread name: [nice values]} of a running process (/proc/PID/task)."""
    threads = {}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue  # the thread ended while we looked
        # fields after the ")" of comm: state is field 3, nice field 19
        nice = int(stat.rsplit(")", 1)[1].split()[16])
        threads.setdefault(name, []).append(nice)
    return threads


def test_refresh_workers_step_back_by_refresh_nice(daemon):
    """refresh.nice lowers the refresh workers' priority and state.nice the
    state writer's: learning (the main thread) and the lookup API keep the
    process's, so when the cores are short they run first, lists wait, and
    commits take longer."""
    daemon.add_config(f"[refresh]\nthreads = 2\nnice = 7\n[api]\nlisten = 127.0.0.1:{free_port()}\n")
    daemon.config.write_text(daemon.config.read_text().replace(
        "[state]\n", "[state]\nnice = 3\n", 1))
    daemon.start()
    daemon.produce(300)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 300)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") >= 1)
    # each commit's time on the loop is observed
    assert daemon.metric("streamrec_commit_loop_seconds_count") >= 1
    threads = thread_priorities(daemon.process.pid)
    assert threads.get("refresh-0") == [7] and threads.get("refresh-1") == [7], threads
    assert threads.get("streamrecd") and set(threads["streamrecd"]) == {0}, threads
    assert threads.get("api") == [0] and threads.get("state-writer") == [3], threads
    assert daemon.stop() == 0


def test_state_nice_zero_keeps_the_state_writer_at_the_process_priority(daemon):
    """state.nice = 0 leaves the state writer and RocksDB's threads at the
    process's priority (the default, 10, steps them back)."""
    daemon.config.write_text(daemon.config.read_text().replace(
        "[state]\n", "[state]\nnice = 0\n", 1))
    daemon.start()
    daemon.produce(300)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") >= 1)
    threads = thread_priorities(daemon.process.pid)
    assert threads.get("state-writer") == [0], threads
    assert all(set(v) == {0} for k, v in threads.items() if k.startswith("rocksdb")), threads
    assert daemon.stop() == 0


def test_the_loop_answers_while_dead_letters_wait_for_delivery(kafka_broker, tmp_path):
    """While the dead-letter topic takes nothing (here: it does not exist, and
    the broker creates no topic), each commit is postponed, and /readyz and
    /metrics still answer at once: the commit timer waited 2 s for delivery
    reports on every tick, so probes timed out for as long as it lasted."""
    import urllib.request
    daemon = Daemon(kafka_broker, tmp_path, "dlqwait", partitions=1)
    daemon.config.write_text(daemon.config.read_text().replace(
        f"dead_letter_topic = {daemon.dlq}", f"dead_letter_topic = {daemon.dlq}.missing"))
    try:
        daemon.start()
        daemon.produce(50)
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 50)
        send_raw(kafka_broker.bootstrap, daemon.events, [b"\x01garbage"])
        assert daemon.wait_for(lambda: "commit postponed" in daemon.logtext(), 30), \
            daemon.logtext()
        slow = []
        deadline = time.time() + 6
        while time.time() < deadline and daemon.process.poll() is None:
            started = time.time()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/readyz",
                                            timeout=5) as r:
                    r.read()
            except urllib.error.HTTPError:
                pass  # 503 is an answer
            except OSError:  # no answer within 5 s
                slow.append("timeout")
                continue
            if time.time() - started > 1.0:
                slow.append(round(time.time() - started, 2))
            time.sleep(0.2)
        assert daemon.process.poll() is None, daemon.logtext()
        assert "commit postponed" in daemon.logtext().split("garbage")[-1] or \
            daemon.logtext().count("commit postponed") >= 2
        assert slow == [], slow
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()


def test_the_loop_answers_and_learns_while_a_commit_is_written(kafka_broker, tmp_path):
    """A commit still being written when the next one falls due (a slow
    disk, a large batch) is not waited for: the commit is postponed and
    counted, and /readyz, /metrics and learning go on. The timer waited for
    the write in flight, so a commit that took seconds stalled the loop for
    as long (at 1M items a first commit of 280 MB kept /metrics silent for
    4-7 s). Here every sync of the state takes 3 s (an LD_PRELOAD library
    slows fsync/fdatasync while a switch file exists); afterwards every
    event is learned once and the daemon stops cleanly."""
    daemon = Daemon(kafka_broker, tmp_path, "slowsync", partitions=1)
    switch = tmp_path / "slow-sync"
    daemon.config.write_text(daemon.config.read_text().replace(
        "commit_interval_ms = 500ms", "commit_interval_ms = 200ms\nsync_commits = true"))
    daemon.prefix = ["env", f"LD_PRELOAD={BUILD / 'tests' / 'slow_sync.so'}",
                     f"STREAMREC_TEST_SLOW_SYNC={switch}"]
    try:
        daemon.start()
        daemon.produce(50)
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 50)
        switch.write_text("3000")
        producer = subprocess.Popen([STREAMREC, "produce", "--brokers", kafka_broker.bootstrap,
                                     "--topic", daemon.events, "--count", "400", "--rate", "50",
                                     "--users", "50", "--items", "40"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        slow, learned = [], []
        deadline = time.time() + 7
        while time.time() < deadline and daemon.process.poll() is None:
            started = time.time()
            status, _ = daemon.get("/readyz")
            if status is None or time.time() - started > 1.0:
                slow.append(round(time.time() - started, 2))
            learned.append(daemon.metric("streamrec_updates_total"))
            time.sleep(0.2)
        postponed = daemon.metric("streamrec_commits_postponed_total")
        switch.unlink()
        assert producer.wait(timeout=60) == 0
        assert daemon.process.poll() is None, daemon.logtext()
        assert slow == [], slow
        assert postponed >= 1, postponed
        # learning went on while the commit was written: the count rose between polls
        assert sum(1 for a, b in zip(learned, learned[1:]) if b > a) >= 10, learned
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 450, 60)
        assert daemon.stop() == 0
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()


def test_state_block_cache_bytes_bounds_rocksdbs_block_cache(daemon):
    """state.block_cache_bytes reaches RocksDB (1 GiB by default; it was a
    fixed 256 MiB, which a state of 1M users and 1M items outgrew: after a
    restart learning read and checksummed blocks for 40% of the loop's time).
    Its bound and use are in /metrics; a size below 8M is refused, naming the
    key and its line."""
    def cache(kind):
        _, body = daemon.get("/metrics")
        found = re.search(r'^streamrec_state_block_cache_bytes\{kind="%s"\} (\d+)$' % kind,
                          body, re.M)
        assert found, body[:2000]
        return int(found.group(1))

    daemon.start()
    assert cache("capacity") == 1 << 30
    daemon.produce(600, users=100, items=50)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_events_total") >= 600)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_commits_total") >= 2)
    assert 0 <= cache("usage") <= cache("capacity")
    assert daemon.stop() == 0

    daemon.add_config("block_cache_bytes = 64M\n")
    daemon.start()
    assert cache("capacity") == 64 << 20
    assert daemon.stop() == 0

    daemon.config.write_text(daemon.config.read_text().replace("block_cache_bytes = 64M",
                                                               "block_cache_bytes = 4M"))
    out = subprocess.run([STREAMRECD, "--config", daemon.config, "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert re.search(r"streamrecd\.conf:\d+: state\.block_cache_bytes: .*4M", out.stderr), \
        out.stderr
