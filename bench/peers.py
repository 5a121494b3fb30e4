#!/usr/bin/env python3
"""streamrec against its peers, on the same stream, under the same protocol.

`streamrec eval` replays the stream test-then-train and exports what it
evaluated (`--export-stream`: time order, dense indices, each event's test
flag and exclusions) with its figures (`--json`). Each peer then replays the
exported stream through bench/protocol.py: ranked on exactly the same test
points, with the same k and the same exclusions, then taught the event.

Peers:
  popularity  all-time counts (pure Python); must equal streamrec's own
              popularity figure, which cross-checks the protocol.
  river       River's reco.BiasedMF, learn_one per event: a positive is
              learned as y=1 plus NEGATIVES items drawn uniformly from the
              items seen so far as y=0 (implicit feedback has no zeros of
              its own); a negative-weight event as y=0. Ranking reads River's
              own item latents and biases into a numpy matrix (rows copied
              when River changed them) and scores every item at once: the
              same numbers as predict_one per item, without 5,000 calls.
  als, bpr    implicit's AlternatingLeastSquares / BayesianPersonalizedRanking,
              refit from scratch on every positive seen so far (summed
              weights) every RETRAIN_EVERY learned events, as a periodic
              batch job would; lists come from the last fit.
Each peer is tuned with a small grid (GRIDS below: River lr x l2, ALS
regularization x alpha, BPR learning_rate x regularization), every point
replayed on the whole stream, the best recall@k kept; the report lists every
point and says when the best lies on the grid's edge.

streamrec's own baselines (all-time popularity, trending at --half-lives,
co-visitation alone) and ablations (each signal switched off) come from the
same `streamrec eval --ablations` run that exports the stream; every ranking,
peers included, is split into items new to the user / repeats and warm /
cold users as `streamrec eval` splits them.

Users a peer has not learned yet (and every user before a batch peer's
first fit) get the peer's popularity list, as streamrec serves cold users
its trending list. Items a peer has never learned are not ranked.

Throughput: events/s are stream events (all of them, as `streamrec eval`
counts) over seconds, single-threaded everywhere (OPENBLAS_NUM_THREADS=1,
implicit's num_threads=1). "learn only" replays without ranking; medians
over --runs runs for streamrec, popularity and River; the batch peers and
the test+learn column of peers come from one run. Figures are printed,
never asserted.

  bench/peers.py                                   # synthetic stream from `streamrec gen`
  bench/peers.py --data ratings.dat --format movielens
"""
import argparse
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import protocol  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def machine_line():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # nproc obeys it

    def sh(cmd):
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              env=env).stdout.strip()
    model = sh("lscpu | sed -n 's/^Model name: *//p'")
    mem = sh("free -g | awk '/^Mem/ {print $2}'")
    return f"{sh('nproc')} cores, {mem} GiB, {model}"


def top_k(scores, k):
    """Indices of the k highest finite scores, best first, ties to the lower index."""
    finite = np.flatnonzero(scores > -np.inf)
    if finite.size == 0:
        return []
    s = scores[finite]
    if finite.size > k:
        part = np.argpartition(-s, k - 1)[:k]
    else:
        part = np.arange(finite.size)
    order = part[np.lexsort((finite[part], -s[part]))]
    return finite[order].tolist()


class RiverMF:
    name = "River BiasedMF"

    def __init__(self, users, items, dim, lr, negatives, seed, l2=0.0):
        from river import optim, reco
        self.model = reco.BiasedMF(
            n_factors=dim, bias_optimizer=optim.SGD(lr), latent_optimizer=optim.SGD(lr),
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            l2_latent=l2, seed=seed)
        self.negatives = negatives
        self.random = random.Random(seed)
        self.fallback = protocol.Popularity(users, items)
        self.q = np.zeros((items, dim))
        self.bias = np.full(items, -np.inf)  # -inf: never learned, not ranked
        self.seen_items, self.seen = [], bytearray(items)
        self.learned_users = bytearray(users)
        self.dirty = set()

    def learn(self, user, item, weight):
        self.fallback.learn(user, item, weight)
        model, dirty = self.model, self.dirty
        if not self.seen[item]:
            self.seen[item] = 1
            self.seen_items.append(item)
        if weight < 0:
            model.learn_one(user, item, 0.0)
            dirty.add(item)
            return
        self.learned_users[user] = 1
        model.learn_one(user, item, 1.0)
        dirty.add(item)
        seen = self.seen_items
        for _ in range(self.negatives):
            negative = seen[self.random.randrange(len(seen))]
            if negative != item:
                model.learn_one(user, negative, 0.0)
                dirty.add(negative)

    def recommend(self, user, k, excluded):
        if not self.learned_users[user]:
            return self.fallback.recommend(user, k, excluded)
        model = self.model
        for item in self.dirty:
            self.q[item] = model.i_latents[item]
            self.bias[item] = model.i_biases[item]
        self.dirty.clear()
        scores = self.q @ model.u_latents[user] + self.bias  # + user bias and mean: same order
        if excluded:
            scores[list(excluded)] = -np.inf
        return top_k(scores, k)


class BatchImplicit:
    """implicit's ALS or BPR, refit every retrain_every learned events."""

    def __init__(self, kind, users, items, dim, retrain_every, seed, **params):
        self.kind, self.users, self.items = kind, users, items
        self.params = dict(BATCH_DEFAULTS[kind], **params)
        self.name = {"als": "implicit ALS", "bpr": "implicit BPR"}[kind] + \
            f" (refit every {retrain_every:,} learned events)"
        self.dim, self.retrain_every, self.seed = dim, retrain_every, seed
        self.fallback = protocol.Popularity(users, items)
        self.rows, self.cols, self.vals = [], [], []
        self.learned = 0
        self.user_factors = None
        self.fits = 0

    def fit(self):
        import scipy.sparse as sp
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        matrix = sp.coo_matrix((np.array(self.vals, dtype=np.float32),
                                (np.array(self.rows), np.array(self.cols))),
                               shape=(self.users, self.items)).tocsr()
        if self.kind == "als":
            model = AlternatingLeastSquares(factors=self.dim, iterations=15, num_threads=1,
                                            random_state=self.seed, **self.params)
        else:
            model = BayesianPersonalizedRanking(factors=self.dim, iterations=50,
                                                num_threads=1, random_state=self.seed,
                                                **self.params)
        model.fit(matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        self.fitted_users = np.diff(matrix.indptr) > 0
        self.fitted_items = np.asarray(matrix.sum(axis=0)).ravel() > 0
        self.fits += 1

    def learn(self, user, item, weight):
        self.fallback.learn(user, item, weight)
        if weight > 0:
            self.rows.append(user)
            self.cols.append(item)
            self.vals.append(weight)
        self.learned += 1
        if self.learned % self.retrain_every == 0:
            self.fit()

    def recommend(self, user, k, excluded):
        if self.user_factors is None or not self.fitted_users[user]:
            return self.fallback.recommend(user, k, excluded)
        scores = self.item_factors @ self.user_factors[user]
        scores = np.where(self.fitted_items, scores, -np.inf)
        if excluded:
            scores[list(excluded)] = -np.inf
        return top_k(scores, k)


# The peers' grids: every combination is replayed on the whole stream and the
# best recall@k is kept. Selecting on the test points themselves favours the
# peers (streamrec runs with its defaults, untuned); that is deliberate: a
# peer loses no figure to a bad guess of ours.
BATCH_DEFAULTS = {"als": {"regularization": 0.01, "alpha": 1.0},
                  "bpr": {"learning_rate": 0.05, "regularization": 0.01}}
GRIDS = {
    "river": {"lr": [0.05, 0.1, 0.2], "l2": [0.001, 0.01]},
    "als": {"regularization": [0.01, 0.1], "alpha": [1.0, 10.0, 40.0]},
    "bpr": {"learning_rate": [0.01, 0.05, 0.1], "regularization": [0.001, 0.01]},
}


def grid_points(grid):
    points = [{}]
    for key, values in grid.items():
        points = [dict(p, **{key: v}) for p in points for v in values]
    return points


def grid_text(grid):
    return " × ".join(f"{k} {{{', '.join(f'{v:g}' for v in vs)}}}" for k, vs in grid.items())


SEGMENTS = ("all", "discovery", "repeat", "warm", "cold")


def replay_split(stream, ranker, k):
    """protocol.replay() with the splits of `streamrec eval`: a test point is
    a repeat when the user had a positive event on the item before, and warm
    when the user had any positive event before (model/prequential.c: the
    pair set and model_user_has_history(), both fed by positive events)."""
    tallies = {s: protocol.Tally(stream.items) for s in SEGMENTS}
    excluded, seen_pairs, warm_users = {}, set(), bytearray(stream.users)
    empty = frozenset()
    start = time.perf_counter()
    for e in range(stream.count):
        user, item, weight = stream.user[e], stream.item[e], stream.weight[e]
        if stream.test[e] == protocol.TESTED:
            ranked = ranker.recommend(user, k, excluded.get(user, empty))
            tallies["all"].add(ranked, item)
            tallies["repeat" if (user, item) in seen_pairs else "discovery"].add(ranked, item)
            tallies["warm" if warm_users[user] else "cold"].add(ranked, item)
        if weight != 0:
            ranker.learn(user, item, weight)
        if weight > 0:
            seen_pairs.add((user, item))
            warm_users[user] = 1
        if stream.excludes[e]:
            excluded.setdefault(user, set()).add(item)
    seconds = time.perf_counter() - start
    return {s: t.scores() for s, t in tallies.items()}, seconds


def run_streamrec(binary, path, args, accuracy_args, out_dir, runs, events):
    """Accuracy with baselines and ablations (one run, accuracy_args), then
    test+learn and learn-only events/s of the model alone (--no-baselines,
    medians of runs; --warmup past the end leaves no test point)."""
    exported, figures = out_dir / "peers-stream.csv", out_dir / "peers-streamrec.json"
    subprocess.run([binary, "eval", path, *args, *accuracy_args, "--export-stream",
                    str(exported), "--json", str(figures)], check=True)
    result = json.loads(figures.read_text())
    timing = out_dir / "peers-streamrec-timing.json"
    test_learn, learn_only = [], []
    for _ in range(runs):
        subprocess.run([binary, "eval", path, *args, "--no-baselines", "--json", str(timing)],
                       check=True, stdout=subprocess.DEVNULL)
        test_learn.append(json.loads(timing.read_text())["events_per_s"])
    warm = str(events or result["events"])
    for _ in range(runs):
        subprocess.run([binary, "eval", path, *args, "--no-baselines", "--warmup", warm,
                        "--json", str(timing)], check=True, stdout=subprocess.DEVNULL)
        learn_only.append(json.loads(timing.read_text())["events_per_s"])
    return result, exported, statistics.median(test_learn), statistics.median(learn_only)


def fmt_rate(x):
    return f"{x:,.0f}" if x is not None else "–"


def split_row(name, split, k):
    cells = " | ".join(f"{split[seg]['recall']:.4f}" for seg in SEGMENTS)
    return f"| {name} | {cells} | {split['all']['ndcg']:.4f} |"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streamrec", default=str(ROOT / "build" / "streamrec"))
    ap.add_argument("--data", help="event file (any format `streamrec eval` reads); "
                    "default: a synthetic stream from `streamrec gen`")
    ap.add_argument("--format", default="auto",
                    help="auto|csv|avro|movielens|retailrocket|taobao|movietweetings|generic")
    ap.add_argument("--events", type=int, default=100000, help="synthetic stream size")
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-arg", action="append", default=[],
                    help="extra `streamrec eval` argument (repeat), e.g. --eval-arg=--max-events=500000")
    ap.add_argument("--half-lives", default="1h,1d,7d",
                    help="trending baselines' half-lives (streamrec eval --baseline-half-lives)")
    ap.add_argument("--peers", default="popularity,river,als,bpr")
    ap.add_argument("--no-grid", action="store_true",
                    help="run each peer once with its defaults instead of its grid")
    ap.add_argument("--runs", type=int, default=3, help="timing runs (medians)")
    ap.add_argument("--dim", type=int, default=32, help="peers' factors (streamrec: --dim 32)")
    ap.add_argument("--negatives", type=int, default=4, help="River negatives per positive")
    ap.add_argument("--river-lr", type=float, default=0.1, help="River's SGD step (--no-grid)")
    ap.add_argument("--river-l2", type=float, default=0.01, help="River's l2 (--no-grid)")
    ap.add_argument("--retrain-every", type=int, default=0,
                    help="batch peers refit every N learned events (default: a tenth of them)")
    ap.add_argument("--out", default=str(ROOT / "build" / "bench-results"))
    opts = ap.parse_args()

    started = time.perf_counter()
    out_dir = pathlib.Path(opts.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_line()
    if opts.data:
        path, source = opts.data, f"`{pathlib.Path(opts.data).name}` ({opts.format})"
    else:
        path = str(out_dir / "peers-gen.csv")
        subprocess.run([opts.streamrec, "gen", "--out", path, "--events", str(opts.events),
                        "--users", str(opts.users), "--items", str(opts.items),
                        "--seed", str(opts.seed)], check=True, stdout=subprocess.DEVNULL)
        source = (f"synthetic (`streamrec gen --events {opts.events} --users {opts.users} "
                  f"--items {opts.items} --seed {opts.seed}`)")
    eval_args = ["--format", opts.format, "--k", "20", "--dim", str(opts.dim), *opts.eval_arg]
    accuracy_args = ["--ablations", "--baseline-half-lives", opts.half_lives]

    print(f"machine: {machine}", flush=True)
    result, exported, sr_test_learn, sr_learn = run_streamrec(
        opts.streamrec, path, eval_args, accuracy_args, out_dir, opts.runs, None)
    stream = protocol.Stream(exported)
    k = result["k"]
    learned = sum(1 for w in stream.weight if w != 0)
    retrain_every = opts.retrain_every or max(1, learned // 10)
    rows = [("streamrec", result["model"]["recall"], result["model"]["ndcg"],
             sr_test_learn, sr_learn)]
    splits = [(r["name"], r) for r in result["rankings"]]
    grid_lines = []
    popularity_check = None

    def make(name, params):
        if name == "popularity":
            ranker = protocol.Popularity(stream.users, stream.items)
            ranker.name = "popularity (Python peer)"
            return ranker
        if name == "river":
            return RiverMF(stream.users, stream.items, opts.dim, params.get("lr", opts.river_lr),
                           opts.negatives, opts.seed, params.get("l2", opts.river_l2))
        if name in ("als", "bpr"):
            return BatchImplicit(name, stream.users, stream.items, opts.dim, retrain_every,
                                 opts.seed, **params)
        sys.exit(f"peers.py: unknown peer '{name}' (popularity, river, als, bpr)")

    for name in [p for p in opts.peers.split(",") if p]:
        grid = {} if opts.no_grid else GRIDS.get(name, {})
        best = None
        for params in grid_points(grid):
            label = ", ".join(f"{key} {v:g}" for key, v in params.items()) or "defaults"
            print(f"{name} ({label}): test+learn ...", flush=True)
            ranker = make(name, params)
            split, seconds = replay_split(stream, ranker, k)
            print(f"  recall@{k} {split['all']['recall']:.4f} (new "
                  f"{split['discovery']['recall']:.4f}, cold {split['cold']['recall']:.4f}) "
                  f"in {seconds:.0f} s", flush=True)
            if grid:
                grid_lines.append(f"| {name} | {label} | {split['all']['recall']:.4f} | "
                                  f"{split['discovery']['recall']:.4f} |")
            if best is None or split["all"]["recall"] > best[1]["all"]["recall"]:
                best = (params, split, seconds, ranker)
        params, split, seconds, ranker = best
        edges = [key for key, values in grid.items()
                 if len(values) > 1 and params[key] in (values[0], values[-1])]
        if edges:
            grid_lines.append(f"| {name} | best at the edge of its grid in "
                              f"{', '.join(edges)}: a wider grid might do better | | |")
        test_learn = stream.count / seconds
        repeats = opts.runs if name in ("popularity", "river") else 1
        learn_times = [protocol.replay(stream, make(name, params), k=k, test=False)[1]
                       for _ in range(repeats)]
        learn_only = stream.count / statistics.median(learn_times)
        label = getattr(ranker, "name", name)
        if params:
            label += " [" + ", ".join(f"{key} {v:g}" for key, v in params.items()) + "]"
        rows.append((label, split["all"]["recall"], split["all"]["ndcg"], test_learn,
                     learn_only))
        splits.append((label, split))
        if name == "popularity":
            popularity_check = all(
                abs(split["all"][m] - result["popularity"][m]) < 1e-12
                for m in ("recall", "ndcg", "mrr")) and \
                split["all"]["tests"] == result["popularity"]["tests"]
        print(f"  {label}: recall@{k} {split['all']['recall']:.4f}, {test_learn:,.0f} events/s "
              f"test+learn, {learn_only:,.0f} learn only", flush=True)

    lines = [
        f"**Against peers**: {source}; {stream.count:,} events, {stream.users:,} users, "
        f"{stream.items:,} items; {stream.tests:,} test points (k={k}, exclude "
        f"{result['exclude']}, {result['skipped_excluded']:,} skipped as excluded, "
        f"test-every {result['test_every']}, warmup {result['warmup']}).",
        f"Machine: {machine}. Single-threaded; events/s count every stream event; medians of "
        f"{opts.runs} runs for streamrec, popularity and River learn-only.",
        "",
        f"HR@{k} (= recall@{k}) on every test point and split: new = item new to the user, "
        "repeat = the user had a positive event on it before; warm = the user had a positive "
        "event before, cold = none. Baselines and ablations come from the same `streamrec "
        f"eval --ablations --baseline-half-lives {opts.half_lives}` run; peers from the same "
        "test points, each at the best point of its grid.",
        "",
        f"| ranking | all | new | repeat | warm | cold | NDCG@{k} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [split_row(name, split, k) for name, split in splits]
    counts = splits[0][1]
    lines.append("| (test points) | " + " | ".join(f"{counts[seg]['tests']:,}" for seg in SEGMENTS)
                 + " | |")
    if grid_lines:
        lines += [
            "",
            "Peers' grids (every point replayed on the whole stream; the best recall@k is "
            "kept, which favours the peers: streamrec runs untuned, with its defaults). "
            + "; ".join(f"{n}: {grid_text(g)}" for n, g in GRIDS.items()
                        if n in opts.peers.split(","))
            + f". Fixed: dim {opts.dim}; River {opts.negatives} negatives per positive; "
            "ALS 15 iterations, BPR 50; batch refits every "
            f"{retrain_every:,} learned events.",
            "",
            f"| peer | point | recall@{k} | new |",
            "| --- | --- | --- | --- |",
            *grid_lines,
        ]
    lines += [
        "",
        f"| ranker | recall@{k} | NDCG@{k} | events/s test+learn | events/s learn only "
        "| streamrec ÷ peer, test+learn | streamrec ÷ peer, learn only |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| streamrec (popularity in the same run) | {result['model']['recall']:.4f} "
        f"({result['popularity']['recall']:.4f}) | {result['model']['ndcg']:.4f} "
        f"({result['popularity']['ndcg']:.4f}) | {fmt_rate(sr_test_learn)} | "
        f"{fmt_rate(sr_learn)} | 1 | 1 |",
    ]
    for name, recall, ndcg, test_learn, learn_only in rows[1:]:
        lines.append(f"| {name} | {recall:.4f} | {ndcg:.4f} | {fmt_rate(test_learn)} | "
                     f"{fmt_rate(learn_only)} | {sr_test_learn / test_learn:,.1f}× | "
                     f"{sr_learn / learn_only:,.1f}× |")
    lines.append("")
    lines.append("streamrec's events/s come from `--no-baselines` runs (model and popularity "
                 "only); the accuracy run above also learns every baseline and ablation.")
    if popularity_check is not None:
        lines.append("Protocol cross-check: the Python popularity peer "
                     + ("reproduces streamrec's popularity figures exactly."
                        if popularity_check else
                        "DIFFERS from streamrec's popularity figures: the protocol export is "
                        "broken."))
    online = [r for r in rows[1:] if r[0].startswith(("popularity", "River"))]
    best_online = max(online, key=lambda r: r[1], default=None)
    river = next((r for r in rows[1:] if r[0].startswith("River")), None)
    if best_online:
        met = result["model"]["recall"] >= best_online[1]
        lines.append(f"Goal recall@{k} ≥ best online peer ({best_online[0]}, "
                     f"{best_online[1]:.4f}): {'met' if met else 'missed'} "
                     f"({result['model']['recall']:.4f}).")
    if river:
        ratio = sr_learn / river[4]
        lines.append(f"Goal update throughput ≥ 10× River: {'met' if ratio >= 10 else 'missed'} "
                     f"({ratio:,.0f}× learn only).")
    lines.append(f"Run time: {time.perf_counter() - started:,.0f} s.")
    table = "\n".join(lines) + "\n"
    (out_dir / "peers.md").write_text(table)
    print()
    print(table)
    plot(rows, k, out_dir / "peers.png")
    print(f"written: {out_dir / 'peers.md'}, {out_dir / 'peers.png'}")


def plot(rows, k, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [r[0].split(" (")[0] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.barh(names, [r[1] for r in rows], color="tab:blue", label=f"recall@{k}")
    a.barh(names, [r[2] for r in rows], color="tab:orange", height=0.4, label=f"NDCG@{k}")
    a.invert_yaxis()
    a.legend()
    a.set_title("accuracy, same test points")
    b.barh(names, [r[4] for r in rows], color="tab:green")
    b.set_xscale("log")
    b.invert_yaxis()
    b.set_title("learn-only events/s (log)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
