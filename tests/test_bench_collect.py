"""bench/collect (the end-to-end benchmark's consumer) against a real daemon.

A short stream with known event times goes through streamrecd; the collector
then reads the recommendations topic. Every list it reports must carry the
event time of one of its user's events, the last list of each user the
newest of them; its count must equal what the daemon says it published; its
percentiles must be the nearest-rank percentiles of the per-record values it
wrote; and the hand-rolled fast decoder must agree with the codec's. No
timing thresholds.
"""
import json
import math
import subprocess
import time

import pytest

from harness import BUILD
from test_daemon_e2e import STREAMREC, Daemon, daemon  # noqa: F401 (fixture)

COLLECT = BUILD / "bench" / "collect"
pytestmark = pytest.mark.kafka

USERS, ITEMS, EVENTS = 40, 25, 1200
TYPES = ("VIEW", "CLICK", "ADD_TO_CART", "VIEW", "FAVORITE")


def write_stream(path):
    """Events with distinct, known times in the recent past; returns {user: [ts...]}."""
    base = int(time.time() * 1000) - 40_000
    times = {}
    lines = ["ts_ms,user_id,item_id,type"]
    for i in range(EVENTS):
        user, item, ts = f"cu{(i * 7) % USERS}", f"ci{(i * 13) % ITEMS}", base + 10 * i
        lines.append(f"{ts},{user},{item},{TYPES[i % len(TYPES)]}")
        times.setdefault(user, []).append(ts)
    path.write_text("\n".join(lines) + "\n")
    return times


def run_collect(d, tmp_path, mode):
    records = tmp_path / f"records-{mode}.tsv"
    out = subprocess.run([COLLECT, "--brokers", d.broker.bootstrap, "--topic", d.recs,
                          "--from-beginning", "--idle-ms", "3000", "--decode", mode,
                          "--records", records], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[0]["kind"] == "ready" and lines[0]["partitions"] == 3
    segment = lines[-1]
    assert segment["kind"] == "segment", lines[-1]
    rows = []
    for line in records.read_text().splitlines():
        partition, offset, user, trigger, generated, received = line.split("\t")
        rows.append((int(partition), int(offset), user, int(trigger), int(generated),
                     int(received)))
    return segment, rows


def nearest_rank(values, p):
    values = sorted(values)
    return values[max(1, math.ceil(p * len(values))) - 1]


def test_collector_matches_trigger_timestamps(daemon, tmp_path):
    times = write_stream(tmp_path / "stream.csv")
    daemon.start()
    subprocess.run([STREAMREC, "produce", "--brokers", daemon.broker.bootstrap, "--topic",
                    daemon.events, "--file", tmp_path / "stream.csv", "--rate", "0"],
                   check=True, capture_output=True, timeout=120)
    assert daemon.wait_for(lambda: daemon.metric("streamrec_events_total") == EVENTS), \
        daemon.logtext()

    def published_settled():
        before = daemon.metric("streamrec_recommendations_total")
        time.sleep(1.0)
        return before > 0 and daemon.metric("streamrec_recommendations_total") == before

    assert daemon.wait_for(published_settled), daemon.logtext()
    published = daemon.metric("streamrec_recommendations_total")

    segment, rows = run_collect(daemon, tmp_path, "fast")
    assert segment["count"] == published == len(rows)
    assert segment["invalid"] == 0

    # every list carries one of its user's event times; each user's last list the newest
    newest = {}
    for partition, offset, user, trigger, generated, received in rows:
        assert trigger in times[user], (user, trigger)
        assert trigger <= generated <= received
        newest[user] = max(newest.get(user, trigger), trigger)
    assert newest == {user: max(ts) for user, ts in times.items()}

    # the reported percentiles are those of the per-record values, all ordered
    e2e = [received - trigger for *_, trigger, generated, received in rows]
    inside = [generated - trigger for *_, trigger, generated, received in rows]
    for name, values in (("e2e_ms", e2e), ("daemon_ms", inside)):
        reported = segment[name]
        assert reported["negative"] == 0 and reported["overflow"] == 0
        for key, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999)):
            assert reported[key] == nearest_rank(values, p), (name, key)
        assert 0 <= reported["p50"] <= reported["p95"] <= reported["p99"] <= reported["p999"] \
            <= reported["max"]
        assert reported["max"] == max(values)

    # the fast decoder reads what the codec reads
    full_segment, full_rows = run_collect(daemon, tmp_path, "full")
    assert full_segment["count"] == published
    assert sorted(r[:5] for r in full_rows) == sorted(r[:5] for r in rows)
    assert daemon.stop() == 0
