"""Texts embedded off the event loop (content.text_threads), end to end
against the real Kafka broker: two daemons read the same topics, one
embedding item titles and search queries on its loop (content.text_threads
= 0), the other on two text threads, holding each message until its text
is embedded. Item titles come in waves between user events; searches in
words are interleaved with the user events of the same partition. Both
daemons learn the very same model (equal `streamrec digest`): the held
messages were applied in their order, each once.

A daemon killed while messages wait for their texts loses none: they were
never marked, and are read again after the restart.

The events topic has one partition, as in test_sigkill_under_load: the
digest depends on the order of events across partitions, which two
consumers do not share. Each wave of items is embedded by both daemons
before the next wave of events, for the same reason across the two topics.
"""
import random
import subprocess
import time

import pytest

from kafka_send import send_records
from test_content_e2e import USER_SCHEMA, send_items
from test_daemon_e2e import STREAMREC, Daemon, settled
from test_text_content_e2e import CONFIG, KINDS, MODEL, title

pytestmark = pytest.mark.kafka

USERS, PER_KIND, NEW_PER_KIND = 60, 8, 2
QUERIES = [["shoes for running a marathon", "trail running sneakers"],
           ["strong coffee beans", "espresso roast"],
           ["hose to water my lawn", "garden sprinkler"],
           ["charger for my laptop", "usb-c power adapter 65w"]]


def send_events(daemon, rows):
    """rows: (ts_ms, user, item, search text or None) in order, to the events topic."""
    send_records(daemon.broker.bootstrap, daemon.events, USER_SCHEMA,
                 [(user, {"event_id": f"e{n}-{user}", "user_id": user,
                          "item_id": "" if text else item, "type": "VIEW", "ts": ts,
                          "session_id": None, "quantity": None, "price": None, "list_id": None,
                          "search": {"text": text, "content": None} if text else None})
                  for n, (ts, user, item, text) in enumerate(rows)])


def event_wave(rng, start_ms, count, items_of_kind):
    """User events on the items of each user's kind, a search in words every so often."""
    rows = []
    for e in range(count):
        u = rng.randrange(USERS)
        kind = u % KINDS
        text = rng.choice(QUERIES[kind]) if rng.random() < 0.08 else None
        rows.append((start_ms + 5 * e, f"u{u}", rng.choice(items_of_kind[kind]), text))
    return rows


def twin_daemons(kafka_broker, tmp_path, first, first_threads, second, second_threads):
    """Two daemons on the first one's topics (one partition), with their own
    state and content.text_threads each."""
    a = Daemon(kafka_broker, tmp_path, first, partitions=1)
    b = Daemon(kafka_broker, tmp_path, second, partitions=1)
    b.config.write_text(b.config.read_text()
                        .replace(f"topic = {second}.events", f"topic = {first}.events")
                        .replace(f"items_topic = {second}.items", f"items_topic = {first}.items"))
    a.add_config(CONFIG.replace("[content]\n", f"[content]\ntext_threads = {first_threads}\n"))
    b.add_config(CONFIG.replace("[content]\n", f"[content]\ntext_threads = {second_threads}\n"))
    return a, b


def stop_and_compare_digests(both):
    """Stops both daemons cleanly and asserts their states digest alike (read
    with the daemons' settings: rows written with content.dim hold content state)."""
    for d in both:
        assert d.stop() == 0
    digests = [subprocess.run([STREAMREC, "digest", "--config", d.config],
                              check=True, capture_output=True, text=True).stdout
               for d in both]
    assert digests[0] == digests[1], digests


def kill_left(both):
    for d in both:
        if d.process is not None and d.process.poll() is None:
            d.process.kill()


def test_text_threads_learn_the_same_model_as_the_loop(kafka_broker, tmp_path):
    assert MODEL.exists(), f"{MODEL} missing: make deps-model"
    loop, pool = both = twin_daemons(kafka_broker, tmp_path, "onloop", 0, "pooled", 2)
    rng = random.Random(11)
    try:
        for d in both:
            d.start()
        items_of_kind = [[] for _ in range(KINDS)]
        start = int(time.time() * 1000) - 120000
        texts = searches = events = 0
        for wave, per_kind in enumerate([PER_KIND, NEW_PER_KIND, NEW_PER_KIND]):
            # a wave of items known by their titles only
            items = [{"item_id": f"k{k}-w{wave}-i{j}", "title": title(k, j, rng)}
                     for k in range(KINDS) for j in range(per_kind)]
            for item in items:
                items_of_kind[int(item["item_id"][1])].append(item["item_id"])
            send_items(loop, items)
            texts += len(items)
            for d in both:
                assert d.wait_for(lambda d=d: d.metric(
                    "streamrec_content_texts_embedded_total") >= texts, 180), d.logtext()
            # then user events, searches in words among them
            rows = event_wave(rng, start + 20000 * wave, 1500, items_of_kind)
            send_events(loop, rows)
            wave_searches = sum(1 for r in rows if r[3] is not None)
            searches += wave_searches
            events += len(rows) - wave_searches
            texts += wave_searches
            for d in both:
                assert d.wait_for(lambda d=d: d.metric("streamrec_updates_total") >= events and
                                  d.metric("streamrec_search_events_total") >= searches,
                                  180), d.logtext()
        for d in both:
            settled(d)
            assert d.metric("streamrec_content_texts_embedded_total") == texts
            assert d.metric("streamrec_content_texts_unembedded_total") == 0
        assert loop.metric('streamrec_search_events_total{outcome="applied"}') > 0
        assert pool.metric('streamrec_search_events_total{outcome="applied"}') == \
            loop.metric('streamrec_search_events_total{outcome="applied"}')
        # the loop embedded nothing on threads; the pool everything, holding messages for it
        assert loop.metric("streamrec_text_embed_seconds_total") == 0
        assert loop.metric("streamrec_text_embed_holds_total") == 0
        assert pool.metric("streamrec_text_embed_seconds_total") > 0
        assert pool.metric("streamrec_text_embed_holds_total") > 0
        assert pool.metric("streamrec_text_embed_queue") == 0
        stop_and_compare_digests(both)
    finally:
        kill_left(both)


def test_a_crash_while_messages_wait_for_their_text_loses_nothing(kafka_broker, tmp_path):
    """A daemon on one text thread is SIGKILLed while searches in words wait
    for their vectors (held, unmarked) and restarted: it ends with the same
    model as a daemon that embedded every text on its loop, uninterrupted."""
    assert MODEL.exists(), f"{MODEL} missing: make deps-model"
    steady, crashy = both = twin_daemons(kafka_broker, tmp_path, "steadytext", 0,
                                         "crashytext", 1)
    rng = random.Random(23)
    try:
        for d in both:
            d.start()
        items = [{"item_id": f"k{k}-w0-i{j}", "title": title(k, j, rng)}
                 for k in range(KINDS) for j in range(PER_KIND)]
        items_of_kind = [[i["item_id"] for i in items if i["item_id"][1] == str(k)]
                         for k in range(KINDS)]
        send_items(steady, items)
        for d in both:
            assert d.wait_for(lambda d=d: d.metric(
                "streamrec_content_texts_embedded_total") >= len(items), 180), d.logtext()
        start = int(time.time() * 1000) - 60000
        rows = event_wave(rng, start, 3000, items_of_kind)
        # every fifth event a search in words: the text thread stays behind
        rows = [(ts, u, i, rng.choice(QUERIES[int(u[1:]) % KINDS]) if n % 5 == 0 else text)
                for n, (ts, u, i, text) in enumerate(rows)]
        send_events(steady, rows)
        events = sum(1 for r in rows if r[3] is None)
        assert crashy.wait_for(lambda: crashy.metric("streamrec_text_embed_holds_total") >= 20,
                               120), crashy.logtext()
        crashy.process.kill()  # SIGKILL while a message waits for its text
        crashy.process.wait()
        crashy.log.close()
        crashy.start()
        assert steady.wait_for(lambda: steady.metric("streamrec_updates_total") >= events, 300)
        settled(steady)
        assert crashy.wait_for(lambda: crashy.metric("streamrec_text_embed_queue") == 0 and
                               crashy.metric("streamrec_content_texts_embedded_total") > 0, 300)
        settled(crashy, seconds=5)
        stop_and_compare_digests(both)
    finally:
        kill_left(both)
