#!/usr/bin/env python3
"""Scale-out benchmark: 1, 2 and 3 streamrecd in one consumer group.

Starts a local broker (tools/kafka-broker), generates one stream with
`streamrec gen`, and for each instance count K produces it as a backlog into
a fresh 12-partition events topic, then starts K instances at once (fresh
states, the changelog and the item-updates topic on) and measures, side by
side in one sitting:

- events/s learned by the group: the instances start first and settle
  (each holds partitions), then the stream is produced flat out; from the
  first learned event until every partition is caught up (the producer
  shares the cores, as a co-located feeder would);
- lists/s published by the group over the same time;
- each instance's CPU time (utime+stime from /proc) per event learned;
- for K > 1, the item-sync traffic (changes published and folded);
- then one more instance is added to the caught-up group and the time its
  partitions' restores took (streamrec_restore_seconds_total) is reported.

Writes build/bench-results/scale.md and scale.json. Figures are printed,
never asserted. The broker and the producer share the machine's cores with
the instances, so on a 2-core machine more instances mostly share the same
two cores: the per-event CPU cost is the figure that carries to larger
machines (see the README's Performance section for the reasoning).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from e2e import BROKER, ROOT, Metrics, Process, free_port, log, machine_line  # noqa: E402


def config_text(a, work, name, bootstrap, port, group, tag):
    return f"""[input]
topic = events-{tag}
items_topic =
dead_letter_topic = dlq-{tag}
group_id = {group}
[output]
topic = recs-{tag}
[state]
dir = {work / name / 'state'}
commit_interval_ms = 1s
[scaleout]
changelog_topic = changelog-{tag}
item_updates_topic = items-{tag}
item_sync_interval_ms = 1s
instance_id = {name}
[http]
listen = 127.0.0.1:{port}
[model]
dim = {a.dim}
retrieval = {a.retrieval}
[kafka]
bootstrap.servers = {bootstrap}
[kafka.consumer]
session.timeout.ms = 10000
"""


class Instance:
    def __init__(self, bench, name, group, tag):
        self.name, self.port = name, free_port()
        (bench.work / name).mkdir()
        self.config = bench.work / name / "streamrecd.conf"
        self.config.write_text(config_text(bench.args, bench.work, name, bench.bootstrap,
                                           self.port, group, tag))
        self.log = open(bench.work / name / "streamrecd.log", "a")
        self.process = subprocess.Popen([bench.streamrecd, "--config", self.config],
                                        stdout=self.log, stderr=self.log)
        self.metrics = Metrics(self.port)
        self.proc = Process(self.process.pid)

    def scrape(self):
        return self.metrics.sums() or {}

    def lags(self, topic):
        status, body = self.metrics.get("/metrics")
        out = {}
        for line in body.splitlines() if status == 200 else []:
            if line.startswith("streamrec_consumer_lag{") and f'topic="{topic}"' in line:
                out[line.split('partition="')[1].split('"')[0]] = float(line.split()[-1])
        return out

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=120)
        self.log.close()


class Bench:
    def __init__(self, args):
        self.args = args
        build = pathlib.Path(args.build).resolve()
        self.streamrec, self.streamrecd = build / "streamrec", build / "streamrecd"
        self.out = pathlib.Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = pathlib.Path(tempfile.mkdtemp(prefix="streamrec-scale.", dir=args.tmpdir))
        blas = subprocess.run([self.streamrec, "blas"], capture_output=True, text=True).stdout
        self.results = {"machine": machine_line(), "blas": blas.strip().splitlines()[:1],
                        "command": " ".join(sys.argv), "config": vars(args), "runs": []}

    def start_broker(self):
        started = subprocess.run([BROKER, "start", "--dir", self.work / "broker", "--owner-pid",
                                  str(os.getpid())], capture_output=True, text=True, timeout=300)
        if started.returncode != 0:
            raise RuntimeError("broker did not start:\n" + started.stderr[-3000:])
        self.bootstrap = started.stdout.strip()

    def run(self, k):
        a, tag = self.args, f"k{k}"
        subprocess.run([BROKER, "topics", self.work / "broker", f"events-{tag}:{a.partitions}",
                        f"recs-{tag}:3:compact", f"dlq-{tag}:1",
                        f"changelog-{tag}:{a.partitions}:compact", f"items-{tag}:3"],
                       check=True, capture_output=True, timeout=120)
        group = f"scale-{tag}"
        instances = [Instance(self, f"{tag}-{n}", group, tag) for n in range(k)]
        # the group settles first (every instance holds partitions), so that one
        # early member does not drain the stream alone
        deadline = time.time() + 120
        while time.time() < deadline:
            if all(i.scrape().get("streamrec_assigned_partitions", 0) > 0 for i in instances):
                break
            time.sleep(0.5)
        time.sleep(2)
        cpu0 = [i.proc.cpu_s() for i in instances]
        log(f"K={k}: producing {a.events:,} events flat out")
        feeder = subprocess.Popen([self.streamrec, "produce", "--brokers", self.bootstrap,
                                   "--topic", f"events-{tag}", "--file", self.stream, "--count",
                                   str(a.events), "--rate", "0", "--retime"],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        first = None
        deadline = time.time() + a.timeout_s
        while time.time() < deadline:
            sums = [i.scrape() for i in instances]
            events = sum(s.get("streamrec_events_total", 0) for s in sums)
            if first is None and events > 0:
                first = (time.time(), events)
            lags = {}
            for i in instances:
                lags.update(i.lags(f"events-{tag}"))
            if events >= a.events and len(lags) == a.partitions and not any(lags.values()):
                break
            time.sleep(0.25)
        else:
            raise RuntimeError(f"K={k}: the group did not catch up within {a.timeout_s} s")
        end = time.time()
        feeder.wait(timeout=60)
        sums = [i.scrape() for i in instances]
        events = sum(s.get("streamrec_events_total", 0) for s in sums)
        lists = sum(s.get("streamrec_recommendations_total", 0) for s in sums)
        cpu = [i.proc.cpu_s() - c for i, c in zip(instances, cpu0)]
        seconds = end - first[0]
        row = {"instances": k, "events": events, "seconds": seconds,
               "events_per_s": (events - first[1]) / seconds if seconds > 0 else 0,
               "lists_per_s": lists / seconds if seconds > 0 else 0,
               "cpu_us_per_event": 1e6 * sum(cpu) / max(events, 1),
               "per_instance_events": [s.get("streamrec_events_total", 0) for s in sums],
               "item_changes_published": sum(s.get("streamrec_item_sync_published_total", 0)
                                             for s in sums),
               "item_changes_folded": sum(s.get("streamrec_item_sync_folded_total", 0)
                                          for s in sums)}
        # one more instance joins the caught-up group: its restores
        joiner = Instance(self, f"{tag}-join", group, tag)
        deadline = time.time() + a.timeout_s
        while time.time() < deadline:
            s = joiner.scrape()
            if s.get("streamrec_assigned_partitions", 0) > 0 and s.get("streamrec_restores_total", 0) > 0:
                lags = joiner.lags(f"events-{tag}")
                if lags and not any(lags.values()):
                    break
            time.sleep(0.25)
        s = joiner.scrape()
        row.update({"joiner_partitions": s.get("streamrec_assigned_partitions", 0),
                    "joiner_restores": s.get("streamrec_restores_total", 0),
                    "joiner_restored_users": s.get("streamrec_restored_users_total", 0),
                    "joiner_restore_s": s.get("streamrec_restore_seconds_total", 0)})
        for i in instances + [joiner]:
            i.stop()
        log(f"K={k}: {row['events_per_s']:,.0f} events/s, {row['lists_per_s']:,.0f} lists/s, "
            f"{row['cpu_us_per_event']:.1f} us CPU/event; a joiner restored "
            f"{row['joiner_restored_users']:.0f} users of {row['joiner_restores']:.0f} partitions "
            f"in {row['joiner_restore_s']:.2f} s")
        self.results["runs"].append(row)

    def report(self):
        r = self.results
        lines = ["# streamrecd scale-out", "", f"machine: {r['machine']}",
                 f"OpenBLAS: {' '.join(r['blas'])}", f"command: `{r['command']}`", "",
                 "| instances | events | drained events/s | lists/s | CPU µs/event (all instances) "
                 "| events per instance | item changes published / folded | joiner: partitions, "
                 "users restored, restore s |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in r["runs"]:
            lines.append(
                f"| {row['instances']} | {row['events']:,.0f} | {row['events_per_s']:,.0f} | "
                f"{row['lists_per_s']:,.0f} | {row['cpu_us_per_event']:.1f} | "
                f"{', '.join(f'{e:,.0f}' for e in row['per_instance_events'])} | "
                f"{row['item_changes_published']:,.0f} / {row['item_changes_folded']:,.0f} | "
                f"{row['joiner_partitions']:.0f}, {row['joiner_restored_users']:,.0f}, "
                f"{row['joiner_restore_s']:.2f} |")
        (self.out / "scale.md").write_text("\n".join(lines) + "\n")
        (self.out / "scale.json").write_text(json.dumps(r, indent=2) + "\n")
        print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=str(ROOT / "build"))
    p.add_argument("--out", default=str(ROOT / "build" / "bench-results"))
    p.add_argument("--tmpdir", default=None)
    p.add_argument("--instances", default="1,2,3", help="instance counts to run")
    p.add_argument("--events", type=int, default=600_000)
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--retrieval", choices=("exact", "index"), default="index")
    p.add_argument("--timeout-s", type=float, default=900)
    a = p.parse_args()
    bench = Bench(a)
    bench.start_broker()
    bench.stream = bench.work / "stream.csv"
    log(f"generating {a.events:,} events")
    subprocess.run([bench.streamrec, "gen", "--users", str(a.users), "--items", str(a.items),
                    "--events", str(a.events), "--out", bench.stream], check=True,
                   capture_output=True)
    for k in (int(x) for x in a.instances.split(",")):
        bench.run(k)
    bench.report()
    subprocess.run([BROKER, "stop", bench.work / "broker"], capture_output=True)


if __name__ == "__main__":
    main()
