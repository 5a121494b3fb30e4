"""Content vectors end to end, against the real Kafka broker and real RocksDB.

A planted world: four kinds of items, users who act on one kind each. Items
are announced on the items topic with content vectors (as an upstream text
model would place them: one kind near each other); the daemon learns its
content map from the items users act on. Then an item nobody has touched is
announced: users of its kind get it in their lists, users of other kinds do
not, and a variant with the content signal off never lists it. The map
survives a restart; vectors that break the contract are dead letters.
"""
import json
import math
import random
import subprocess
import time

import fastavro
import pytest

from harness import SCHEMAS
from kafka_send import send_records
from test_daemon_e2e import STREAMREC, daemon, engine, latest_lists, settled  # noqa: F401 (fixtures)

pytestmark = pytest.mark.kafka

KINDS, PER_KIND, USERS, DIM, MODEL = 4, 12, 160, 8, "test-embedder"
ITEM_SCHEMA = fastavro.parse_schema(json.loads((SCHEMAS / "item_event.avsc").read_text()))
USER_SCHEMA = fastavro.parse_schema(json.loads((SCHEMAS / "user_event.avsc").read_text()))
CONTENT_CONFIG = f"""[content]
dim = {DIM}
model_name = {MODEL}
[model]
content_min_events = 30
content_refit_items = 4
[variant.content]
share = 0.5
[variant.plain]
share = 0.5
use_content = false
use_search = false
"""


def kind_centres():
    rng = random.Random(5)
    return [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(KINDS)]


def content_of(centre, rng):
    return [x + rng.gauss(0, 0.05) for x in centre]


def send_items(daemon, items):
    """items: dicts of ItemEvent fields (item_id and content at least)."""
    send_records(daemon.broker.bootstrap, daemon.items, ITEM_SCHEMA,
                 [(item["item_id"], {"item_id": item["item_id"], "category": None,
                                     "price": None, "in_stock": True, "ts": 1700000000000,
                                     "title": item.get("title"), "description": None,
                                     "content": item.get("content")})
                  for item in items])


def vector(model, values):
    return {"model": model, "dim": len(values), "vector": values}


def produce_events(daemon, tmp_path, rows, name):
    path = tmp_path / name
    path.write_text("ts_ms,user_id,item_id,type\n" +
                    "".join(f"{ts},{u},{i},{t}\n" for ts, u, i, t in rows))
    subprocess.run([STREAMREC, "produce", "--brokers", daemon.broker.bootstrap, "--topic",
                    daemon.events, "--file", path, "--rate", "0"], check=True,
                   capture_output=True)


def planted_events(count, seed):
    rng = random.Random(seed)
    start = int(time.time() * 1000) - 10 * count
    rows = []
    for e in range(count):
        user = rng.randrange(USERS)
        item = f"k{user % KINDS}-i{rng.randrange(PER_KIND)}"
        rows.append((start + 10 * e, f"u{user}", item, rng.choice(["VIEW", "CLICK"])))
    return rows


def lists_holding(daemon, item):
    """{kind: (users whose latest list holds item, users with a list)} per variant."""
    found = {}
    for user, (variant, items) in latest_lists(daemon, 10000).items():
        kind = int(user[1:]) % KINDS
        held, total = found.setdefault(variant, {}).get(kind, (0, 0))
        found[variant][kind] = (held + (item in items), total + 1)
    return found


def test_a_new_item_reaches_users_of_its_kind_before_any_click(daemon, tmp_path):
    daemon.add_config(CONTENT_CONFIG)
    centres = kind_centres()
    rng = random.Random(9)
    daemon.start()
    send_items(daemon, [{"item_id": f"k{k}-i{j}", "content": vector(MODEL, content_of(centres[k], rng))}
                        for k in range(KINDS) for j in range(PER_KIND)])
    # all announced before anyone acts: nothing to place from yet, all kept for the map
    assert daemon.wait_for(lambda: daemon.metric(
        'streamrec_content_vectors_total{outcome="stored"}') >= KINDS * PER_KIND, 30)
    produce_events(daemon, tmp_path, planted_events(8000, 1), "learn.csv")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 8000, 120), \
        daemon.logtext()
    stored = daemon.metric('streamrec_content_vectors_total{outcome="stored"}')
    assert stored == KINDS * PER_KIND  # the map was not solved when they came

    # the new item, of kind 0, nobody has touched it
    send_items(daemon, [{"item_id": "new-0", "content": vector(MODEL, content_of(centres[0], rng))}])
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_content_vectors_total{outcome="placed"}') >= 1, 30), \
        daemon.logtext()
    # every user acts once more: lists published after the announcement
    produce_events(daemon, tmp_path, [(int(time.time() * 1000), f"u{u}",
                                       f"k{u % KINDS}-i0", "VIEW") for u in range(USERS)],
                   "touch.csv")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 8000 + USERS, 60)
    settled(daemon)
    time.sleep(2)
    found = lists_holding(daemon, "new-0")
    print("lists holding new-0, by variant and kind:", found)
    content, plain = found["content"], found["plain"]
    own = content[0][0] / content[0][1]
    others = sum(content[k][0] for k in range(1, KINDS)) / sum(content[k][1] for k in range(1, KINDS))
    assert own >= 0.8, found
    assert own > others + 0.5, found
    # the content signal switched off: an item without events is never listed
    assert sum(held for held, _ in plain.values()) == 0, found

    # the content map survives a restart: with no event since, a new item of
    # kind 2 is placed at once from the restored map
    assert daemon.stop() == 0
    daemon.start()
    send_items(daemon, [{"item_id": "new-2", "content": vector(MODEL, content_of(centres[2], rng))}])
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_content_vectors_total{outcome="placed"}') >= 1, 30), \
        daemon.logtext()
    assert daemon.stop() == 0


def test_content_vectors_that_break_the_contract_are_dead_letters(daemon):
    daemon.add_config(CONTENT_CONFIG)
    daemon.start()
    good = [0.1] * DIM
    send_items(daemon, [
        {"item_id": "short", "content": vector(MODEL, [0.1] * (DIM - 1))},
        {"item_id": "other-model", "content": vector("another-model", good)},
        {"item_id": "not-a-number", "content": vector(MODEL, good[:-1] + [math.nan])},
        {"item_id": "infinite", "content": vector(MODEL, good[:-1] + [math.inf])},
        {"item_id": "lying-dim", "content": {"model": MODEL, "dim": DIM + 1, "vector": good}},
        {"item_id": "fine", "content": vector(MODEL, good)},
        {"item_id": "text-only", "title": "A red shoe"},
    ])
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_invalid_events_total{reason="invalid_field"}') >= 5, 30), \
        daemon.logtext()
    assert daemon.wait_for(
        lambda: daemon.metric("streamrec_content_texts_unembedded_total") >= 1, 30)
    assert daemon.metric('streamrec_content_vectors_total{outcome="stored"}') == 1  # "fine"
    assert daemon.wait_for(lambda: daemon.metric("streamrec_dlq_messages_total") >= 5, 30)
    # dead-letter log lines are rate-limited per reason: the first one names its fault
    # (the codec's own messages for NaN and a lying dim: tests/interop/test_item_content_schema.py)
    assert "item short: content.dim is 7, content.dim configured is 8" in daemon.logtext()
    assert daemon.stop() == 0


def send_searches(daemon, searches):
    """searches: (user, search dict) pairs, sent as UserEvents with an empty item_id."""
    send_records(daemon.broker.bootstrap, daemon.events, USER_SCHEMA,
                 [(user, {"event_id": f"search-{user}-{n}", "user_id": user, "item_id": "",
                          "type": "VIEW", "ts": int(time.time() * 1000), "session_id": None,
                          "quantity": None, "price": None, "list_id": None, "search": search})
                  for n, (user, search) in enumerate(searches)])


def share_of_kind(lists, users, kind):
    listed = [item for u in users if u in lists for item in lists[u][1]]
    return sum(item.startswith(f"k{kind}-") for item in listed) / max(1, len(listed))


def test_a_search_moves_the_next_list_towards_matching_items(daemon, tmp_path):
    daemon.add_config(CONTENT_CONFIG)
    centres = kind_centres()
    rng = random.Random(19)
    daemon.start()
    send_items(daemon, [{"item_id": f"k{k}-i{j}", "content": vector(MODEL, content_of(centres[k], rng))}
                        for k in range(KINDS) for j in range(PER_KIND)])
    assert daemon.wait_for(lambda: daemon.metric(
        'streamrec_content_vectors_total{outcome="stored"}') >= KINDS * PER_KIND, 30)
    produce_events(daemon, tmp_path, planted_events(8000, 3), "learn.csv")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 8000, 120), \
        daemon.logtext()
    settled(daemon)
    searchers = [f"u{u}" for u in range(USERS) if u % KINDS == 0]
    before = latest_lists(daemon, 10000)
    # users of kind 0 search for something of kind 2 (the query near its items' content)
    send_searches(daemon, [(u, {"text": "something of kind 2",
                                "content": vector(MODEL, content_of(centres[2], rng))})
                           for u in searchers])
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_search_events_total{outcome="applied"}') >= len(searchers),
        30), daemon.logtext()
    time.sleep(3)
    after = latest_lists(daemon, 10000)
    by_variant = {v: [u for u in searchers if after.get(u, ("",))[0] == v] for v in ("content", "plain")}
    moved = {v: (share_of_kind(before, users, 2), share_of_kind(after, users, 2))
             for v, users in by_variant.items()}
    print("share of kind-2 items in the searchers' lists, before and after:", moved)
    assert all(len(users) >= 10 for users in by_variant.values()), by_variant
    # the plain variant's lists drift a little between the two snapshots (the
    # "before" lists were made during learning, the "after" ones on the final
    # model; a CI run saw exactly 0.05): the search must move the content
    # variant's far more than that drift
    drift = abs(moved["plain"][1] - moved["plain"][0])
    assert drift < 0.1, moved
    assert moved["content"][1] > moved["content"][0] + drift + 0.15, moved
    # a search whose vector breaks the contract is a dead letter; text alone is counted
    send_searches(daemon, [("u1", {"text": None, "content": vector(MODEL, [0.5] * (DIM + 2))}),
                           ("u1", {"text": "red shoes", "content": None})])
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_invalid_events_total{reason="invalid_field"}') >= 1, 30)
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_search_events_total{outcome="unembedded"}') >= 1, 30)
    assert "search.content is 10 numbers" in daemon.logtext()
    assert daemon.stop() == 0
