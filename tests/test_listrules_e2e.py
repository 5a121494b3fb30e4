"""List rules per variant (README, "List rules") end to end: streamrecd
against the real Kafka broker and real RocksDB. Rules on one variant change
its published lists and their reasons, SIGHUP changes them without a
restart, the other variant stays untouched; exploration raises the exposure
of new items on a planted stream where new items keep arriving.
"""
import json
import signal
import subprocess
import time

import pytest

from kafka_send import send_item_events, send_raw
from test_daemon_e2e import STREAMREC, daemon_name, engine, settled, user_event  # noqa: F401 (engine)
from test_lookup_api import ApiDaemon

pytestmark = pytest.mark.kafka

ITEMS = 50


def category(item):
    return f"cat-{int(item.split('-')[1]) % 5}"


def lists_with_reasons(daemon, timeout_ms=60000):
    """user -> (variant, [(item id, reason)]) of the newest list on the topic."""
    out = subprocess.run([STREAMREC, "tail", "--brokers", daemon.broker.bootstrap, "--kind",
                          "recs", "--topic", daemon.recs, "--from-beginning", "--until-end",
                          "--timeout-ms", str(timeout_ms)], capture_output=True, text=True)
    lists = {}
    for line in out.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "user" not in fields or "items" not in fields:
            continue
        items = [i.rsplit(":", 1)[0] for i in fields["items"].split(",") if i]
        reasons = [w.split(":", 1)[0] for w in fields.get("why", "").split(",") if w]
        lists[fields["user"]] = (fields["variant"], list(zip(items, reasons)))
    return lists


@pytest.fixture
def daemon(kafka_broker, tmp_path, request):
    d = ApiDaemon(kafka_broker, tmp_path, daemon_name(request.node.name))
    yield d
    if d.process is not None and d.process.poll() is None:
        d.process.kill()
        d.process.wait()


def configure(daemon, base, ruled):
    daemon.config.write_text(base.replace(
        "[http]", "[variant.plain]\nshare = 0.5\n[variant.ruled]\nshare = 0.5\n" + ruled +
        "[http]"))


def check_plain(lists):
    """The plain variant: no rule reasons; its lists do hold what the rules would remove."""
    plain = [items for variant, items in lists.values() if variant == "plain"]
    assert len(plain) > 50
    assert all(reason not in ("pinned", "boosted", "explore") for items in plain
               for _, reason in items)
    return plain


def test_rules_change_one_variants_lists_and_reload_without_a_restart(daemon):
    base = daemon.config.read_text()
    configure(daemon, base, "exclude_categories = cat-0\nmax_per_category = 4\n"
              "pin = item-49@1\nboost = item:item-7=100\n")
    daemon.start()
    pid = daemon.process.pid
    send_item_events(daemon.broker.bootstrap, daemon.items,
                     [(f"item-{i}", True, category(f"item-{i}")) for i in range(ITEMS)])
    time.sleep(2)
    daemon.produce(4000, users=200, items=ITEMS)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2 * 4000, 120)
    # users whose only events are impressions are cold: the trending list, ruled too
    send_raw(daemon.broker.bootstrap, daemon.events,
             [user_event(f"cold-{u}", "item-3", etype=0) for u in range(30)])
    settled(daemon)
    lists = lists_with_reasons(daemon)
    cold = [items for user, (variant, items) in lists.items()
            if user.startswith("cold-") and variant == "ruled"]
    assert len(cold) >= 5, lists.keys()
    for items in cold:
        assert items[0] == ("item-49", "pinned"), items
        assert all(reason in ("cold_start", "boosted") for _, reason in items[1:]), items
        assert "cat-0" not in [category(i) for i, _ in items], items

    plain = check_plain(lists)
    assert any(category(i) == "cat-0" for items in plain for i, _ in items)
    cats_of = [[category(i) for i, _ in items] for items in plain]
    assert any(max(cats.count(c) for c in cats) > 4 for cats in cats_of)

    ruled = [items for variant, items in lists.values() if variant == "ruled"]
    assert len(ruled) > 50
    pinned = boosted = 0
    for items in ruled:
        # four categories of four: the over-fetched candidates fill what the rules allow
        assert len(items) >= 14, items
        cats = [category(i) for i, _ in items]
        assert "cat-0" not in cats, items
        # the cap counts pinned items; item-49 is cat-4
        assert all(cats.count(c) <= 4 for c in set(cats)), items
        for rank, (item, reason) in enumerate(items):
            if item == "item-49":
                assert rank == 0 and reason == "pinned", items
                pinned += 1
            elif item == "item-7":
                assert reason == "boosted", items
                boosted += 1
            else:
                assert reason not in ("pinned", "boosted", "explore"), items
    # a user who bought item-49 never sees it, pinned or not: most have not
    assert pinned > len(ruled) // 2 and boosted > len(ruled) // 2, (pinned, boosted)
    # the lookup API answers the lists as published, the rules' reasons included
    time.sleep(1)
    for user in sorted(u for u, (v, _) in lists.items() if v == "ruled")[:10]:
        status, body = daemon.lookup(user)
        assert status == 200, body
        doc = json.loads(body)
        assert [(i["item_id"], i.get("reason", "-")) for i in doc["items"]] == lists[user][1]

    # SIGHUP: other rules for the ruled variant, the plain one as it was
    configure(daemon, base, "exclude_categories = cat-1\npin = item-48@2\n")
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.wait_for(lambda: "reloaded" in daemon.logtext(), 20), daemon.logtext()
    assert "variant.ruled.pin: item-49@1 -> item-48@2" in daemon.logtext(), daemon.logtext()
    daemon.produce(4000, users=200, items=ITEMS, seed=5)  # every user refreshed again
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 4 * 4000, 120)
    settled(daemon)
    assert daemon.process.pid == pid and daemon.process.poll() is None
    lists = lists_with_reasons(daemon)
    check_plain(lists)
    # (the cold users' lists were not made again: they had no event since)
    ruled = [items for user, (variant, items) in lists.items()
             if variant == "ruled" and not user.startswith("cold-")]
    assert len(ruled) > 50
    pinned = 0
    for items in ruled:
        cats = [category(i) for i, _ in items]
        assert len(items) == 20, items  # no cap now
        assert "cat-1" not in cats, items
        assert all(reason != "boosted" for _, reason in items), items
        for rank, (item, reason) in enumerate(items):
            if item == "item-48":
                assert rank == 1 and reason == "pinned", items
                pinned += 1
        assert "item-49" not in [i for i, _ in items[:1]] or items[0][1] != "pinned"
    assert pinned > len(ruled) // 2, pinned
    assert any(category(i) == "cat-0" for items in ruled for i, _ in items)
    # a pinned item the user buys, or one out of stock, leaves the list
    buyer = next(u for u, (v, items) in lists.items()
                 if v == "ruled" and ("item-48", "pinned") in items and not u.startswith("cold-"))
    send_raw(daemon.broker.bootstrap, daemon.events, [user_event(buyer, "item-48", etype=6)])
    assert daemon.wait_for(lambda: "item-48" not in
                           [i for i, _ in lists_with_reasons(daemon, 3000)[buyer][1]], 30)
    send_item_events(daemon.broker.bootstrap, daemon.items, [("item-48", False, "cat-3")])
    time.sleep(2)
    daemon.produce(2000, users=200, items=ITEMS, seed=6)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2 * 10000, 120)
    settled(daemon)
    lists = lists_with_reasons(daemon)
    refreshed = [items for u, (v, items) in lists.items() if v == "ruled" and u != buyer and
                 not u.startswith("cold-")]
    assert refreshed and all("item-48" not in [i for i, _ in items] for items in refreshed)
    # a bad rule is refused at reload, naming the key; the running rules stay
    configure(daemon, base, "exclude_categories = cat-1\npin = item-48@0\n")
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.wait_for(lambda: "reload refused" in daemon.logtext(), 20), daemon.logtext()
    assert "pin" in daemon.logtext().split("reload refused")[-1]
    # the lists kept in the state keep their rules' reasons across a restart
    users = sorted(u for u, (v, _) in lists.items() if v == "ruled")[:10]
    before = {u: daemon.lookup(u) for u in users}
    assert any('"reason":"pinned"' in body for _, body in before.values())
    assert daemon.stop() == 0
    configure(daemon, base, "exclude_categories = cat-1\npin = item-48@2\n")
    daemon.start()
    assert {u: daemon.lookup(u) for u in users} == before
    assert daemon.stop() == 0


def test_exploration_raises_the_exposure_of_new_items(daemon, tmp_path):
    """A planted stream where half the items launch while it runs: the
    variant with explore_share shows clearly more items that are still new
    (fewer than explore_max_events positive events in the whole stream) and
    more distinct ones than the same model without exploration."""
    events = tmp_path / "arrivals.csv"
    subprocess.run([STREAMREC, "gen", "--events", "40000", "--users", "400", "--items", "600",
                    "--clusters", "6", "--seed", "3", "--arrival-share", "0.5", "--out", events],
                   check=True, capture_output=True)
    positives = {}
    for line in events.read_text().splitlines()[1:]:
        _, _, item, kind, _ = line.split(",")
        if kind not in ("IMPRESSION", "REMOVE_FROM_CART"):
            positives[item] = positives.get(item, 0) + 1
    new = {item for item, n in positives.items() if n < 5}
    assert len(new) > 20, len(new)
    daemon.config.write_text(daemon.config.read_text().replace(
        "[http]", "[variant.plain]\nshare = 0.5\n[variant.explore]\nshare = 0.5\n"
        "explore_share = 0.2\nexplore_max_events = 5\n[http]"))
    daemon.start()
    subprocess.run([STREAMREC, "produce", "--brokers", daemon.broker.bootstrap, "--topic",
                    daemon.events, "--file", events, "--rate", "0"], check=True,
                   capture_output=True)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 2 * 40000, 180)
    settled(daemon)
    lists = lists_with_reasons(daemon, 15000)
    exposure = {}
    for variant in ("plain", "explore"):
        chosen = [items for v, items in lists.values() if v == variant]
        assert len(chosen) > 100, (variant, len(chosen))
        slots = sum(len(items) for items in chosen)
        new_slots = sum(item in new for items in chosen for item, _ in items)
        shown = {item for items in chosen for item, _ in items if item in new}
        explored = sum(reason == "explore" for items in chosen for _, reason in items)
        exposure[variant] = (new_slots / slots, len(shown), explored / slots)
    print("new-item exposure (share of slots, distinct new items shown, explore slots):",
          exposure)
    assert exposure["plain"][2] == 0
    # 4 of 20 slots: the stream keeps dozens of new items to draw from
    assert 0.19 <= exposure["explore"][2] <= 0.2 + 1e-9, exposure
    assert exposure["explore"][0] > 2 * exposure["plain"][0] + 0.02, exposure
    assert exposure["explore"][1] > 2 * exposure["plain"][1], exposure
    assert daemon.stop() == 0
