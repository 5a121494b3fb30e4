#!/usr/bin/env python3
"""How long the event loop stalls while item texts are embedded: a local
broker, streamrecd with the bundled text model, and COUNT item titles sent at
once, with content.text_threads = 0 (embedded on the loop) and then 1 (off
the loop). A thread asks /metrics (served by the loop) every 10 ms while the
titles are embedded and records how long each answer took: the loop's stalls,
as any event, timer or list would see them. Also the time until every title
is embedded.

    build/venv/bin/python bench/text_stall.py [--count 200] [--threads 0,1]

Prints a table; figures are printed, never asserted (tests/ has no timing goals).
"""
import argparse
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("STREAMREC_BUILD", str(ROOT / "build"))

from conftest import BROKER, Broker  # noqa: E402
from test_content_e2e import send_items  # noqa: E402
from test_daemon_e2e import Daemon  # noqa: E402
from test_text_content_e2e import CONFIG, KINDS, title  # noqa: E402


def poll_latencies(port, stop, out):
    while not stop.is_set():
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
                r.read()
        except OSError:
            pass
        out.append(time.monotonic() - started)
        time.sleep(0.01)


def run(broker, tmp, threads, count):
    d = Daemon(broker, tmp, f"stall{threads}", partitions=1)
    d.add_config(CONFIG.replace("[content]\n", f"[content]\ntext_threads = {threads}\n"))
    d.start()
    try:
        rng = random.Random(7)
        items = [{"item_id": f"s{threads}-i{j}", "title": title(j % KINDS, j, rng) + f" {j}"}
                 for j in range(count)]
        latencies, stop = [], threading.Event()
        poller = threading.Thread(target=poll_latencies, args=(d.port, stop, latencies))
        poller.start()
        time.sleep(0.5)
        started = time.monotonic()
        send_items(d, items)
        done = d.wait_for(lambda: d.metric("streamrec_content_texts_embedded_total") >= count,
                          600)
        elapsed = time.monotonic() - started
        stop.set()
        poller.join()
        assert done, d.logtext()
        latencies.sort()
        return {"threads": threads, "embed_s": elapsed, "answers": len(latencies),
                "median_ms": 1000 * statistics.median(latencies),
                "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
                "max_ms": 1000 * latencies[-1],
                "seconds_on_threads": d.metric("streamrec_text_embed_seconds_total"),
                "holds": d.metric("streamrec_text_embed_holds_total")}
    finally:
        d.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--threads", default="0,1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="text-stall-") as tmp:
        tmp = pathlib.Path(tmp)
        data = tmp / "kafka"
        data.mkdir()
        started = subprocess.run([str(BROKER), "start", "--dir", str(data), "--owner-pid",
                                  str(os.getpid()), "--partitions", "1"],
                                 capture_output=True, text=True, timeout=300, check=True)
        broker = Broker(data, started.stdout.strip())
        try:
            rows = [run(broker, tmp, int(t), args.count) for t in args.threads.split(",")]
        finally:
            subprocess.run([str(BROKER), "stop", str(data)], timeout=120)
    print(f"{args.count} item titles sent at once, /metrics asked every 10 ms meanwhile "
          f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print("| content.text_threads | all embedded in | /metrics median | p99 | max | "
          "holds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['threads']} | {r['embed_s']:.1f} s | {r['median_ms']:.1f} ms | "
              f"{r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms | {r['holds']:.0f} |")


if __name__ == "__main__":
    main()
