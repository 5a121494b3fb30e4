"""Embedding life cycle end to end (README, "Embedding life cycle"): the
release daemon against the real Kafka broker and real RocksDB, on loopback.

On a stream of churning users the state stays bounded (live users, rows and
ids on disk) under lifecycle.max_users and lifecycle.user_ttl, and the
metrics count what was evicted and expired; a daemon killed with SIGKILL
while it evicts and expires, then restarted, ends with exactly the live
users (their rows, bit for bit), items and globals of an undisturbed one.
The same for items under lifecycle.max_items and lifecycle.item_ttl, and
a removed item is never listed again.
"""
import json
import signal
import struct
import subprocess
import time

import pytest

from harness import BUILD
from test_daemon_e2e import (Daemon, avro_long, avro_string, engine,  # noqa: F401 (engine)
                             latest_lists, settled)
from test_lookup_api import ApiDaemon

STREAMREC = BUILD / "streamrec"
pytestmark = pytest.mark.kafka

FAMILIES = ["meta", "ids", "user", "item", "covis", "pop"]


def event_line(user, item, ts, n):
    body = (avro_string(f"ev-{user}-{n}") + avro_string(user) + avro_string(item)
            + avro_long(6) + avro_long(ts) + avro_long(0) + avro_long(0) + avro_long(0))
    return f"key={user.encode().hex()} {body.hex()}\n"


def send(daemon, lines, topic=None):
    subprocess.run([BUILD / "tests" / "kafka_send", daemon.broker.bootstrap,
                    topic or daemon.events], input="".join(lines).encode(), check=True,
                   capture_output=True)


def churn(first_user, users, base_ms, events_per_user=3):
    """Each user's events are adjacent, at its own event time (one second
    apart between users): who is least recently active never depends on
    when a sweep runs."""
    lines = []
    for k in range(first_user, first_user + users):
        for n in range(events_per_user):
            lines.append(event_line(f"churn-{k}", f"item-{(k * 7 + n * 3) % 40}",
                                    base_ms + k * 1000, n))
    return lines


def export(daemon):
    """{family: {key: value}} of the stopped daemon's state."""
    path = daemon.dir / "export.bin"
    subprocess.run([STREAMREC, "export", "--state", daemon.dir / "state", "--out", path],
                   check=True, capture_output=True)
    data = path.read_bytes()
    assert data.startswith(b"streamrec-export 2\n")
    at, entries = len(b"streamrec-export 2\n"), {f: {} for f in FAMILIES}
    while data[at] != 0xff:  # the end record
        family = FAMILIES[data[at]]
        (key_len,) = struct.unpack(">I", data[at + 1:at + 5])
        key = data[at + 5:at + 5 + key_len]
        at += 5 + key_len
        (value_len,) = struct.unpack(">I", data[at:at + 4])
        entries[family][key] = data[at + 4:at + 4 + value_len]
        at += 4 + value_len
    return entries


def users_by_id(entries):
    """{user id: (last-seen record, {variant byte: row})}: rows by id, not by
    stable index (indices are reused in whatever order users leave)."""
    ids = entries["ids"]
    users = {}
    for key, value in ids.items():
        if key[:1] == b"u":
            stable = value
            row = {k[4]: v for k, v in entries["user"].items() if k[:4] == stable}
            users[key[1:].decode()] = (ids.get(b"T" + stable), row)
            assert ids.get(b"U" + stable) == key[1:], key
    return users


@pytest.fixture
def daemons(kafka_broker, tmp_path, request):
    made = []

    def make(name, partitions=3):
        d = Daemon(kafka_broker, tmp_path, name, partitions=partitions)
        made.append(d)
        return d
    yield make
    for d in made:
        if d.process is not None and d.process.poll() is None:
            d.process.kill()
            d.process.wait()


def test_churn_stays_bounded_and_metrics_count_evictions_and_expiry(daemons):
    daemon = daemons("lifecycle_churn")
    daemon.add_config("[lifecycle]\nmax_users = 50\nuser_ttl = 10m\n")
    daemon.start()
    base = int(time.time() * 1000) - 3600_000
    # phase 1: 12 rounds of 40 new users, one second apart in event time (no
    # one idles 10 minutes): the bound holds the state at 50 users
    for round_ in range(12):
        send(daemon, churn(round_ * 40, 40, base))
        assert daemon.wait_for(
            lambda: daemon.metric("streamrec_updates_total") >= (round_ + 1) * 120), \
            daemon.logtext()
        time.sleep(1.2)  # at least one commit, hence one sweep
        assert daemon.metric("streamrec_users") <= 50 + 40, daemon.logtext()
    assert daemon.wait_for(lambda: daemon.metric("streamrec_users") <= 50, timeout=10)
    evicted = daemon.metric('streamrec_embeddings_evicted_total{kind="user"}')
    assert evicted == 480 - 50
    assert daemon.metric('streamrec_embeddings_admitted_total{kind="user"}') == 480
    assert daemon.metric('streamrec_embeddings_expired_total{kind="user"}') == 0
    assert daemon.metric('streamrec_embeddings_live{kind="user"}') == 50
    # phase 2: one user 20 minutes later in event time: the other 50 idled past the TTL
    send(daemon, churn(10_000, 1, base + 480_000 + 20 * 60_000 - 10_000 * 1000))
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_embeddings_expired_total{kind="user"}') == 50), \
        daemon.logtext()
    assert daemon.metric("streamrec_users") == 1
    assert daemon.stop() == 0, daemon.logtext()
    entries = export(daemon)
    # on disk: one user's ids (u, U, T), its row, and at most its list
    assert list(users_by_id(entries)) == ["churn-10000"]
    assert len(entries["user"]) == 1
    assert sum(1 for k in entries["ids"] if k[:1] in (b"u", b"U", b"T")) == 3
    assert sum(1 for k in entries["meta"] if k.startswith(b"list/")) <= 1
    # a restart brings back no evicted or expired user
    daemon.start()
    assert daemon.wait_for(lambda: daemon.metric("streamrec_users") == 1, timeout=10)
    assert daemon.stop() == 0


def test_sigkill_while_evicting_keeps_every_live_user(daemons):
    """Two daemons read one single-partition topic, each with its own group
    and state and the same life cycle; one is killed with SIGKILL while it
    learns, evicts and expires, and restarted. At the end both hold the same
    live users with bit-identical rows and last-seen times, the same items
    and globals: nothing admitted and still live was lost, nothing evicted
    came back, no event was applied twice."""
    steady = daemons("lc_steady", partitions=1)
    crashy = daemons("lc_crashy", partitions=1)
    crashy.config.write_text(crashy.config.read_text().replace(f"topic = {crashy.events}",
                                                               f"topic = {steady.events}"))
    life = "[lifecycle]\nmax_users = 200\nuser_ttl = 4m\n"
    steady.add_config(life)
    crashy.add_config(life)
    base = int(time.time() * 1000) - 7200_000
    users = 3000
    steady.start()
    crashy.start()
    # a stream in slices, so the kill lands with evictions both behind and ahead
    for first in range(0, users, 500):
        send(steady, churn(first, 500, base))
        if first == 1000:
            time.sleep(0.8)
            crashy.process.kill()  # SIGKILL mid-stream
            crashy.process.wait()
            crashy.log.close()
            crashy.start()
    assert steady.wait_for(lambda: steady.metric("streamrec_updates_total") >= users * 3, 120)
    settled(crashy)
    for d in (steady, crashy):
        assert d.wait_for(lambda: d.metric("streamrec_users") <= 200, timeout=15), d.logtext()
    assert steady.metric('streamrec_embeddings_expired_total{kind="user"}') > 0
    assert steady.metric('streamrec_embeddings_evicted_total{kind="user"}') > 0
    assert steady.stop() == 0
    assert crashy.stop() == 0
    a, b = export(steady), export(crashy)
    live_a, live_b = users_by_id(a), users_by_id(b)
    # a TTL of 4 minutes at one user a second leaves the newest 241; the bound, 200
    assert sorted(live_a) == sorted(f"churn-{k}" for k in range(users - 200, users))
    assert sorted(live_a) == sorted(live_b)
    for user in live_a:
        assert live_a[user] == live_b[user], user
    assert a["item"] == b["item"]
    assert {k: v for k, v in a["meta"].items() if k.startswith(b"globals/")} == \
        {k: v for k, v in b["meta"].items() if k.startswith(b"globals/")}


def test_admission_waits_for_the_nth_event_and_survives_a_restart(daemons):
    """admit_after = 3: 60 users seen once and 40 seen twice get no row and
    no list, but their items are counted; 30 users seen four times are
    admitted at their third event. The sketch is in the state: after a
    restart, one more event admits each user seen twice."""
    daemon = daemons("lifecycle_admit", partitions=1)
    daemon.add_config("[lifecycle]\nadmit_after = 3\n")
    daemon.start()
    base = int(time.time() * 1000) - 600_000
    lines = []
    for k in range(60):
        lines.append(event_line(f"once-{k}", "item-popular", base + k, 0))
    for k in range(40):
        lines += [event_line(f"twice-{k}", "item-popular", base + k, n) for n in range(2)]
    for k in range(30):
        lines += [event_line(f"often-{k}", f"item-{k % 5}", base + k, n) for n in range(4)]
    send(daemon, lines)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= len(lines))
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_embeddings_unadmitted_events_total{kind="user"}')
        == 60 + 80 + 60, timeout=10), daemon.logtext()
    assert daemon.metric("streamrec_users") == 30
    assert daemon.metric('streamrec_embeddings_admitted_total{kind="user"}') == 30
    assert daemon.stop() == 0
    entries = export(daemon)
    assert sorted(users_by_id(entries)) == sorted(f"often-{k}" for k in range(30))
    # lists only for admitted users
    lists = [k for k in entries["meta"] if k.startswith(b"list/")]
    assert 0 < len(lists) <= 30
    daemon.start()
    send(daemon, [event_line(f"twice-{k}", "item-popular", base + 1000 + k, 2)
                  for k in range(40)])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_users") == 70, timeout=30), \
        daemon.logtext()
    assert daemon.stop() == 0


# ---- items -----------------------------------------------------------------------------

def item_churn(first_item, items, base_ms, prefix="churn-item", users=20):
    """Three events for each new item, adjacent, at the item's own event time
    (one second apart between items), from a fixed set of users: the items
    churn, the users stay."""
    lines = []
    for k in range(first_item, first_item + items):
        for n in range(3):
            lines.append(event_line(f"shopper-{(k * 7 + n) % users}", f"{prefix}-{k}",
                                    base_ms + k * 1000, k * 3 + n))
    return lines


def items_by_id(entries):
    """{item id: last-seen record} of the live items on disk (ids both ways agree)."""
    ids = entries["ids"]
    items = {}
    for key, value in ids.items():
        if key[:1] == b"i":
            assert ids.get(b"I" + value) == key[1:], key
            items[key[1:].decode()] = ids.get(b"J" + value)
    return items


def lists_with_step(daemon, timeout_ms=60000):
    """Every list on the recommendations topic: (model step, [item ids])."""
    out = subprocess.run([STREAMREC, "tail", "--brokers", daemon.broker.bootstrap, "--kind",
                          "recs", "--topic", daemon.recs, "--from-beginning", "--until-end",
                          "--timeout-ms", str(timeout_ms)], capture_output=True, text=True)
    lists = []
    for line in out.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "step" in fields and "items" in fields:
            lists.append((int(fields["step"]), [i.rsplit(":", 1)[0] for i in
                                                fields["items"].split(",") if i]))
    return lists


def vector_rows(entries):
    """(q rows, y rows) in an export's item family; nothing else is there."""
    keys = list(entries["item"])
    q = sum(1 for k in keys if len(k) == 5)
    y = sum(1 for k in keys if len(k) == 6 and k[5:] == b"y")
    assert q + y == len(keys), keys
    return q, y


def test_item_churn_stays_bounded_and_removed_items_are_never_listed_again(daemons):
    daemon = daemons("itemlife_churn", partitions=1)
    daemon.add_config("[lifecycle]\nmax_items = 30\nitem_ttl = 10m\n"
                      "[refresh]\nmin_item_events = 1\n")
    daemon.start()
    base = int(time.time() * 1000) - 3600_000
    # phase 1: 10 rounds of 20 new items, one second apart in event time (none
    # idles 10 minutes): the bound holds the state at 30 items
    for round_ in range(10):
        send(daemon, item_churn(round_ * 20, 20, base))
        assert daemon.wait_for(
            lambda: daemon.metric("streamrec_updates_total") >= (round_ + 1) * 60), \
            daemon.logtext()
        time.sleep(1.2)  # at least one commit, hence one sweep
        assert daemon.metric("streamrec_items") <= 30 + 20, daemon.logtext()
    assert daemon.wait_for(lambda: daemon.metric("streamrec_items") <= 30, timeout=10)
    assert daemon.metric('streamrec_embeddings_evicted_total{kind="item"}') == 200 - 30
    assert daemon.metric('streamrec_embeddings_admitted_total{kind="item"}') == 200
    assert daemon.metric('streamrec_embeddings_expired_total{kind="item"}') == 0
    assert daemon.metric('streamrec_embeddings_live{kind="item"}') == 30
    # phase 2: ten new items 20 minutes later in event time: the 30 idled past the TTL
    later = base + 200_000 + 20 * 60_000
    send(daemon, item_churn(0, 10, later, prefix="fresh"))
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_embeddings_expired_total{kind="item"}') == 30), \
        daemon.logtext()
    assert daemon.metric("streamrec_items") == 10
    learned = daemon.metric("streamrec_updates_total")
    # phase 3: the same shoppers again, on fresh items only: every list they
    # get now comes after the expiry, and names no removed item
    send(daemon, item_churn(10, 20, later + 20_000, prefix="fresh"))
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= learned + 60)
    time.sleep(2)
    after = [items for step, items in lists_with_step(daemon) if step > learned]
    assert len(after) >= 10, after
    assert any(items for items in after)
    for items in after:
        assert not any(i.startswith("churn-item-") for i in items), items
    assert daemon.stop() == 0, daemon.logtext()
    entries = export(daemon)
    live = items_by_id(entries)
    assert sorted(live) == sorted(f"fresh-{k}" for k in range(30))
    # on disk: the rows of live items only (one variant): each item's q row
    # (its 5-byte row key) and its y row (that key and b"y")
    assert vector_rows(entries) == (len(live), len(live))
    # a restart brings back no removed item
    daemon.start()
    assert daemon.wait_for(lambda: daemon.metric("streamrec_items") == len(live), timeout=10)
    assert daemon.stop() == 0


def test_the_lookup_api_never_shows_a_removed_item_nor_an_old_id(kafka_broker, tmp_path):
    """The lists kept for the lookup API name items by index. When the life
    cycle removes items, the kept lists drop them, saved with the commit
    that removes them (a restart agrees), and an item that takes a freed
    index later is shown by its own id. Before, the id first copied for an
    index stayed: a newcomer's lookup showed a removed item's id in place of
    the item the recommendations topic sent it, and old lists went on naming
    removed items."""
    daemon = ApiDaemon(kafka_broker, tmp_path, "itemlife_lookup")
    try:
        daemon.add_config("[lifecycle]\nmax_items = 30\nitem_ttl = 10m\n"
                          "[refresh]\nmin_item_events = 1\n")
        daemon.start()
        base = int(time.time() * 1000) - 3600_000
        send(daemon, item_churn(0, 20, base))
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 60)
        shoppers = [f"shopper-{u}" for u in range(20)]
        assert daemon.wait_for(lambda: all(daemon.lookup(u)[0] == 200 for u in shoppers), 30)
        assert any(i["item_id"].startswith("churn-item-")
                   for u in shoppers for i in json.loads(daemon.lookup(u)[1])["items"])
        # 20 minutes later in event time: a first fresh item expires the 20
        later = base + 20_000 + 20 * 60_000
        send(daemon, [event_line("newcomer-0", "fresh-0", later, 0)])
        assert daemon.wait_for(
            lambda: daemon.metric('streamrec_embeddings_expired_total{kind="item"}') == 20), \
            daemon.logtext()
        time.sleep(3)  # two commits (500 ms apart): the freed indices are handed out again
        send(daemon, [event_line(f"newcomer-{k % 5}", f"fresh-{1 + k // 2}", later + 1000 + k,
                                 k + 1) for k in range(40)])
        assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 101)
        settled(daemon)
        assert daemon.metric('streamrec_embeddings_live{kind="item"}') == 21

        def check():
            published = latest_lists(daemon)
            newcomers = [f"newcomer-{k}" for k in range(5)]
            for user in newcomers + shoppers:
                status, body = daemon.lookup(user)
                assert status == 200, (user, body)
                shown = [i["item_id"] for i in json.loads(body)["items"]]
                assert not any(i.startswith("churn-item-") for i in shown), (user, body)
                if user in newcomers:
                    assert shown == published[user][1], (user, body, published[user])
                    assert shown, user
            return published
        check()
        # the lists saved in the state dropped them too
        assert daemon.stop() == 0, daemon.logtext()
        daemon.start()
        check()
        assert daemon.stop() == 0, daemon.logtext()
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def test_sigkill_while_evicting_items_keeps_every_live_item(daemons):
    """As for users: one daemon killed with SIGKILL while items are evicted
    and expired, then restarted, ends with the same live items (by id, with
    the same last-seen times) as an undisturbed one reading the same topic."""
    steady = daemons("il_steady", partitions=1)
    crashy = daemons("il_crashy", partitions=1)
    crashy.config.write_text(crashy.config.read_text().replace(f"topic = {crashy.events}",
                                                               f"topic = {steady.events}"))
    life = "[lifecycle]\nmax_items = 100\nitem_ttl = 4m\n"
    steady.add_config(life)
    crashy.add_config(life)
    base = int(time.time() * 1000) - 7200_000
    items = 1500
    steady.start()
    crashy.start()
    for first in range(0, items, 250):
        send(steady, item_churn(first, 250, base, users=50))
        if first == 500:
            time.sleep(0.8)
            crashy.process.kill()  # SIGKILL mid-stream
            crashy.process.wait()
            crashy.log.close()
            crashy.start()
    assert steady.wait_for(lambda: steady.metric("streamrec_updates_total") >= items * 3, 120)
    settled(crashy)
    for d in (steady, crashy):
        assert d.wait_for(lambda: d.metric("streamrec_items") <= 100, timeout=15), d.logtext()
    assert steady.metric('streamrec_embeddings_evicted_total{kind="item"}') + \
        steady.metric('streamrec_embeddings_expired_total{kind="item"}') == items - 100
    assert steady.stop() == 0
    assert crashy.stop() == 0
    a, b = export(steady), export(crashy)
    live_a, live_b = items_by_id(a), items_by_id(b)
    assert sorted(live_a) == sorted(f"churn-item-{k}" for k in range(items - 100, items))
    assert live_a == live_b
    assert vector_rows(a) == vector_rows(b) == (100, 100)
