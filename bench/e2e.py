#!/usr/bin/env python3
"""End-to-end benchmark of streamrecd: Kafka in, learning, RocksDB, top-k, Kafka out.

Starts a local broker (tools/kafka-broker, tied to this process), generates a
synthetic stream with `streamrec gen`, runs streamrecd with a benchmark
configuration (d=32, RocksDB state in a temporary directory) and measures:

1. Sustained throughput: a backlog produced flat out while the daemon is
   down, then drained; events learned per second (medians of 1 s windows, from
   /metrics), once on a cold model (the warm-up: every id first met) and once
   on the warm model. The drained history keeps the generated stream's
   spacing but is moved in time so that its last event is now (see
   shift_to_now()). Then a live run at a fixed rate just under the warm
   drain rate, watching whether the consumer lag grows.
2. Freshness at fixed rates (--rates, plus the sustained maximum): the events
   are re-timed to "now" as they are produced (`streamrec produce --retime`);
   bench/collect (build/bench/collect) consumes the recommendations topic and
   reports receive time - trigger_event_ts per list, per window.
3. CPU (utime+stime of streamrecd from /proc) and resident memory per scenario.

Every scenario starts on a freshly started daemon over the warm state (so the
refresh queue left by the previous one does not leak into it); the restart is
a SIGKILL once a state commit covers every consumed event (a SIGTERM would
first publish every queued user's list); `--stop term` stops cleanly instead
and times the stops and starts. Users are restored from RocksDB when first
met after a restart, as in production.

Writes build/bench-results/e2e.md (markdown), e2e.json and PNG plots.
Figures are printed, never asserted.
"""
import argparse
import json
import os
import pathlib
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
BROKER = ROOT / "tools" / "kafka-broker"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def log(message):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_line():
    cores = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    model, l3 = "unknown CPU", "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("L3 cache:"):
                l3 = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return (f"{cores} cores, {mem_kib / 2**20:.0f} GiB, {model}, L3 {l3}, "
            f"{platform.system()} {platform.release()}")


def machine_busy_ticks():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def percentile_table(values):
    return {k: statistics.median(v) for k, v in values.items() if v}


class Metrics:
    """Scrapes /metrics of one daemon."""

    def __init__(self, port):
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return None, ""

    def sums(self):
        """Every metric family's samples summed over their labels, or None; and
        under "buckets", each histogram's cumulative buckets summed over the
        other labels: {name: {le: count}}."""
        status, body = self.get("/metrics")
        if status != 200:
            return None
        sums, buckets = {}, {}
        for line in body.splitlines():
            if line.startswith("#") or not line:
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            try:
                value = float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
            sums[name] = sums.get(name, 0.0) + value
            if name.endswith("_bucket") and 'le="' in line:
                le = float(line.split('le="', 1)[1].split('"', 1)[0])
                per_le = buckets.setdefault(name[:-len("_bucket")], {})
                per_le[le] = per_le.get(le, 0.0) + value
        sums["buckets"] = buckets
        return sums

    def blas(self):
        """The OpenBLAS kernel line of streamrec_blas_info, or None."""
        status, body = self.get("/metrics")
        for line in body.splitlines() if status == 200 else []:
            if line.startswith("streamrec_blas_info{"):
                labels = dict(part.split("=", 1) for part in
                              line[line.index("{") + 1:line.rindex("}")].split(","))
                labels = {k: v.strip('"') for k, v in labels.items()}
                return (f"OpenBLAS kernel {labels.get('kernel', '?')} (the CPU's best: "
                        f"{labels.get('cpu_best', '?')}; chosen by {labels.get('chosen_by', '?')})")
        return None

    def scrape(self):
        sums = self.sums()
        if sums is None:
            return None
        return {"events": sums.get("streamrec_events_total", 0.0),
                "lists": sums.get("streamrec_recommendations_total", 0.0),
                "lag": sums.get("streamrec_consumer_lag", 0.0),
                "commits": sums.get("streamrec_commits_total", 0.0),
                "refresh_s": sums.get("streamrec_refresh_batch_seconds_sum", 0.0),
                "refresh_batches": sums.get("streamrec_refresh_batch_seconds_count", 0.0),
                "deferred": sums.get("streamrec_refresh_deferred_total", 0.0),
                "index_recall": sums.get("streamrec_index_recall"),
                "index_trainings": sums.get("streamrec_index_trainings_total", 0.0),
                "index_training_s": sums.get("streamrec_index_training_seconds_total", 0.0),
                "index_nprobe": sums.get("streamrec_index_nprobe"),
                "index_candidates": sums.get("streamrec_index_candidates_total", 0.0),
                "index_lists": sums.get("streamrec_index_lists_total", 0.0),
                "index_search_s": sums.get("streamrec_index_search_seconds_total", 0.0),
                "index_shadow_s": sums.get("streamrec_index_shadow_seconds_total", 0.0),
                "index_shadow_lists": sums.get("streamrec_index_shadow_lists_total", 0.0),
                "freshness": sums["buckets"].get("streamrec_freshness_seconds", {}),
                "freshness_deferred": sums["buckets"].get("streamrec_freshness_deferred_seconds", {})}


class Process:
    """CPU ticks and resident memory of one process, from /proc."""

    def __init__(self, pid):
        self.pid = pid

    def cpu_s(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        except (OSError, IndexError):
            return 0.0

    def rss_mib(self):
        try:
            with open(f"/proc/{self.pid}/statm") as f:
                return int(f.read().split()[1]) * PAGE_BYTES / 2**20
        except (OSError, IndexError):
            return 0.0


class Collector:
    """bench/collect in --control mode; its JSON lines are gathered by a thread."""

    def __init__(self, binary, bootstrap, topic, window_s, logfile, records=None):
        self.lines = []
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [binary, "--brokers", bootstrap, "--topic", topic, "--from-beginning", "--control",
             "--window-ms", str(int(window_s * 1000))] +
            (["--records", str(records)] if records else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logfile, text=True, bufsize=1)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not self.ready.wait(60):
            raise RuntimeError("bench/collect did not become ready")

    def _read(self):
        for line in self.process.stdout:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("kind") == "ready":
                self.ready.set()
            with self.lock:
                self.lines.append(record)

    def mark(self, name):
        self.process.stdin.write(f"mark {name}\n")
        self.process.stdin.flush()

    def close(self):
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        except OSError:
            pass
        self.process.wait(timeout=30)
        self.thread.join(timeout=10)

    def segment(self, name, timeout=10):
        """The closed segment's summary and its window lines."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                summary = [r for r in self.lines if r["kind"] == "segment" and r["segment"] == name]
                windows = [r for r in self.lines if r["kind"] == "window" and r["segment"] == name]
            if summary:
                return summary[-1], windows
            time.sleep(0.1)
        return None, []


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = pathlib.Path(args.build).resolve()
        self.streamrec = self.build / "streamrec"
        self.streamrecd = self.build / "streamrecd"
        self.collect = self.build / "bench" / "collect"
        for binary in (self.streamrec, self.streamrecd, self.collect):
            if not binary.exists():
                sys.exit(f"e2e: {binary} is missing; run 'make bench-e2e' (or make all build/bench/collect)")
        self.out = pathlib.Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = pathlib.Path(tempfile.mkdtemp(prefix="streamrec-e2e.", dir=args.tmpdir))
        self.daemon = None
        self.collector = None
        self.bootstrap = None
        self.results = {"machine": machine_line(), "command": " ".join(sys.argv),
                        "config": vars(args), "drains": [], "scenarios": []}
        self.slices = []

    # ---- set-up -------------------------------------------------------------------------

    def generate(self):
        a = self.args
        live = sum(int(r * (a.settle_s + a.duration_s)) for r in a.rates)
        live += int(a.max_rate_guess * (a.settle_s + a.duration_s))
        total = a.warmup_events + a.backlog_events + live
        path = self.work / "stream.csv"
        log(f"generating {total:,} events ({a.users:,} users, {a.items:,} items)")
        subprocess.run([self.streamrec, "gen", "--users", str(a.users), "--items", str(a.items),
                        "--events", str(total), "--seed", str(a.seed), "--format", "csv",
                        "--out", path], check=True, capture_output=True)
        self.stream = open(path)
        self.header = self.stream.readline()

    def take(self, name, count):
        """The next `count` events of the stream as a CSV file of their own."""
        path = self.work / f"{name}.csv"
        with open(path, "w") as f:
            f.write(self.header)
            written = 0
            for line in self.stream:
                f.write(line)
                written += 1
                if written == count:
                    break
        if written < count:
            raise RuntimeError(f"the generated stream ran out at {name}")
        return path

    def shift_to_now(self, paths):
        """Moves the drained slices' event times (the generated stream's own,
        from November 2023) by one offset, so that the last of them is now:
        the fixed rates' events are re-timed to now, and a three-year jump in
        event time between the history and the live events made every
        learned item's trend fade at once (a rescale that rewrote every item
        row and re-placed every row of the index on the first live events),
        which a daemon fed from a live pipeline never sees. The spacing of
        the events is kept."""
        with open(paths[-1]) as f:
            last = None
            for last in f:
                pass
        offset = int(time.time() * 1000) - int(last.split(",", 1)[0])
        for path in paths:
            shifted = path.with_suffix(".shifted")
            with open(path) as src, open(shifted, "w") as dst:
                dst.write(src.readline())  # the header
                for line in src:
                    ts, rest = line.split(",", 1)
                    dst.write(f"{int(ts) + offset},{rest}")
            shifted.replace(path)
        log(f"history re-timed by {offset / 86400000:.0f} days: its last event is now")

    def start_broker(self):
        broker_dir = self.work / "broker"
        started = subprocess.run([BROKER, "start", "--dir", broker_dir, "--owner-pid", str(os.getpid())],
                                 capture_output=True, text=True, timeout=300)
        if started.returncode != 0:
            raise RuntimeError("broker did not start:\n" + started.stderr[-3000:])
        self.broker_dir = broker_dir
        self.bootstrap = started.stdout.strip()
        subprocess.run([BROKER, "topics", broker_dir, f"events:{self.args.partitions}", "recs:3:compact",
                        "events.dlq:1", "items:1:compact"], check=True, capture_output=True, timeout=120)
        log(f"broker at {self.bootstrap}")

    def write_config(self, group_id):
        """A new consumer group per start: a SIGKILLed member would hold the old group's
        partitions until its session times out (45 s), and the state's stored
        offsets, not the group's, say where to resume."""
        a = self.args
        self.config = self.work / "streamrecd.conf"
        extra_refresh = "".join(f"{kv}\n" for kv in a.refresh_set)
        extra_model = "".join(f"{kv}\n" for kv in a.model_set)
        extra_kafka = "".join(f"{kv}\n" for kv in a.kafka_consumer_set)
        self.config.write_text(f"""# streamrecd configuration of the end-to-end benchmark
[input]
group_id = {group_id}
[state]
dir = {self.work / 'state'}
commit_interval_ms = {a.commit_interval}
[http]
listen = 127.0.0.1:{self.port}
[refresh]
interval_ms = {a.refresh_interval}
batch = {a.refresh_batch}
threads = {a.refresh_threads}
max_busy_share = {a.refresh_max_busy_share}
{extra_refresh}[model]
dim = {a.dim}
retrieval = {a.retrieval}
{extra_model}[kafka]
bootstrap.servers = {self.bootstrap}
[kafka.consumer]
{extra_kafka}""")

    # ---- daemon -------------------------------------------------------------------------

    def start_daemon(self):
        self.starts = getattr(self, "starts", 0) + 1
        self.write_config(f"streamrecd-bench-{self.starts}")
        self.daemon_log = open(self.work / "streamrecd.log", "a")
        started = time.time()
        self.daemon = subprocess.Popen([self.streamrecd, "--config", self.config],
                                       stdout=self.daemon_log, stderr=self.daemon_log)
        self.proc = Process(self.daemon.pid)
        while time.time() - started < 180:
            if self.metrics.get("/readyz")[0] == 200:
                ready_s = time.time() - started
                log(f"streamrecd ready in {ready_s:.1f} s (pid {self.daemon.pid})")
                self.results.setdefault("ready_s", []).append(round(ready_s, 2))
                if "blas" not in self.results:
                    self.results["blas"] = self.metrics.blas() or "OpenBLAS kernel unknown"
                    log(self.results["blas"])
                return
            if self.daemon.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("streamrecd did not become ready; see " + str(self.work / "streamrecd.log"))

    def scrape(self):
        """The running daemon's metrics: a slow answer is asked again for up to
        30 s; a daemon that has exited stops the benchmark, naming its log."""
        deadline = time.time() + 30
        while True:
            m = self.metrics.scrape()
            if m is not None:
                return m
            if self.daemon.poll() is not None:
                raise RuntimeError(f"streamrecd exited with status {self.daemon.returncode}; "
                                   f"see {self.work / 'streamrecd.log'}")
            if time.time() > deadline:
                raise RuntimeError("streamrecd's /metrics did not answer for 30 s; see "
                                   + str(self.work / "streamrecd.log"))
            log("/metrics did not answer; asking again")
            time.sleep(0.5)

    def stop_daemon(self):
        """SIGKILL once a commit covers every consumed event (see the module's
        note); with --stop term, a clean stop instead (SIGTERM: the queued
        lists are published, the state written), timed."""
        if self.daemon is None:
            return
        if self.args.stop == "term":
            started = time.time()
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=120)
            except subprocess.TimeoutExpired:
                raise RuntimeError("streamrecd did not stop within 120 s of SIGTERM; see "
                                   + str(self.work / "streamrecd.log"))
            stop_s = time.time() - started
            log(f"streamrecd stopped in {stop_s:.1f} s (status {self.daemon.returncode})")
            self.results.setdefault("stop_s", []).append(round(stop_s, 2))
            self.daemon_log.close()
            self.daemon = None
            return
        before = self.metrics.scrape()
        if before is not None:
            deadline = time.time() + 4 * self.args.commit_interval_s + 10
            while time.time() < deadline:
                now = self.metrics.scrape()
                if now is None or now["commits"] >= before["commits"] + 2:
                    break
                time.sleep(0.2)
        self.daemon.kill()
        self.daemon.wait()
        self.daemon_log.close()
        self.daemon = None

    def produce(self, path, rate, retime, count=0):
        args = [self.streamrec, "produce", "--brokers", self.bootstrap, "--topic", "events",
                "--file", path, "--rate", str(rate), "--count", str(count)]
        if retime:
            args.append("--retime")
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    # ---- scenarios ----------------------------------------------------------------------

    def drain(self, name, path, count):
        """Throughput: a backlog produced while the daemon is down, then consumed."""
        producer = self.produce(path, 0, retime=False)
        _, err = producer.communicate()
        if producer.returncode != 0:
            raise RuntimeError("produce failed: " + err[-2000:])
        self.collector.mark(name)
        started = time.time()
        self.start_daemon()
        base = 0  # a new daemon counts from 0, and may have learned some before a first scrape
        samples = [(started, 0, 0.0, 0.0, 0.0, 0.0, 0.0)]  # (t, events, lists, cpu_s, rss, refresh)
        while time.time() - started < self.args.drain_timeout_s:
            m = self.metrics.scrape()
            if m is None:  # /metrics did not answer in time (a stalled loop): next second
                time.sleep(1.0)
                continue
            samples.append((time.time(), m["events"] - base, m["lists"], self.proc.cpu_s(),
                            self.proc.rss_mib(), m["refresh_s"], m["refresh_batches"]))
            if m["events"] - base >= count:
                break
            time.sleep(1.0)
        learned = samples[-1][1]
        # 1 s windows between 10% and 90% of the backlog: past start-up, before the tail
        rates, list_rates, cpu = [], [], []
        for a, b in zip(samples, samples[1:]):
            if 0.1 * count <= a[1] and b[1] <= 0.9 * count and b[0] > a[0]:
                rates.append((b[1] - a[1]) / (b[0] - a[0]))
                list_rates.append((b[2] - a[2]) / (b[0] - a[0]))
                cpu.append((b[3] - a[3]) / (b[0] - a[0]))
        if not rates:  # a backlog drained within a few seconds: whole-run averages
            span = max(samples[-1][0] - samples[1][0], 1e-9) if len(samples) > 1 else 1e-9
            rates = [(samples[-1][1] - samples[1][1]) / span] if len(samples) > 1 else []
            list_rates = [(samples[-1][2] - samples[1][2]) / span] if len(samples) > 1 else []
            cpu = [(samples[-1][3] - samples[1][3]) / span] if len(samples) > 1 else []
        batches = samples[-1][6] - samples[0][6]
        result = {"name": name, "backlog": count, "learned": learned,
                  "seconds": samples[-1][0] - started,
                  "events_per_s": statistics.median(rates) if rates else learned / max(samples[-1][0] - started, 1e-9),
                  "events_per_s_windows": rates,
                  "lists_per_s": statistics.median(list_rates) if list_rates else 0.0,
                  "cpu_cores": statistics.median(cpu) if cpu else 0.0,
                  "rss_mib": max(s[4] for s in samples),
                  "refresh_batch_ms": 1000 * (samples[-1][5] - samples[0][5]) / batches if batches else 0.0}
        log(f"{name}: {learned:,.0f} of {count:,} events in {result['seconds']:.1f} s; "
            f"median {result['events_per_s']:,.0f} events/s, {result['lists_per_s']:,.0f} lists/s, "
            f"{result['cpu_cores']:.2f} cores, RSS {result['rss_mib']:.0f} MiB, "
            f"refresh batch {result['refresh_batch_ms']:.1f} ms")
        self.results["drains"].append(result)
        self.stop_daemon()
        return result

    def fixed_rate(self, name, rate, path=None):
        """Freshness, learning rate, CPU and memory at an offered rate.

        The events come from the next slice of the stream, or from the start
        of `path` (the sustained-maximum attempts share one slice)."""
        a = self.args
        count = int(rate * (a.settle_s + a.duration_s))
        if path is None:
            path = self.take(name, count)
        self.start_daemon()
        self.collector.mark(f"{name}-settle")
        base = self.scrape()
        producer = self.produce(path, rate, retime=True, count=count)
        # the clock starts when events arrive (produce first reads and sorts its file)
        deadline = time.time() + 60
        while time.time() < deadline and self.scrape()["events"] == base["events"]:
            time.sleep(0.05)
        first_event_at = time.time()
        time.sleep(a.settle_s)
        self.collector.mark(name)
        span_start = self.scrape()
        samples = []
        busy0 = machine_busy_ticks()
        for w in range(int(a.duration_s / a.window_s) + 1):
            m = self.scrape()
            samples.append((time.time(), m["events"], m["lists"], m["lag"], self.proc.cpu_s(),
                            self.proc.rss_mib()))
            if w < int(a.duration_s / a.window_s):
                time.sleep(a.window_s - (time.time() - samples[-1][0]) % a.window_s)
        busy1 = machine_busy_ticks()
        self.collector.mark(f"{name}-after")
        span_end = self.scrape()
        # the daemon's own histograms over the measured span: the lists the
        # deferred lane served (overload), and the freshness of the others
        deferred = bucket_delta(span_end["freshness_deferred"], span_start["freshness_deferred"])
        in_time = bucket_delta(span_end["freshness"], span_start["freshness"], deferred)
        producer.wait()
        produced_at = time.time()
        sent_per_s = count / max(produced_at - first_event_at, 1e-9)
        # keeping up: the daemon has learned everything within 2 s of the last event sent;
        # and the rest is learned before the next scenario starts
        deadline = produced_at + 60
        caught_up_s = None
        while time.time() < deadline:
            if self.scrape()["events"] >= base["events"] + count:
                caught_up_s = time.time() - produced_at
                break
            time.sleep(0.1)
        end = self.scrape()
        summary, windows = self.collector.segment(name)
        events, lists, cpu = [], [], []
        for x, y in zip(samples, samples[1:]):
            dt = y[0] - x[0]
            events.append((y[1] - x[1]) / dt)
            lists.append((y[2] - x[2]) / dt)
            cpu.append((y[4] - x[4]) / dt)
        keys = ("p50", "p95", "p99", "p999")
        window_p = {k: [w["e2e_ms"][k] for w in windows if k in w["e2e_ms"]] for k in keys}
        window_daemon = {k: [w["daemon_ms"][k] for w in windows if k in w["daemon_ms"]] for k in keys}
        result = {
            "name": name, "offered_per_s": rate, "sent_per_s": sent_per_s,
            "events_per_s": statistics.median(events), "lists_per_s": statistics.median(lists),
            "cpu_cores": statistics.median(cpu), "rss_mib": samples[-1][5],
            "machine_busy": (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1),
            "lag_first": samples[0][3], "lag_last": samples[-1][3], "caught_up_s": caught_up_s,
            "windows": len(windows),
            "deferred": end["deferred"] - base["deferred"], "index_recall": end["index_recall"],
            "index_trainings": end["index_trainings"] - base["index_trainings"],
            "index_training_s": end["index_training_s"] - base["index_training_s"],
            "index_nprobe": end["index_nprobe"],
            "index_candidates_per_list":
                (end["index_candidates"] - base["index_candidates"]) /
                max(end["index_lists"] - base["index_lists"], 1),
            "index_search_s": end["index_search_s"] - base["index_search_s"],
            "index_shadow_s": end["index_shadow_s"] - base["index_shadow_s"],
            "index_shadow_lists": end["index_shadow_lists"] - base["index_shadow_lists"],
            "e2e_ms_window_median": percentile_table(window_p),
            "daemon_ms_window_median": percentile_table(window_daemon),
            "lists_deferred": deferred.get(float("inf"), 0.0),
            "lists_in_time": in_time.get(float("inf"), 0.0),
            "in_time_p99_ms": bucket_quantile(in_time, 0.99),
            "deferred_p50_ms": bucket_quantile(deferred, 0.5),
            "segment": summary,
        }
        p = result["e2e_ms_window_median"]
        log(f"{name}: offered {rate:,}/s, learned {result['events_per_s']:,.0f}/s, "
            f"lists {result['lists_per_s']:,.0f}/s, freshness p50/p99/p99.9 "
            f"{p.get('p50')}/{p.get('p99')}/{p.get('p999')} ms, CPU {result['cpu_cores']:.2f} cores, "
            f"RSS {result['rss_mib']:.0f} MiB, lag {result['lag_first']:.0f} -> {result['lag_last']:.0f}, "
            f"deferred {result['deferred']:.0f}, lists served deferred in the span "
            f"{result['lists_deferred']:,.0f} of {result['lists_deferred'] + result['lists_in_time']:,.0f} "
            f"(their p50 <= {fmt(result['deferred_p50_ms'])} ms; the others' p99 <= "
            f"{fmt(result['in_time_p99_ms'])} ms, daemon histograms), index recall {result['index_recall']}, "
            f"index trainings {result['index_trainings']:.0f} ({result['index_training_s']:.1f} s), "
            f"nprobe {result['index_nprobe']}, {result['index_candidates_per_list']:,.0f} "
            f"candidates a list, worker seconds: searches {result['index_search_s']:.1f}, "
            f"shadow {result['index_shadow_s']:.1f} ({result['index_shadow_lists']:.0f} lists)")
        self.results["scenarios"].append(result)
        self.stop_daemon()
        return result

    def keeps_up(self, result):
        """Lag not growing: every event learned within 2 s of the producer's last send."""
        return result["caught_up_s"] is not None and result["caught_up_s"] <= 2.0

    def run(self):
        a = self.args
        t0 = time.time()
        self.generate()
        self.start_broker()
        self.port = free_port()
        self.metrics = Metrics(self.port)
        self.collector = Collector(self.collect, self.bootstrap, "recs", a.window_s,
                                   open(self.work / "collect.log", "w"), a.records)
        history = [self.take("warmup", a.warmup_events), self.take("backlog", a.backlog_events)]
        self.shift_to_now(history)
        cold = self.drain("drain-cold", history[0], a.warmup_events)
        warm = self.drain("drain-warm", history[1], a.backlog_events)
        known_good = 0  # the highest rate that kept up so far
        for rate in a.rates:
            if self.keeps_up(self.fixed_rate(f"rate-{rate}", rate)):
                known_good = max(known_good, rate)
        # the sustained maximum: just under the warm drain rate, lowered by a
        # quarter until the lag holds, never below a fixed rate that kept up
        rate = int(min(warm["events_per_s"] * 0.95, a.max_rate_guess) / 1000) * 1000
        max_slice = self.take("max", int(a.max_rate_guess * (a.settle_s + a.duration_s)))
        for attempt in range(a.max_attempts):
            if rate <= known_good:
                break
            r = self.fixed_rate(f"max-{rate}", rate, path=max_slice)
            r["keeps_up"] = self.keeps_up(r)
            if r["keeps_up"]:
                known_good = rate
                break
            rate = int(rate * 0.75 / 1000) * 1000
        if known_good:
            self.results["sustained_max_per_s"] = known_good
        self.results["cold_drain_per_s"] = cold["events_per_s"]
        self.results["seconds"] = time.time() - t0

    def close(self):
        if self.daemon is not None:
            self.daemon.kill()
            self.daemon.wait()
        if self.collector is not None:
            self.collector.close()
        if self.bootstrap is not None:
            subprocess.run([BROKER, "stop", self.broker_dir], capture_output=True, timeout=120)
        if self.args.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---- report -------------------------------------------------------------------------

    def report(self):
        a, r = self.args, self.results
        (self.out / "e2e.json").write_text(json.dumps(r, indent=1))
        lines = ["# streamrec end-to-end benchmark", "",
                 f"machine: {r['machine']}; {r.get('blas', 'OpenBLAS kernel unknown')}", "",
                 f"command: `{r['command']}`", "",
                 f"{a.users:,} users, {a.items:,} items, d={a.dim}, {a.partitions} event partitions, "
                 f"refresh every {a.refresh_interval} in batches of {a.refresh_batch}, commits every "
                 f"{a.commit_interval}; Avro decode, learning, RocksDB persistence and publishing on. "
                 f"Run took {r.get('seconds', 0):.0f} s.", "",
                 "## Sustained throughput (backlog drained; medians of 1 s windows)", "",
                 "| run | events | events/s learned | lists/s published | refresh batch | CPU (cores) | RSS MiB |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for d in r["drains"]:
            lines.append(f"| {d['name']} | {d['backlog']:,} | {d['events_per_s']:,.0f} | {d['lists_per_s']:,.0f} | "
                         f"{d['refresh_batch_ms']:.1f} ms | {d['cpu_cores']:.2f} | {d['rss_mib']:.0f} |")
        lines += ["", f"Restarts ({'after a clean stop, SIGTERM' if a.stop == 'term' else 'after SIGKILL'}): "
                  f"ready in {', '.join(format(x, '.1f') for x in r.get('ready_s', [])[1:]) or '–'} s"
                  + (f"; stops took {', '.join(format(x, '.1f') for x in r.get('stop_s', []))} s"
                     if r.get("stop_s") else "")]
        lines += ["", f"Sustained maximum (live, lag not growing; the highest rate tried that kept up): "
                  f"{r.get('sustained_max_per_s', 'not found'):,} events/s" if isinstance(r.get('sustained_max_per_s'), int)
                  else "Sustained maximum (live, lag not growing): not found within the attempts", "",
                  f"## Freshness at fixed rates (publish → consumer of `recs`; medians over {a.window_s:g} s windows of {a.duration_s:g} s)", "",
                  "| offered events/s | sent/s | learned/s | lists/s | p50 ms | p95 ms | p99 ms | p99.9 ms | daemon p99 ms | lists | served deferred | in time: daemon p99 ms | CPU (cores) | RSS MiB | machine busy | lag start → end | catch-up s | keeps up |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for s in r["scenarios"]:
            p, dp = s["e2e_ms_window_median"], s["daemon_ms_window_median"]
            count = s["segment"]["count"] if s["segment"] else 0
            lines.append(
                f"| {s['offered_per_s']:,} | {s['sent_per_s']:,.0f} | {s['events_per_s']:,.0f} | {s['lists_per_s']:,.0f} | "
                f"{fmt(p.get('p50'))} | {fmt(p.get('p95'))} | {fmt(p.get('p99'))} | {fmt(p.get('p999'))} | "
                f"{fmt(dp.get('p99'))} | {count:,} | {s.get('lists_deferred', 0):,.0f} | "
                f"{fmt(s.get('in_time_p99_ms'))} | {s['cpu_cores']:.2f} | {s['rss_mib']:.0f} | "
                f"{100 * s['machine_busy']:.0f}% | {s['lag_first']:,.0f} → {s['lag_last']:,.0f} | "
                f"{'–' if s['caught_up_s'] is None else format(s['caught_up_s'], '.1f')} | "
                f"{'yes' if self.keeps_up(s) else 'no'} |")
        lines += ["", "Freshness = receive time at bench/collect − the list's trigger_event_ts (the event time of "
                  "the user's newest event, set to the produce time by `--retime`); 'daemon' = generated_at − "
                  "trigger_event_ts. 'served deferred': lists of the measured span that the deferred lane served "
                  "(their user waited past refresh.staleness_target_ms); 'in time': the daemon's freshness "
                  "histogram of the other lists over the span, the upper bound of the bucket holding their p99. "
                  "'sent' is the producer's achieved rate over the whole scenario (it shares the "
                  "two cores), 'learned' the daemon's median per window. A value of 600000 means 10 minutes or more (the histogram's last bucket). "
                  "Each scenario starts on a restarted daemon over the warm state. 'machine busy' is the whole "
                  "machine's CPU (broker, producer and collector included). Lag is streamrecd's "
                  "streamrec_consumer_lag (high watermark minus the consumer's position); 'catch-up' is the "
                  "time from the producer's last send until streamrecd had learned every event, and 'keeps up' "
                  "means it was at most 2 s.", ""]
        (self.out / "e2e.md").write_text("\n".join(lines))
        log(f"wrote {self.out / 'e2e.md'}")
        if not a.no_plots:
            self.plot()

    def plot(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        scenarios = sorted(self.results["scenarios"], key=lambda s: s["offered_per_s"])
        rates = [s["offered_per_s"] for s in scenarios]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key, label in (("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p999", "p99.9")):
            ax.plot(rates, [s["e2e_ms_window_median"].get(key, float("nan")) for s in scenarios],
                    marker="o", label=label)
        ax.axhline(100, color="grey", linestyle="--", linewidth=0.8, label="100 ms goal (p99 at 10k/s)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered events/s")
        ax.set_ylabel("freshness at the consumer (ms)")
        ax.set_title(f"streamrecd freshness, {self.args.users:,} users, {self.args.items:,} items, d={self.args.dim}")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.out / "e2e-freshness.png", dpi=110)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(rates, rates, color="grey", linestyle="--", linewidth=0.8, label="offered")
        ax.plot(rates, [s["events_per_s"] for s in scenarios], marker="o", label="events learned/s")
        ax.plot(rates, [s["lists_per_s"] for s in scenarios], marker="s", label="lists published/s")
        for d in self.results["drains"]:
            ax.axhline(d["events_per_s"], linestyle=":", linewidth=1, label=f"{d['name']} events/s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered events/s")
        ax.set_ylabel("per second")
        ax2 = ax.twinx()
        ax2.plot(rates, [s["cpu_cores"] for s in scenarios], marker="^", color="black", label="streamrecd CPU")
        ax2.set_ylabel("streamrecd CPU (cores)")
        ax2.set_ylim(0, os.cpu_count() or 2)
        lines1, labels1 = ax.get_legend_handles_labels()
        lines2, labels2 = ax2.get_legend_handles_labels()
        ax.legend(lines1 + lines2, labels1 + labels2, fontsize=8, loc="upper left")
        ax.set_title("streamrecd throughput and CPU")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.out / "e2e-throughput.png", dpi=110)
        plt.close(fig)
        log(f"wrote {self.out / 'e2e-freshness.png'} and e2e-throughput.png")


def bucket_delta(after, before, minus=None):
    """Cumulative histogram buckets {le: count} of after - before (- minus, a
    delta of the same kind: a part of the lists to leave out)."""
    return {le: after[le] - before.get(le, 0.0) - (minus or {}).get(le, 0.0) for le in after}


def bucket_quantile(buckets, q):
    """The upper bound, in ms, of the bucket holding quantile q of cumulative
    buckets {le: count}, or None when empty (a bound, as exact as the buckets)."""
    if not buckets or buckets.get(float("inf"), 0.0) <= 0:
        return None
    total = buckets[float("inf")]
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le * 1000.0
    return None


def fmt(value):
    return "–" if value is None else f"{value:,.0f}"


def duration_s(text):
    text = text.strip()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * scale
    return float(text) / 1000.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=str(ROOT / "build"), help="build directory (binaries)")
    p.add_argument("--out", default=str(ROOT / "build" / "bench-results"), help="results directory")
    p.add_argument("--tmpdir", default=None, help="where the broker, stream and state go (default $TMPDIR)")
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--partitions", type=int, default=3, help="partitions of the events topic")
    p.add_argument("--warmup-events", type=int, default=3_000_000,
                   help="cold drain: the model meets the users and items")
    p.add_argument("--backlog-events", type=int, default=2_000_000, help="warm drain")
    p.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000, 50000],
                   help="fixed offered rates, events/s (comma-separated)")
    p.add_argument("--duration-s", type=float, default=30.0, help="measured time per fixed rate")
    p.add_argument("--settle-s", type=float, default=5.0, help="discarded start of each fixed rate")
    p.add_argument("--window-s", type=float, default=5.0, help="window of the medians")
    p.add_argument("--max-attempts", type=int, default=3, help="live runs searching the sustained maximum")
    p.add_argument("--max-rate-guess", type=int, default=200_000,
                   help="highest rate tried live (sizes the generated stream)")
    p.add_argument("--drain-timeout-s", type=float, default=240.0)
    p.add_argument("--commit-interval", default="5s", help="state.commit_interval_ms")
    p.add_argument("--refresh-interval", default="50ms", help="refresh.interval_ms")
    p.add_argument("--refresh-batch", type=int, default=128, help="refresh.batch")
    p.add_argument("--refresh-threads", default="auto",
                   help="refresh.threads: worker threads ranking lists beside learning "
                        "(auto: one per CPU; 0: on the event loop)")
    p.add_argument("--refresh-max-busy-share", type=float, default=0.2,
                   help="refresh.max_busy_share")
    p.add_argument("--refresh-set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other [refresh] key, e.g. min_interval_ms=20ms (repeatable)")
    p.add_argument("--kafka-consumer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a librdkafka property of streamrecd's consumer ([kafka.consumer]), "
                        "e.g. fetch.wait.max.ms=5 (repeatable)")
    p.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other [model] key, e.g. index_nprobe=4 (repeatable)")
    p.add_argument("--retrieval", choices=("exact", "index"), default="exact",
                   help="model.retrieval: the exact engine or the index")
    p.add_argument("--stop", choices=("kill", "term"), default="kill",
                   help="how each scenario's daemon stops before the next starts: SIGKILL once "
                        "a commit covers what it consumed (default: the restart replays the "
                        "state's log, as after a crash), or SIGTERM (a clean stop, timed)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    p.add_argument("--records", help="bench/collect writes every list received to this TSV "
                   "(partition, offset, user, trigger_event_ts, generated_at, received_at)")
    args = p.parse_args()
    args.commit_interval_s = duration_s(args.commit_interval)
    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bench.run()
    finally:
        bench.close()
    bench.report()


if __name__ == "__main__":
    main()
