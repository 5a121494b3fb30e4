#!/usr/bin/env python3
"""Offline replay speed of the two ranking engines, side by side.

`streamrec eval --retrieval both` replays a stream test-then-train and ranks
every test point with the exact engine and with the index engine on the same
model; each engine's events/s counts the shared work (learning, the
popularity list) plus its own ranking time, as if it had run alone. This
script generates the synthetic stream the README quotes (85,000 items in the
catalogue, 64,865 reached), replays it RUNS times and prints the medians of
both engines' events/s, their ratio (the ratio of each run, then the median),
the ranking time per list and the index's recall@20 against exact, with the
machine and the OpenBLAS kernel. Standard library only.

    bench/eval_replay.py [--streamrec build/streamrec] [--runs 3] [--nprobe N]
                         [--old-streamrec PATH]   (another build, same stream)
                         [--pre-index-streamrec PATH | --pre-index-commit REV]

--pre-index-streamrec names a build from before the index existed (issue
12's starting point, e.g. commit 3836813^, built with `make build/streamrec`
in a worktree): it is replayed with its plain `streamrec eval`, interleaved
with the others, and the index engine's events/s is also given as a multiple
of its events/s, the issue's "20x faster than today" (`--pre-index-commit
REV` builds REV's `build/streamrec` in a temporary git worktree for it, as
`make bench-eval` does with 3836813^). Then this build is
also replayed with the index engine alone (`streamrec eval --retrieval index
--no-baselines`: learn, rank the model's list and popularity's, as the
pre-index build's plain eval does), which is what a user's replay runs: in
`--retrieval both` the index reads its cells after the exact engine has
evicted them from the caches. And once more on two threads (`--threads 2`:
lists ranked in blocks of 256 events against the item side as of each
block's start, on a thread beside learning).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GEN_ARGS = ["--events", "300000", "--items", "85000", "--users", "20000"]
EVAL_ARGS = ["--retrieval", "both", "--no-baselines"]

SPEED = re.compile(r"replay: exact ([0-9]+) events/s, index ([0-9]+) events/s .*"
                   r"ranking took ([0-9.]+) s exact, ([0-9.]+) s index")
RECALL = re.compile(r"index: recall@20 against exact ([0-9.]+) on the test points; "
                    r"relative HR@20 ([-+0-9.]+)%; nlist ([0-9]+), nprobe ([0-9]+), "
                    r"trending ([0-9]+), ([0-9]+) candidates a list")
PLAIN_SPEED = re.compile(r"^replay: ([0-9]+) events/s", re.M)
TESTS = re.compile(r"^\| exact +\| +([0-9.]+) \|.*\| +([0-9]+) \|$", re.M)


def machine(streamrec):
    cpu, l3 = "?", "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("L3 cache:"):  # the exact engine's speed follows it
            l3 = line.split(":", 1)[1].strip()
    blas = subprocess.run([streamrec, "blas"], capture_output=True, text=True).stdout
    kernel = re.search(r"^kernel (\S+)", blas, re.M)
    config = re.search(r"^config (.*)$", blas, re.M)
    return (f"{os.cpu_count()} cores, {cpu}, L3 {l3}; OpenBLAS kernel "
            f"{kernel.group(1) if kernel else '?'} ({config.group(1) if config else '?'})")


def replay(streamrec, events, extra):
    out = subprocess.run([streamrec, "eval", events, *EVAL_ARGS, *extra], capture_output=True,
                         text=True, check=True).stdout
    speed, recall, tests = SPEED.search(out), RECALL.search(out), TESTS.search(out)
    if not (speed and recall and tests):
        raise SystemExit(f"unexpected output of {streamrec} eval:\n{out}")
    lists = int(tests.group(2))
    return {"exact": int(speed.group(1)), "index": int(speed.group(2)),
            "ratio": int(speed.group(2)) / int(speed.group(1)),
            "exact_us": float(speed.group(3)) / lists * 1e6,
            "index_us": float(speed.group(4)) / lists * 1e6,
            "recall": float(recall.group(1)), "hr": float(tests.group(1)),
            "relative_hr": recall.group(2), "nlist": recall.group(3),
            "nprobe": recall.group(4), "candidates": recall.group(6)}


def replay_plain(streamrec, events, args=()):
    """One replay's events/s: a build without --retrieval (its exact engine,
    baselines as it ran them), or this build with args."""
    out = subprocess.run([streamrec, "eval", events, *args], capture_output=True, text=True,
                         check=True).stdout
    speed = PLAIN_SPEED.search(out)
    if not speed:
        raise SystemExit(f"unexpected output of {streamrec} eval:\n{out}")
    return int(speed.group(1))


def report(name, runs):
    med = {key: statistics.median(r[key] for r in runs)
           for key in ("exact", "index", "ratio", "exact_us", "index_us")}
    last = runs[-1]
    print(f"{name}: exact {med['exact']:,.0f} events/s, index {med['index']:,.0f} events/s, "
          f"index/exact {med['ratio']:.2f}x (medians of {len(runs)}: "
          + ", ".join(f"{r['exact']}/{r['index']}" for r in runs) + ")")
    print(f"  ranking a list: exact {med['exact_us']:.0f} us, index {med['index_us']:.0f} us; "
          f"recall@20 against exact {last['recall']:.4f}, HR@20 {last['hr']:.4f} "
          f"(index {last['relative_hr']}%), nlist {last['nlist']}, nprobe {last['nprobe']}, "
          f"{last['candidates']} candidates a list")


def build_at(commit, tmp):
    """Builds commit's build/streamrec in a temporary git worktree (removed
    after) and returns the binary's path in tmp; exits naming the step that
    failed."""
    tree = os.path.join(tmp, "pre-index-tree")
    steps = [(["git", "-C", ROOT, "worktree", "add", "--detach", tree, commit],
              f"git worktree add {commit}"),
             (["make", "-C", tree, f"-j{os.cpu_count() or 1}", "build/streamrec"],
              f"make build/streamrec at {commit}")]
    try:
        for command, what in steps:
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"eval_replay: --pre-index-commit: {what} failed:\n"
                         + (done.stderr or done.stdout)[-2000:])
        binary = os.path.join(tmp, "streamrec-pre-index")
        shutil.copy2(os.path.join(tree, "build", "streamrec"), binary)
        return binary
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree],
                       capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streamrec", default="build/streamrec")
    parser.add_argument("--old-streamrec", help="another build, replayed in turn on the same stream")
    parser.add_argument("--pre-index-streamrec",
                        help="a build from before the index (plain `eval`), replayed in turn")
    parser.add_argument("--pre-index-commit", metavar="REV",
                        help="build REV in a temporary git worktree and use it as "
                             "--pre-index-streamrec")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nprobe", type=int, help="cells probed (default: the model's)")
    args = parser.parse_args()
    if args.pre_index_commit and args.pre_index_streamrec:
        parser.error("--pre-index-commit and --pre-index-streamrec: one or the other")
    extra = ["--nprobe", str(args.nprobe)] if args.nprobe is not None else []

    print("machine:", machine(args.streamrec))
    with tempfile.TemporaryDirectory() as tmp:
        if args.pre_index_commit:
            args.pre_index_streamrec = build_at(args.pre_index_commit, tmp)
            print(f"pre-index build: {args.pre_index_commit}, built in a temporary worktree")
        events = os.path.join(tmp, "events.csv")
        subprocess.run([args.streamrec, "gen", *GEN_ARGS, "--out", events], check=True,
                       capture_output=True)
        print(f"stream: streamrec gen {' '.join(GEN_ARGS)}; "
              f"streamrec eval {' '.join(EVAL_ARGS + extra)}")
        builds = [("this build", args.streamrec)]
        if args.old_streamrec:
            builds.append(("old build", args.old_streamrec))
        runs = {name: [] for name, _ in builds}
        plain, alone, threaded = [], [], []
        for _ in range(args.runs):  # interleaved, so both builds see the same load
            for name, path in builds:
                runs[name].append(replay(path, events, extra))
            if args.pre_index_streamrec:
                plain.append(replay_plain(args.pre_index_streamrec, events))
            alone.append(replay_plain(args.streamrec, events,
                                      ["--retrieval", "index", "--no-baselines", *extra]))
            threaded.append(replay_plain(args.streamrec, events,
                                         ["--retrieval", "index", "--no-baselines",
                                          "--threads", "2", *extra]))
        for name, _ in builds:
            report(name, runs[name])
        exact = [r["exact"] for r in runs["this build"]]
        print(f"this build's index engine alone (eval --retrieval index --no-baselines): "
              f"{statistics.median(alone):,.0f} events/s; on two threads (--threads 2: lists "
              f"ranked in blocks of 256 events beside learning) {statistics.median(threaded):,.0f}"
              f" events/s, {statistics.median(t / a for t, a in zip(threaded, alone)):.2f}x "
              f"alone and {statistics.median(t / e for t, e in zip(threaded, exact)):.2f}x the "
              f"exact engine's share of --retrieval both (medians of the runs' ratios)")
        if plain:
            ratios = [r["index"] / p for r, p in zip(runs["this build"], plain)]
            print(f"pre-index build (exact, plain eval): {statistics.median(plain):,.0f} "
                  f"events/s (runs: {', '.join(str(p) for p in plain)}); this build's index "
                  f"engine is {statistics.median(ratios):.2f}x it (median of the runs' ratios)")
            ratios = [a / p for a, p in zip(alone, plain)]
            print(f"this build's index engine alone (eval --retrieval index --no-baselines): "
                  f"{statistics.median(alone):,.0f} events/s (runs: "
                  f"{', '.join(str(a) for a in alone)}), {statistics.median(ratios):.2f}x the "
                  f"pre-index build (median of the runs' ratios)")
            ratios = [t / p for t, p in zip(threaded, plain)]
            print(f"this build's index engine on two threads (the same, --threads 2: lists "
                  f"ranked in blocks of 256 events beside learning): "
                  f"{statistics.median(threaded):,.0f} events/s (runs: "
                  f"{', '.join(str(t) for t in threaded)}), {statistics.median(ratios):.2f}x the "
                  f"pre-index build (median of the runs' ratios)")


if __name__ == "__main__":
    main()
