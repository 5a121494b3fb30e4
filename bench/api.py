#!/usr/bin/env python3
"""Load benchmark of the lookup API (GET /v1/recommendations/{user} on api.listen).

Starts a local broker (tools/kafka-broker, tied to this process) and
streamrecd with the API on its own port, learns a warm-up stream (so most
users have a list), then measures the API with build/bench/api_client (C,
epoll, kept-alive connections, a fixed request schedule: latency counts from
when a request was due, so a stalled server is not hidden):

1. idle:   the API alone, at --rate requests/s;
2. idle ceiling: closed loop (--rate 0): the most it answers alone;
3. ingest: --rate requests/s while the daemon learns a re-timed stream at
           --events-rate events/s (`streamrec produce --retime`, as e2e.py),
           publishing lists all the while;
4. ingest ceiling: closed loop while ingesting.

With --api-priority 0,10 the ingest runs are made once per value of
api.realtime_priority (changed by a reload, so the same warm daemon), in
turn, --repeats times, and the report adds each value's medians: a side by
side comparison of the API's thread on normal and on real-time scheduling.

Prints and writes build/bench-results/api.md and api.json: the machine (CPU
model, cores, load average: other work on the machine shows in the figures),
requests/s, p50/p90/p99/p99.9/max latency, events learned per second during
the window, the daemon's CPU (cores busy) and the API's cost per request
(the daemon's CPU time per request, in the idle runs). On a machine shared
with other work (see the load average) the latencies measure the share of
CPU the daemon and the client got as much as the server. Figures are
printed, never asserted.
"""
import argparse
import json
import os
import pathlib
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from e2e import BROKER, Metrics, Process, free_port, log, machine_line  # noqa: E402


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class ApiBench:
    def __init__(self, args):
        self.args = args
        self.build = pathlib.Path(args.build).resolve()
        self.streamrec = self.build / "streamrec"
        self.streamrecd = self.build / "streamrecd"
        self.client = self.build / "bench" / "api_client"
        for binary in (self.streamrec, self.streamrecd, self.client):
            if not binary.exists():
                sys.exit(f"api: {binary} is missing; run 'make bench-api'")
        self.out = pathlib.Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = pathlib.Path(tempfile.mkdtemp(prefix="streamrec-api."))
        self.port, self.api_port = free_port(), free_port()
        self.metrics = Metrics(self.port)
        self.daemon = None
        # the client on real-time scheduling: a stand-in for a client with its own cores
        self.client_prefix = (["chrt", "-f", str(args.client_priority)]
                              if args.client_priority else [])
        self.results = {"machine": machine_line(), "command": " ".join(sys.argv),
                        "config": vars(args), "runs": []}

    def start_broker(self):
        self.broker_dir = self.work / "broker"
        started = subprocess.run([BROKER, "start", "--dir", self.broker_dir, "--owner-pid",
                                  str(os.getpid())], capture_output=True, text=True, timeout=300)
        if started.returncode != 0:
            raise RuntimeError("broker did not start:\n" + started.stderr[-3000:])
        self.bootstrap = started.stdout.strip()
        subprocess.run([BROKER, "topics", self.broker_dir, "events:3", "recs:3:compact",
                        "events.dlq:1", "items:1:compact"], check=True, capture_output=True,
                       timeout=120)
        log(f"broker at {self.bootstrap}")

    def generate(self):
        a = self.args
        live = int(a.events_rate * (a.seconds + a.settle_s) * 3 + a.events_rate * 5)
        path = self.work / "stream.csv"
        log(f"generating {a.warmup_events + live:,} events ({a.users:,} users, {a.items:,} items)")
        subprocess.run([self.streamrec, "gen", "--users", str(a.users), "--items", str(a.items),
                        "--events", str(a.warmup_events + live), "--seed", "7", "--format", "csv",
                        "--out", path], check=True, capture_output=True)
        with open(path) as f:
            header = f.readline()
            self.warmup = self.work / "warmup.csv"
            self.live = self.work / "live.csv"
            with open(self.warmup, "w") as w:
                w.write(header)
                for _ in range(a.warmup_events):
                    w.write(f.readline())
            with open(self.live, "w") as w:
                w.write(header)
                shutil.copyfileobj(f, w)

    def start_daemon(self):
        a = self.args
        config = self.work / "streamrecd.conf"
        config.write_text(f"""[state]
dir = {self.work / 'state'}
[http]
listen = 127.0.0.1:{self.port}
[api]
listen = 127.0.0.1:{self.api_port}
max_connections = {max(512, a.connections * 2)}
realtime_priority = 0
[model]
dim = 32
[refresh]
nice = {a.refresh_nice}
[kafka]
bootstrap.servers = {self.bootstrap}
""")
        self.daemon_log = open(self.work / "streamrecd.log", "a")
        self.daemon = subprocess.Popen([self.streamrecd, "--config", config],
                                       stdout=self.daemon_log, stderr=self.daemon_log)
        self.proc = Process(self.daemon.pid)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.metrics.get("/readyz")[0] == 200:
                return
            if self.daemon.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("streamrecd did not become ready; see " + str(self.work / "streamrecd.log"))

    def set_api_priority(self, priority):
        """api.realtime_priority = priority, by a reload of the running daemon.
        @returns False when the daemon refused it (no CAP_SYS_NICE, RLIMIT_RTPRIO)."""
        config = self.work / "streamrecd.conf"
        text = config.read_text()
        start = text.index("realtime_priority = ")
        end = text.index("\n", start)
        config.write_text(text[:start] + f"realtime_priority = {priority}" + text[end:])
        log_path = self.work / "streamrecd.log"
        before = log_path.stat().st_size
        self.daemon.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline:
            with open(log_path) as f:
                f.seek(before)
                tail = f.read()
            if "reload refused" in tail:
                note = tail[tail.index("reload refused"):].splitlines()[0]
                log(note)
                self.results.setdefault("notes", []).append(note)
                return False
            if "reloaded" in tail:
                return True
            time.sleep(0.1)
        raise RuntimeError("the daemon did not reload")

    def produce(self, path, rate, retime):
        args = [self.streamrec, "produce", "--brokers", self.bootstrap, "--topic", "events",
                "--file", path, "--rate", str(rate)]
        if retime:
            args.append("--retime")
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def warm_up(self):
        a = self.args
        log(f"warm-up: {a.warmup_events:,} events flat out")
        producer = self.produce(self.warmup, 0, retime=False)
        producer.communicate()
        deadline = time.time() + 600
        while time.time() < deadline:
            m = self.metrics.scrape()
            if m and m["events"] >= a.warmup_events and m["lag"] == 0:
                break
            time.sleep(0.5)
        time.sleep(3)  # the last lists published
        log(f"warm: {self.metrics.scrape()['lists']:.0f} lists published")

    def run(self, name, rate, ingest, priority=0):
        a = self.args
        producer = None
        if ingest:
            producer = self.produce(self.live, a.events_rate, retime=True)
            time.sleep(a.settle_s)
        before, cpu_before, t0 = self.metrics.scrape(), self.proc.cpu_s(), time.time()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([*self.client_prefix, self.client, "--port", str(self.api_port), "--connections",
                              str(a.connections), "--threads", str(a.client_threads), "--rate",
                              str(rate), "--seconds", str(a.seconds), "--users", str(a.users),
                              "--prefix", "u"], capture_output=True, text=True)
        after, cpu_after, elapsed = self.metrics.scrape(), self.proc.cpu_s(), time.time() - t0
        ran = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = (ran.ru_utime + ran.ru_stime - children.ru_utime - children.ru_stime) / elapsed
        if producer is not None:
            producer.kill()
            producer.wait()
        if out.returncode != 0:
            raise RuntimeError("api_client failed: " + out.stderr[-2000:])
        result = json.loads(out.stdout)
        daemon_cpu = (cpu_after - cpu_before) / elapsed
        result.update(name=name, api_priority=priority, client_cpu=client_cpu,
                      ingest_events_per_s=(after["events"] - before["events"]) / elapsed,
                      daemon_cpu=daemon_cpu, load_average=load_average(),
                      cpu_us_per_request=None if ingest or not result["requests"]
                      else daemon_cpu * elapsed / result["requests"] * 1e6)
        log(f"{name}: {result['requests_per_s']:,.0f} req/s (target {rate}), p50 "
            f"{result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, max "
            f"{result['max_ms']:.1f} ms; ingest {result['ingest_events_per_s']:,.0f} ev/s; "
            f"404 {result['status_404']}, errors {result['errors']}")
        self.results["runs"].append(result)
        if ingest:
            # let the daemon catch up before the next run
            deadline = time.time() + 120
            while time.time() < deadline and (self.metrics.scrape() or {}).get("lag", 0) > 0:
                time.sleep(0.5)

    def report(self):
        r = self.results
        lines = ["# Lookup API benchmark", "",
                 f"Machine: {r['machine']}.", f"Command: `{r['command']}`.", "",
                 "| run | target req/s | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | "
                 "max ms | client late p99 ms | ingest ev/s | daemon CPU (cores) | "
                 "client CPU | daemon µs/request | load avg |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for x in r["runs"]:
            target = f"{x['target_rate']:.0f}" if x["target_rate"] else "closed loop"
            lines.append(f"| {x['name']} | {target} | {x['requests_per_s']:,.0f} | "
                         f"{x['p50_ms']:.2f} | {x['p90_ms']:.2f} | {x['p99_ms']:.2f} | "
                         f"{x['p999_ms']:.2f} | {x['max_ms']:.1f} | {x['late_p99_ms']:.2f} | "
                         f"{x['ingest_events_per_s']:,.0f} | {x['daemon_cpu']:.2f} | "
                         f"{x['client_cpu']:.2f} | "
                         f"{'' if x['cpu_us_per_request'] is None else round(x['cpu_us_per_request'])} | "
                         f"{x['load_average']} |")
        lines += [""] + [f"Note: {n}" for n in r.get("notes", [])] if r.get("notes") else []
        paced = {}
        for x in r["runs"]:
            if x["name"].startswith("ingest,") and x["target_rate"]:
                paced.setdefault(x["api_priority"], []).append(x)
        if len(paced) > 1:
            lines += ["", f"Medians of the paced ingest runs by api.realtime_priority "
                      f"({len(next(iter(paced.values())))} runs each, interleaved):", "",
                      "| api.realtime_priority | req/s | p50 ms | p99 ms | p99.9 ms | "
                      "client late p99 ms | ingest ev/s |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for priority, runs in sorted(paced.items()):
                def med(key):
                    return statistics.median(x[key] for x in runs)
                lines.append(f"| {priority} | {med('requests_per_s'):,.0f} | {med('p50_ms'):.2f} | "
                             f"{med('p99_ms'):.2f} | {med('p999_ms'):.2f} | "
                             f"{med('late_p99_ms'):.2f} | "
                             f"{med('ingest_events_per_s'):,.0f} |")
        text = "\n".join(lines) + "\n"
        (self.out / "api.md").write_text(text)
        (self.out / "api.json").write_text(json.dumps(r, indent=2) + "\n")
        print(text)

    def close(self):
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        if getattr(self, "broker_dir", None) is not None:
            subprocess.run([BROKER, "stop", self.broker_dir], capture_output=True, timeout=120)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build")
    p.add_argument("--out", default="build/bench-results")
    p.add_argument("--rate", type=int, default=10000, help="API requests/s (paced runs)")
    p.add_argument("--events-rate", type=int, default=10000, help="events/s ingested")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--refresh-nice", type=int, default=0,
                   help="the daemon's refresh.nice (the refresh workers' nice increment)")
    p.add_argument("--api-priority", default="0,10",
                   help="api.realtime_priority values for the ingest runs, comma-separated "
                        "(0,10: side by side, normal and real-time scheduling)")
    p.add_argument("--repeats", type=int, default=2,
                   help="ingest runs per api.realtime_priority value, interleaved")
    p.add_argument("--client-priority", type=int, default=0,
                   help="run the load client at this SCHED_FIFO priority (chrt): a stand-in "
                        "for a client on its own cores; 0: normal scheduling")
    p.add_argument("--client-threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--settle-s", type=float, default=3)
    p.add_argument("--users", type=int, default=20000)
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--warmup-events", type=int, default=200000)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    bench = ApiBench(args)
    try:
        bench.start_broker()
        bench.generate()
        bench.start_daemon()
        bench.warm_up()
        bench.run("idle", args.rate, ingest=False)
        bench.run("idle ceiling", 0, ingest=False)
        priorities = [int(x) for x in args.api_priority.split(",")]
        for _ in range(args.repeats):
            for priority in list(priorities):
                if not bench.set_api_priority(priority):
                    priorities.remove(priority)
                    continue
                bench.run(f"ingest, priority {priority}", args.rate, ingest=True,
                          priority=priority)
        for priority in priorities:
            bench.set_api_priority(priority)
            bench.run(f"ingest ceiling, priority {priority}", 0, ingest=True, priority=priority)
        bench.report()
    finally:
        bench.close()


if __name__ == "__main__":
    main()
