"""Scale-out: several streamrecd in one consumer group, user state following
its partition through the changelog topic (scaleout.changelog_topic).

Against the real broker: two instances share a 4-partition events topic; one
is SIGKILLed under load and the other takes its partitions over, restoring
their users from the changelog before it consumes them; then a third
instance with an empty state restores every partition. Its users must hold
exactly the state one instance reading the whole stream would hold: the
order-dependent recent-items ring and the purchase exclusions of every user
(an event applied twice or lost changes the ring), and no user is cold.
"""
import contextlib
import csv
import pathlib
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from harness import BUILD

STREAMREC = BUILD / "streamrec"
STREAMRECD = BUILD / "streamrecd"
pytestmark = pytest.mark.kafka

PARTITIONS = 4
RECENT_ITEMS = 5  # model.recent_items' default
# learn() ignores weight-0 events and remembers nothing of negative ones
REMEMBERED = {"VIEW", "CLICK", "ADD_TO_CART", "FAVORITE", "PURCHASE"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    """One streamrecd of the group, with a state directory of its own."""

    def __init__(self, broker, root, name, topics, extra=""):
        self.dir = root / name
        self.dir.mkdir()
        self.port = free_port()
        self.config = self.dir / "streamrecd.conf"
        self.config.write_text(f"""
[input]
topic = {topics['events']}
items_topic =
dead_letter_topic = {topics['dlq']}
group_id = {topics['group']}
[output]
topic = {topics['recs']}
[state]
dir = {self.dir / 'state'}
commit_interval_ms = 300ms
[scaleout]
changelog_topic = {topics['changelog']}
{"item_updates_topic = " + topics['items'] if topics.get('items') else ""}
item_sync_interval_ms = 200ms
[http]
listen = 127.0.0.1:{self.port}
[kafka]
bootstrap.servers = {broker.bootstrap}
[kafka.consumer]
session.timeout.ms = 6000
heartbeat.interval.ms = 500
{extra}
""")
        self.process = None

    def start(self):
        self.log = open(self.dir / "streamrecd.log", "a")
        self.process = subprocess.Popen([STREAMRECD, "--config", self.config],
                                        stdout=self.log, stderr=self.log)

    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    def metric(self, name, where=""):
        return sum(float(line.split()[-1]) for line in self.metrics().splitlines()
                   if (line.startswith(name + "{") and where in line)
                   or line.startswith(name + " "))

    def stop(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        code = self.process.wait(timeout=120)
        self.log.close()
        return code

    def logtext(self):
        return (self.dir / "streamrecd.log").read_text()[-6000:]


def wait_for(predicate, timeout=120, what="condition", instances=()):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        for i in instances:
            if i.process is not None and i.process.poll() is not None:
                pytest.fail(f"{i.dir.name} exited while waiting for {what}:\n{i.logtext()}")
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}:\n" + "\n".join(i.logtext() for i in instances))


@contextlib.contextmanager
def killed_on_exit(*instances):
    """Whatever happens inside, no instance is left running."""
    try:
        yield
    finally:
        for i in instances:
            if i.process is not None and i.process.poll() is None:
                i.process.kill()


def scaleout_topics(broker, prefix, partitions, items=False):
    """The group's topics, created: events and changelog with `partitions`."""
    topics = {"events": f"{prefix}.events", "recs": f"{prefix}.recs", "dlq": f"{prefix}.dlq",
              "changelog": f"{prefix}.changelog", "group": f"{prefix}-group"}
    specs = [f"{prefix}.events:{partitions}", f"{prefix}.recs:3:compact", f"{prefix}.dlq:1",
             f"{prefix}.changelog:{partitions}:compact"]
    if items:
        topics["items"] = f"{prefix}.items"
        specs.append(f"{prefix}.items:{min(partitions, 3)}")
    broker.create_topics(*specs)
    return topics


def gen_parts(tmp_path, seeds, events, users, items, clusters):
    """One synthetic stream file per seed (`streamrec gen`)."""
    parts = []
    for seed in seeds:
        path = tmp_path / f"part{seed}.csv"
        subprocess.run([STREAMREC, "gen", "--out", path, "--events", str(events), "--users",
                        str(users), "--items", str(items), "--clusters", str(clusters), "--seed",
                        str(seed)], check=True, capture_output=True)
        parts.append(path)
    return parts


def producer(broker, topic, path, count, rate):
    """`streamrec produce` of a stream file at `rate` events/s (0: flat out), running."""
    return subprocess.Popen([STREAMREC, "produce", "--brokers", broker.bootstrap, "--topic", topic,
                             "--file", path, "--count", str(count), "--rate", str(rate)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def restore_fresh(broker, tmp_path, name, topics, partitions, read=()):
    """A new instance with an empty state restores every partition from the
    changelog and has nothing left to learn; @returns it (stopped) and the
    metrics named in `read`, as they stood before it stopped."""
    i = Instance(broker, tmp_path, name, topics)
    i.start()
    with killed_on_exit(i):
        wait_for(lambda: group_caught_up([i], topics["events"], partitions), timeout=240,
                 what=f"{name} to restore", instances=(i,))
        assert i.metric("streamrec_restores_total") == partitions, i.logtext()
        assert i.metric("streamrec_updates_total") == 0, f"{name} re-learned events: " + i.logtext()
        values = {m: i.metric(m) for m in read}
        assert i.stop() == 0, i.logtext()
    return i, values


def expected_state(paths):
    """Per user: the recent-items ring (oldest first) and the purchased items,
    replaying the files in order as one instance would."""
    ring, bought = {}, {}
    for path in paths:
        with open(path) as f:
            for row in csv.DictReader(f):
                if row["type"] not in REMEMBERED:
                    continue
                user, item = row["user_id"], row["item_id"]
                r = ring.setdefault(user, [])
                if not r or r[-1] != item:
                    r.append(item)
                    del r[:-RECENT_ITEMS]
                if row["type"] == "PURCHASE":
                    bought.setdefault(user, set()).add(item)
    return ring, bought


def inspect(state_dir, user):
    out = subprocess.run([STREAMREC, "inspect", "--state", state_dir, "--user", user, "--k", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    recent, excluded = None, None
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("recent items (oldest first):"):
            recent = line.split(":", 1)[1].split()
        elif line.startswith("excluded:"):
            excluded = set(line.split(":", 1)[1].split())
    return out.stdout, recent, excluded


def caught_up(instance, events_topic):
    """Every events partition is assigned to the instance, none lagging."""
    return group_caught_up([instance], events_topic, PARTITIONS)


def test_a_killed_instance_s_users_follow_their_partitions(kafka_broker, tmp_path):
    topics = scaleout_topics(kafka_broker, "so", PARTITIONS)
    parts = gen_parts(tmp_path, (1, 2), events=20000, users=300, items=200, clusters=5)
    a = Instance(kafka_broker, tmp_path, "a", topics)
    b = Instance(kafka_broker, tmp_path, "b", topics)
    with killed_on_exit(a, b):
        assert producer(kafka_broker, topics["events"], parts[0], 20000, 0).wait(timeout=120) == 0
        a.start()
        b.start()
        # both hold partitions, and have learned and committed part of the stream
        wait_for(lambda: a.metric("streamrec_assigned_partitions") > 0
                 and b.metric("streamrec_assigned_partitions") > 0
                 and a.metric("streamrec_changelog_records_total") > 0, what="two members",
                 instances=(a, b))
        feeder = producer(kafka_broker, topics["events"], parts[1], 20000, 5000)
        time.sleep(1.5)
        a.stop(signal.SIGKILL)  # mid-stream: its last changes since a commit are lost
        assert feeder.wait(timeout=120) == 0, feeder.stderr.read()
        wait_for(lambda: caught_up(b, topics["events"]), timeout=180, what="b to take over",
                 instances=(b,))
        assert b.metric("streamrec_restores_total") >= 1, b.logtext()
        assert b.stop() == 0, b.logtext()

    # an instance with an empty state restores every partition from the changelog
    c, _ = restore_fresh(kafka_broker, tmp_path, "c", topics, PARTITIONS)
    ring, bought = expected_state(parts)
    users = sorted(ring)
    assert len(users) > 250
    for user in users[::5]:  # every fifth user: inspect opens the state each time
        text, recent, excluded = inspect(c.dir / "state", user)
        assert recent == ring[user], f"{user}: {text}"
        assert excluded == bought.get(user, set()), f"{user}: {text}"


def item_row(state_dir, item):
    out = subprocess.run([STREAMREC, "inspect", "--state", state_dir, "--item", item],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    head = next(l for l in lines if l.startswith(f"item {item} "))
    bias = float(head.split("bias")[1].split()[0])
    q = [float(x) for x in next(l for l in lines if l.strip().startswith("q =")).split("=")[1].split()]
    return q, bias


def stable(read, seconds=3.0, timeout=120):
    """Waits until read() returns the same value for `seconds`; returns it."""
    deadline, last, since = time.time() + timeout, None, time.time()
    while time.time() < deadline:
        value = read()
        if value != last:
            last, since = value, time.time()
        elif time.time() - since >= seconds:
            return value
        time.sleep(0.3)
    pytest.fail("never settled")


def test_item_vectors_learned_by_one_instance_reach_another(kafka_broker, tmp_path):
    """A learns every event; B, started afterwards with an empty state and no
    event of its own to learn, folds A's published item changes: its item
    rows become A's (every item starts alike, from its id)."""
    topics = scaleout_topics(kafka_broker, "is", 2, items=True)
    events = gen_parts(tmp_path, (3,), events=10000, users=200, items=100, clusters=4)[0]
    assert producer(kafka_broker, topics["events"], events, 10000, 0).wait(timeout=120) == 0
    a = Instance(kafka_broker, tmp_path, "a", topics)
    a.start()
    with killed_on_exit(a):
        wait_for(lambda: a.metric("streamrec_updates_total") >= 5000 and group_caught_up([a], topics["events"], 2),
                 what="a to learn", instances=(a,))
        assert a.metric("streamrec_item_sync_published_total") > 0
        assert a.stop() == 0, a.logtext()
    b = Instance(kafka_broker, tmp_path, "b", topics)
    b.start()
    with killed_on_exit(b):
        wait_for(lambda: b.metric("streamrec_item_sync_folded_total") > 0, what="b to fold",
                 instances=(b,))
        folded = stable(lambda: b.metric("streamrec_item_sync_folded_total"))
        assert b.metric("streamrec_updates_total") == 0, b.logtext()  # restored, not re-learned
        assert b.metric("streamrec_item_sync_published_total") == 0  # nothing of its own
        assert folded > 0
        assert b.stop() == 0, b.logtext()
    moved = 0
    for item in ("i0", "i1", "i2", "i5", "i10", "i20", "i50"):
        qa, bias_a = item_row(a.dir / "state", item)
        qb, bias_b = item_row(b.dir / "state", item)
        assert all(abs(x - y) <= 2e-3 for x, y in zip(qa, qb)), (item, qa, qb)
        assert abs(bias_a - bias_b) <= 2e-3, (item, bias_a, bias_b)
        moved += qa != qb or bias_a != 0
    assert moved > 0


def test_users_the_life_cycle_removed_are_not_restored(kafka_broker, tmp_path):
    """Two instances bound to 20 users each evict most of a churn of 200
    users; the first is SIGKILLed and the second takes its partitions over,
    then stops; a fresh instance without a bound restores every partition
    from the changelog. It must hold exactly the users the group still held
    (an evicted user's tombstone went to the changelog in the commit that
    removed it), not every user ever seen."""
    from test_lifecycle_e2e import churn
    topics = scaleout_topics(kafka_broker, "lr", PARTITIONS)
    bound = "[lifecycle]\nmax_users = 20\n"
    a = Instance(kafka_broker, tmp_path, "a", topics, extra=bound)
    b = Instance(kafka_broker, tmp_path, "b", topics, extra=bound)
    users = 200

    def evicted(*instances):
        return sum(i.metric("streamrec_embeddings_evicted_total", 'kind="user"')
                   for i in instances)

    def live(*instances):
        return sum(i.metric("streamrec_users") for i in instances)

    with killed_on_exit(a, b):
        a.start()
        b.start()
        wait_for(lambda: a.metric("streamrec_assigned_partitions") > 0
                 and b.metric("streamrec_assigned_partitions") > 0, what="two members",
                 instances=(a, b))
        base_ms = int(time.time() * 1000) - 3_600_000
        for wave in range(0, users, 40):
            # in waves, each committed (rows in the changelog) before the next evicts it
            lines = churn(wave, 40, base_ms)
            subprocess.run([BUILD / "tests" / "kafka_send", kafka_broker.bootstrap,
                            topics["events"]], input="".join(lines).encode(), check=True,
                           capture_output=True)
            wait_for(lambda: group_caught_up((a, b), topics["events"], PARTITIONS)
                     and live(a, b) + evicted(a, b) == wave + 40, what=f"wave {wave}",
                     instances=(a, b))
        wait_for(lambda: group_caught_up((a, b), topics["events"], PARTITIONS)
                 and live(a) <= 20 and live(b) <= 20
                 and evicted(a, b) + live(a, b) == users, what="evictions", instances=(a, b))
        commits = a.metric("streamrec_commits_total")
        wait_for(lambda: a.metric("streamrec_commits_total") >= commits + 3,
                 what="a's removals committed", instances=(a,))
        assert a.metric("streamrec_changelog_records_total") > 0
        a.stop(signal.SIGKILL)
        wait_for(lambda: caught_up(b, topics["events"]) and live(b) <= 20, timeout=180,
                 what="b to take over", instances=(b,))
        assert b.metric("streamrec_restores_total") >= 1, b.logtext()
        # b evicts more, a's last users among them (a's own state still holds them)
        before = live(b) + evicted(b)
        subprocess.run([BUILD / "tests" / "kafka_send", kafka_broker.bootstrap,
                        topics["events"]], input="".join(churn(users, 40, base_ms)).encode(),
                       check=True, capture_output=True)
        wait_for(lambda: caught_up(b, topics["events"]) and live(b) <= 20
                 and live(b) + evicted(b) == before + 40, what="b's wave", instances=(b,))
        commits = b.metric("streamrec_commits_total")
        wait_for(lambda: b.metric("streamrec_commits_total") >= commits + 3,
                 what="b's removals committed", instances=(b,))
        assert b.stop() == 0, b.logtext()
    kept = export_users(b.dir / "state")
    assert 0 < len(kept) <= 20, kept

    c, seen = restore_fresh(kafka_broker, tmp_path, "c", topics, PARTITIONS,
                            read=("streamrec_users", "streamrec_restored_users_total"))
    held, restored = seen["streamrec_users"], seen["streamrec_restored_users_total"]
    assert held == len(kept), f"c holds {held:.0f} users, the group kept {len(kept)}"
    assert restored == len(kept), f"c restored {restored:.0f} users, the group kept {len(kept)}"
    assert export_users(c.dir / "state") == kept
    text, _, _ = inspect(c.dir / "state", "churn-0")  # the least recently active: evicted
    assert "no history" in text, text

    # a's own state, older than the changelog, holds users b removed since:
    # the restore deletes them (their tombstones), it keeps what the group kept
    a.config.write_text(a.config.read_text().replace(bound, ""))
    a.start()
    with killed_on_exit(a):
        wait_for(lambda: caught_up(a, topics["events"]), timeout=180, what="a to restore",
                 instances=(a,))
        assert a.metric("streamrec_updates_total") == 0, "a re-learned events: " + a.logtext()
        held = a.metric("streamrec_users")
        assert a.stop() == 0, a.logtext()
    assert held == len(kept), a.logtext()
    assert export_users(a.dir / "state") == kept
    deleted = re.findall(r"\((\d+) removed ones deleted\)", (a.dir / "streamrecd.log").read_text())
    assert sum(map(int, deleted)) > 0, a.logtext()


def export_users(state_dir):
    """The user ids a stopped instance's state holds."""
    from test_lifecycle_e2e import FAMILIES
    path = state_dir.parent / "export.bin"
    subprocess.run([STREAMREC, "export", "--state", state_dir, "--out", path], check=True,
                   capture_output=True)
    data, ids = path.read_bytes(), set()
    at = len(b"streamrec-export 2\n")
    while data[at] != 0xff:  # the end record
        family = FAMILIES[data[at]]
        key_len = int.from_bytes(data[at + 1:at + 5], "big")
        key = data[at + 5:at + 5 + key_len]
        at += 5 + key_len
        value_len = int.from_bytes(data[at:at + 4], "big")
        at += 4 + value_len
        if family == "ids" and key[:1] == b"u":
            ids.add(key[1:].decode())
    return ids


def group_caught_up(instances, events_topic, partitions):
    """Between them the instances hold every events partition, none lagging."""
    lags = {}
    for i in instances:
        for line in i.metrics().splitlines():
            if line.startswith("streamrec_consumer_lag{") and f'topic="{events_topic}"' in line:
                partition = line.split('partition="')[1].split('"')[0]
                lags[partition] = float(line.split()[-1])
    return len(lags) == partitions and all(v == 0 for v in lags.values())


def test_three_instances_on_a_three_broker_cluster(kafka_cluster, tmp_path):
    """The issue's scenario on three brokers: three instances share a
    12-partition topic; under load one is SIGKILLed, one is added and one
    stopped gracefully. Afterwards an instance with an empty state restores
    every partition and has nothing left to learn (its stored offsets are
    the ends − 1), and every user's order-dependent state is exactly one
    pass over the stream: each event applied once per partition."""
    partitions = 12
    topics = scaleout_topics(kafka_cluster, "c3", partitions, items=True)
    parts = gen_parts(tmp_path, (11, 12, 13), events=15000, users=600, items=300, clusters=6)

    def produce(path, rate):
        return producer(kafka_cluster, topics["events"], path, 15000, rate)

    names = ["a", "b", "c", "d"]
    inst = {n: Instance(kafka_cluster, tmp_path, n, topics) for n in names}
    with killed_on_exit(*inst.values()):
        assert produce(parts[0], 0).wait(timeout=180) == 0
        for n in "abc":
            inst[n].start()
        wait_for(lambda: all(inst[n].metric("streamrec_assigned_partitions") > 0 for n in "abc")
                 and inst["a"].metric("streamrec_changelog_records_total") > 0,
                 timeout=180, what="three members", instances=[inst[n] for n in "abc"])
        feeder = produce(parts[1], 3000)
        time.sleep(1.5)
        inst["a"].stop(signal.SIGKILL)
        time.sleep(1.5)
        inst["d"].start()
        time.sleep(2.0)
        assert inst["b"].stop() == 0, inst["b"].logtext()
        assert feeder.wait(timeout=180) == 0, feeder.stderr.read()
        assert produce(parts[2], 0).wait(timeout=180) == 0
        survivors = [inst["c"], inst["d"]]
        wait_for(lambda: group_caught_up(survivors, topics["events"], partitions), timeout=240,
                 what="c and d to take every partition over", instances=survivors)
        stable(lambda: sum(i.metric("streamrec_updates_total") for i in survivors))
        assert sum(i.metric("streamrec_restores_total") for i in survivors) >= 1
        for i in survivors:
            assert i.stop() == 0, i.logtext()

    e, _ = restore_fresh(kafka_cluster, tmp_path, "e", topics, partitions)
    ring, bought = expected_state(parts)
    users = sorted(ring)
    assert len(users) > 500
    for user in users[::12]:
        text, recent, excluded = inspect(e.dir / "state", user)
        assert recent is not None, f"{user} is cold: {text}"
        assert recent == ring[user], f"{user}: {text}"
        assert excluded == bought.get(user, set()), f"{user}: {text}"


def test_an_evicted_users_row_naming_a_removed_item_is_left_out_of_the_changelog(
        kafka_broker, tmp_path):
    """A user evicted from the user cache has its row set aside for the
    next commit; when that commit's life cycle removes an item the row
    names, the changelog record cannot name the item's id. The row is left
    out of the changelog (counted), as the README says, and the daemon goes
    on: before, it stopped ("cannot encode a user row"), and stopped again
    at every restart on the same events."""
    from test_lifecycle_e2e import event_line
    topics = scaleout_topics(kafka_broker, "lo", 1)
    a = Instance(kafka_broker, tmp_path, "a", topics, extra="[lifecycle]\nmax_items = 5\n")
    # one commit window for the whole stream: the eviction and the removal meet in it
    a.config.write_text(a.config.read_text().replace(
        "commit_interval_ms = 300ms", "commit_interval_ms = 3s\nuser_cache_users = 4"))
    base = int(time.time() * 1000) - 3_600_000
    lines = [event_line("keeper", "old-item", base, 0)]
    lines += [event_line(f"u-{k}", f"new-{k % 10}", base + 1000 + k, k) for k in range(40)]
    subprocess.run([BUILD / "tests" / "kafka_send", kafka_broker.bootstrap, topics["events"]],
                   input="".join(lines).encode(), check=True, capture_output=True)
    with killed_on_exit(a):
        a.start()
        wait_for(lambda: a.metric("streamrec_updates_total") >= 41
                 and a.metric('streamrec_embeddings_evicted_total', 'kind="item"') >= 6
                 and a.metric("streamrec_commits_total") >= 2, what="the sweep's commit",
                 instances=(a,))
        assert a.metric("streamrec_changelog_left_out_total") >= 1, a.logtext()
        assert a.metric("streamrec_changelog_records_total") > 0
        # it goes on learning and committing
        subprocess.run([BUILD / "tests" / "kafka_send", kafka_broker.bootstrap,
                        topics["events"]],
                       input=event_line("keeper", "new-3", base + 5000, 1).encode(),
                       check=True, capture_output=True)
        commits = a.metric("streamrec_commits_total")
        wait_for(lambda: a.metric("streamrec_updates_total") >= 42
                 and a.metric("streamrec_commits_total") >= commits + 1, what="the next commit",
                 instances=(a,))
        assert a.stop() == 0, a.logtext()
